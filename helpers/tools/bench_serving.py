"""``make bench`` section ``serving``: train, serve on 127.0.0.1, measure against the targets.

The measuring code is :mod:`helpers.serving.bench` (lab 05 uses it too); this module adds the
run of lab 05 alone, timed against its target.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from helpers.processes import cpus
from helpers.serving.bench import TARGETS, measure_latency, measure_throughput


def run() -> dict[str, Any]:
    """``make bench`` section: train, serve, and measure against :data:`TARGETS`."""
    from helpers import training
    from helpers.serving.local import LocalServer

    row = [[6.8, 2.8, 4.8, 1.4]]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        result = training.train(seed=42)
        model_dir = training.save_model(result.model, tmp, name="iris", fmt="json").parent
        batch = np.tile(result.X_test, (1000 // len(result.X_test) + 1, 1))[:1000].tolist()
        with LocalServer(model_dir, "iris", access_log=False) as server:
            ep = server.endpoint()
            v1 = measure_latency(ep, row, 1000, "v1")
            v2 = measure_latency(ep, row, 1000, "v2")
            batch_v1 = measure_latency(ep, batch, 50, "v1", warmup=5)
            batch_v2 = measure_latency(ep, batch, 50, "v2", warmup=5)
            conc = measure_throughput(server.url, "iris", row, clients=8,
                                      requests_per_client=250)
            rss = server.rss_bytes()
            startup, startup_cpu = server.startup_seconds, server.startup_cpu_seconds
            ep.close()
    figures = {
        "startup_s": round(startup, 2),
        # CPU seconds the server used until ready: what start-up costs on an idle machine.
        "startup_cpu_s": startup_cpu,
        # 1-minute load average when measured: figures above ~2 mean a shared, busy machine.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "v1_single_row": {k: v for k, v in v1.items() if k != "samples_ms"},
        "v2_single_row": {k: v for k, v in v2.items() if k != "samples_ms"},
        "v1_batch_1000_ms": {"p50": batch_v1["p50_ms"], "p99": batch_v1["p99_ms"]},
        "v2_batch_1000_ms": {"p50": batch_v2["p50_ms"], "p99": batch_v2["p99_ms"]},
        "concurrent_8_clients": conc,
        "server_rss_mb": round(rss / 2**20, 1),
        "cpus": cpus(),
        "targets": TARGETS,
    }
    figures["met"] = {
        "v1_p50": v1["p50_ms"] <= TARGETS["p50_ms"], "v1_p99": v1["p99_ms"] <= TARGETS["p99_ms"],
        "v2_p50": v2["p50_ms"] <= TARGETS["p50_ms"], "v2_p99": v2["p99_ms"] <= TARGETS["p99_ms"],
        "batch_1000": max(batch_v1["p50_ms"], batch_v2["p50_ms"]) <= TARGETS["batch_1000_ms"],
        "concurrent_rps": conc["rps"] >= TARGETS["concurrent_rps"],
        "startup": startup <= TARGETS["startup_s"],
    }
    figures["lab05_seconds"], figures["lab05_status"] = _time_lab05()
    figures["met"]["lab05"] = (figures["lab05_status"] == "ok"
                               and figures["lab05_seconds"] <= TARGETS["lab05_s"])
    return figures


def _time_lab05() -> tuple[float, str]:
    """Lab 05 on the embedded default, alone (the ``labs`` section runs labs two at a time)."""
    from pathlib import Path

    from helpers import paths
    from helpers.tools import runner

    lab = paths.labs_dir() / "05_serve_with_kserve.ipynb"
    with tempfile.TemporaryDirectory(prefix="bench-lab05-") as tmp:
        run = runner.run_lab(lab, parameters={"BACKEND": "sim", "OUTPUT_DIR": str(Path(tmp) / "results")},
                             output_notebook=Path(tmp) / lab.name)
    return round(run.seconds, 2), run.status
