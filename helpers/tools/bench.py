"""``make bench``: measure speed and memory, write ``build/bench.json``.

Each area of the kit contributes a section: a function returning a dict of figures,
registered in :data:`SECTIONS` as ``"module:function"``. Figures are measured here and
reported, never asserted in tests.

Usage::

    python -m helpers.tools.bench [--only labs scheduling ...] [--skip tests]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from helpers import paths
from helpers.errors import cli_errors
from helpers.processes import cpus

#: name -> "module:function"; each function takes no argument and returns a dict.
SECTIONS: dict[str, str] = {
    "labs": "helpers.tools.bench:bench_labs",
    "tests": "helpers.tools.bench:bench_tests",
    "controlplane": "helpers.tools.bench_controlplane:bench",
    "models": "helpers.serialization:bench",
    "serving": "helpers.tools.bench_serving:run",
    "scheduling": "helpers.tools.bench_scheduling:run",
    "e2e": "helpers.tools.bench_pipeline:bench",
    "distributed": "helpers.tools.bench_distributed:bench",
}


def bench_labs() -> dict:
    """Wall time to execute every lab on the embedded default (no install)."""
    from helpers.tools import runner

    jobs = runner.default_jobs("sim")
    with open(Path("/dev/null"), "w") as sink:  # noqa: PTH123 - progress is not wanted here
        start = time.perf_counter()
        runs = runner.run_all("sim", stream=sink, jobs=jobs)
    return {
        "labs_seconds": round(time.perf_counter() - start, 2),
        "labs_jobs": jobs,
        "per_lab_seconds": {r.lab: round(r.seconds, 2) for r in runs},
        "labs_failed": [r.lab for r in runs if r.status != "ok"],
    }


def bench_tests() -> dict:
    """Wall time of the whole test suite, run as the README and CI run it (``make test``).

    ``make test`` is one pytest on three workers, one of them running the kwok tests on one
    control plane; timing a different command would measure a suite nobody runs.
    """
    start = time.perf_counter()
    proc = subprocess.run(["make", "-s", "test"],
                          cwd=paths.ROOT, capture_output=True, text=True, check=False)
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    return {"test_seconds": round(time.perf_counter() - start, 2),
            "test_exit_code": proc.returncode, "test_summary": tail[0] if tail else ""}


def _call(spec: str) -> dict:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)()


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Run the selected sections and merge their figures into build/bench.json."""
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=None)
    parser.add_argument("--skip", nargs="*", choices=sorted(SECTIONS), default=[])
    args = parser.parse_args(argv)
    names = [n for n in (args.only or SECTIONS) if n not in args.skip]
    out = paths.build_dir() / "bench.json"
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["machine"] = {"python": platform.python_version(), "cpus": cpus(),
                         "platform": platform.platform()}
    for name in names:
        print(f"bench: {name} ...", flush=True)
        start = time.perf_counter()
        report[name] = _call(SECTIONS[name])
        print(f"bench: {name} done in {time.perf_counter() - start:.1f} s: "
              f"{json.dumps(report[name])[:300]}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
