"""Latency, throughput, start-up and memory of the local KServe model server.

:func:`measure_latency` and :func:`plot_latency` serve lab 05; :func:`run` is the
``serving`` section of ``make bench`` (build/bench.json). Figures are measured and
reported against the kit's targets, never asserted in tests:

- 1,000 sequential single-row requests: p50 <= 5 ms, p99 <= 15 ms, for V1 and V2;
- one 1,000-row batch <= 25 ms;
- >= 300 requests/s from 8 concurrent clients;
- start to ready <= 5 s; resident memory recorded.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from helpers.serving.client import Endpoint

TARGETS = {"p50_ms": 5.0, "p99_ms": 15.0, "batch_1000_ms": 25.0, "concurrent_rps": 300.0,
           "startup_s": 5.0, "lab05_s": 15.0}


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples`` (linear interpolation)."""
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def measure_latency(endpoint: Endpoint, rows: Sequence[Sequence[float]] | np.ndarray,
                    n: int = 1000, protocol: str = "v1", warmup: int = 20) -> dict[str, Any]:
    """Time ``n`` sequential requests of ``rows`` over ``protocol``, client side.

    Args:
        endpoint: the client (its session keeps the connection alive, as a real app would).
        rows: the rows sent in every request.
        n: timed requests.
        protocol: ``"v1"`` or ``"v2"``.
        warmup: untimed requests first (connection set-up, first-call costs).

    Returns:
        ``{"protocol", "n", "rows", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms",
        "samples_ms"}``.
    """
    for _ in range(warmup):
        endpoint.predict(rows, protocol)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        endpoint.predict(rows, protocol)
        samples.append((time.perf_counter() - start) * 1000)
    return {"protocol": protocol, "n": n, "rows": len(rows),
            "p50_ms": round(percentile(samples, 50), 3), "p90_ms": round(percentile(samples, 90), 3),
            "p99_ms": round(percentile(samples, 99), 3),
            "mean_ms": round(statistics.fmean(samples), 3), "max_ms": round(max(samples), 3),
            "samples_ms": [round(s, 4) for s in samples]}


def measure_throughput(base_url: str, model_name: str, rows: Sequence[Sequence[float]], *,
                       clients: int = 8, requests_per_client: int = 200,
                       protocol: str = "v1") -> dict[str, Any]:
    """Requests per second with ``clients`` threads, each with its own keep-alive session.

    Returns:
        ``{"clients", "requests", "seconds", "rps", "errors"}``.
    """
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        ep = Endpoint(base_url, model_name)
        try:
            ep.predict(rows, protocol)  # connect before the clock starts
            barrier.wait()
            for _ in range(requests_per_client):
                ep.predict(rows, protocol)
        except Exception as exc:  # noqa: BLE001 - recorded and reported, not swallowed
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            ep.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    total = clients * requests_per_client
    return {"clients": clients, "requests": total, "seconds": round(seconds, 3),
            "rps": round(total / seconds, 1), "errors": errors[:3]}


def latency_table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of latency summaries (one row per protocol/batch)."""
    lines = ["| protocol | rows/request | requests | p50 ms | p90 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['protocol']} | {r['rows']} | {r['n']} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
    return "\n".join(lines)


def plot_latency(results: Sequence[dict[str, Any]], p50_target: float = TARGETS["p50_ms"],
                 p99_target: float = TARGETS["p99_ms"]) -> Figure:
    """Latency distributions per protocol (histogram, log x) with the p50/p99 targets.

    Made with pyplot so Jupyter's inline backend shows it; it renders headless too.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    upper = max(max(r["samples_ms"]) for r in results)
    bins = np.logspace(np.log10(max(0.1, min(min(r["samples_ms"]) for r in results))),
                       np.log10(max(upper, p99_target) * 1.1), 40)
    for r in results:
        ax.hist(r["samples_ms"], bins=bins, alpha=0.55,
                label=f"{r['protocol']} ({r['rows']} row): p50 {r['p50_ms']:.1f}, "
                      f"p99 {r['p99_ms']:.1f} ms")
    for value, style, name in ((p50_target, "--", "p50 target"), (p99_target, ":", "p99 target")):
        ax.axvline(value, color="black", linestyle=style, linewidth=1, label=name)
    ax.set_xscale("log")
    # Plain numbers (2, 5, 10 ms) read better than 2x10^0 on a latency axis.
    plain = FuncFormatter(lambda value, _pos: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("round-trip latency per request, ms (log scale)")
    ax.set_ylabel("requests")
    ax.set_title("KServe model server on 127.0.0.1: sequential requests")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
