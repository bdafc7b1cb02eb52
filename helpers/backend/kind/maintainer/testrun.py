"""``make test-cluster``: the maintainer's one-command check of the kind path, with timings.

Steps, each timed (a failed step is recorded and the run goes on to ``cluster-down``):

1. ``cluster-images``: the node image and the add-on images, built or reused;
2. ``cluster-up-interrupted``: ``cluster up`` (from nothing, unless a cluster is up),
   stopped by Ctrl-C (SIGINT to its whole process group, as a terminal sends it)
   :data:`INTERRUPT_AFTER` seconds in, part-way through (creating the cluster, loading images
   or installing): the fault a learner makes. It must stop within :data:`INTERRUPT_GRACE`
   seconds and say so, without a traceback;
3. ``cluster-up`` (``python -m helpers.cluster up``): carries on from there: creates what is
   missing (from the node image built here, see :func:`.kindconfig.local_cluster`) and
   installs the add-ons;
4. ``cluster-up-again``: the same command once more, on the running cluster: set-up is safe to
   run twice, and its seconds say what a re-run costs;
5. ``pytest -m cluster``: the kind tests (tests/test_cluster_kind.py) and every lab with
   ``BACKEND="kind"``, results-checked like the embedded run (tests/test_labs_kind.py), which
   records each lab's status and seconds in ``build/cluster-labs.json``;
6. ``cluster-down``, then ``cluster-down-again`` (cleanup is safe twice too).

The results (seconds per step, exit codes, each lab's seconds, peak memory in use on the
machine, ``docker system df``) go to ``build/cluster-results.json``. Nothing here is part of
``make test``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import paths


def memory_in_use_mib() -> int:
    """MemTotal - MemAvailable from /proc/meminfo, in MiB (0 where there is no /proc)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return 0
    kib = int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])
    return kib // 1024


class PeakMemory:
    """Samples :func:`memory_in_use_mib` every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.baseline = memory_in_use_mib()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, memory_in_use_mib())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def steps(python: str = sys.executable) -> list[tuple[str, list[str]]]:
    """The commands ``make test-cluster`` runs, in order (name, argv)."""
    return [
        ("cluster-images", [python, "-m", "helpers.backend.kind.maintainer", "images"]),
        ("cluster-up-interrupted", [python, "-m", "helpers.cluster", "up"]),
        ("cluster-up", [python, "-m", "helpers.cluster", "up"]),
        ("cluster-up-again", [python, "-m", "helpers.cluster", "up"]),
        ("pytest-cluster", [python, "-m", "pytest", "-m", "cluster", "-p", "no:randomly", "-q",
                            "--durations=0"]),
        ("cluster-down", [python, "-m", "helpers.cluster", "down"]),
        ("cluster-down-again", [python, "-m", "helpers.cluster", "down"]),
    ]


#: Steps stopped by Ctrl-C after this many seconds (their exit status is then expected to be 130).
INTERRUPT_AFTER = {"cluster-up-interrupted": 150.0}
#: Seconds an interrupted step may take to stop before it counts as hung (then it is killed).
INTERRUPT_GRACE = 60.0


def run_step(argv: list[str], log, interrupt_after: float | None = None) -> dict:
    """Run one step, its output to ``log``; with ``interrupt_after``, Ctrl-C it that many s in.

    Returns ``returncode`` and, for an interrupted step, ``interrupted`` (whether it was still
    running when the SIGINT went), ``stopped_seconds`` (SIGINT to exit) and ``ok``: it ended
    by itself, exit 130, within :data:`INTERRUPT_GRACE`, and its output has no traceback; or
    it finished before the SIGINT (then exit 0 is ok: there was nothing to interrupt).
    """
    # A terminal's Ctrl-C reaches a foreground program with SIGINT's default action; started in
    # the background (`make test-cluster &`, nohup), this process and its children would
    # inherit SIGINT *ignored*, Python would never raise KeyboardInterrupt, and only the Go
    # children (kubectl re-enables it) would stop: the step under test gets SIGINT as a
    # terminal gives it (a caught signal is reset to its default action at exec).
    ignored = interrupt_after is not None and signal.getsignal(signal.SIGINT) == signal.SIG_IGN \
        and threading.current_thread() is threading.main_thread()
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(argv, cwd=paths.ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=interrupt_after is not None)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    if interrupt_after is None:
        return {"returncode": proc.wait()}
    try:
        return {"returncode": proc.wait(timeout=interrupt_after), "interrupted": False,
                "ok": proc.returncode == 0}
    except subprocess.TimeoutExpired:
        pass
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.perf_counter()
    try:
        code = proc.wait(timeout=INTERRUPT_GRACE)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code, hung = proc.wait(), True
    stopped = round(time.perf_counter() - sent, 1)
    log.flush()
    text = Path(log.name).read_text(errors="replace")
    return {"returncode": code, "interrupted": True, "stopped_seconds": stopped,
            "ok": not hung and code == 130 and "Traceback" not in text}


def labs_file() -> Path:
    """Where tests/test_labs_kind.py records each lab's status and seconds on kind."""
    return paths.build_dir() / "cluster-labs.json"


def run_all(results: Path | None = None, only: list[str] | None = None) -> dict:
    """Run :func:`steps` (or those named in ``only``), write and return the results."""
    results = results or paths.build_dir() / "cluster-results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    logs = results.parent / "cluster-logs"
    logs.mkdir(exist_ok=True)
    record: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
    labs = labs_file()
    if not only or "pytest-cluster" in only:
        labs.unlink(missing_ok=True)  # this run's labs only
    with PeakMemory() as memory:
        for name, argv in steps():
            if only and name not in only:
                continue
            print(f"== {name}: {' '.join(argv[1:])}", flush=True)
            start = time.perf_counter()
            with (logs / f"{name}.log").open("w") as log:
                outcome = run_step(argv, log, INTERRUPT_AFTER.get(name))
            record["steps"][name] = {"seconds": round(time.perf_counter() - start, 1), **outcome,
                                     "log": str((logs / f"{name}.log").relative_to(paths.ROOT))}
            print(f"   {name}: exit {outcome['returncode']} in {record['steps'][name]['seconds']} s",
                  flush=True)
            results.write_text(json.dumps(record, indent=2) + "\n")
    record["labs"] = json.loads(labs.read_text()) if labs.is_file() else {}
    record["memory_mib"] = {"baseline": memory.baseline, "peak": memory.peak}
    df = subprocess.run(["docker", "system", "df"], capture_output=True, text=True, check=False)
    record["docker_system_df"] = df.stdout.strip().splitlines()
    record["ok"] = all(s.get("ok", s["returncode"] == 0) for s in record["steps"].values())
    results.write_text(json.dumps(record, indent=2) + "\n")
    return record
