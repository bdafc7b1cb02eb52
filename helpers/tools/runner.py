"""Batch-run the labs headless with papermill: the engine behind ``make run``.

Executed notebooks go to ``build/labs/``, each lab's results JSON to ``build/results/``.
A progress line is printed as each lab starts and ends, then a table (lab, status,
seconds); the exit status is non-zero when any lab failed.

Usage::

    python -m helpers.runner [--backend sim] [--labs 01 03] [--build-dir build]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import paths
from helpers.errors import cli_errors

KERNEL = "python3"
#: Set by a Jupyter server for the kernels of its sessions (and so inherited by their children).
SESSION_ENV = "JPY_SESSION_NAME"


def ipc_kernel_manager():
    """A kernel manager on local IPC sockets: no TCP port opened, no plaintext-TCP warning."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            # The socket files live in the temp dir, not in the working directory.
            kwargs.setdefault("ip", str(Path(tempfile.gettempdir()) / f"kflabs-{uuid.uuid4().hex[:12]}"))
            super().__init__(**kwargs)

        async def _async_pre_start_kernel(self, **kw):
            # A run started from inside JupyterLab would hand its kernel the notebook's
            # session name; without it a lab knows nobody is looking (the explorer stays off).
            env = kw.get("env", os.environ)
            kw["env"] = {k: v for k, v in env.items() if k != SESSION_ENV}
            return await super()._async_pre_start_kernel(**kw)

    return IPCKernelManager


@dataclass
class LabRun:
    """The outcome of one lab run."""

    lab: str
    status: str  # "ok" | "failed"
    seconds: float
    error: str = ""


#: Knob-name endings that denote a folder a lab writes into.
FOLDER_KNOBS = ("_DIR", "_STORE")


def isolated_dirs(declared, base: Path) -> dict[str, str]:
    """A fresh folder under ``base`` for every folder knob a lab declares, OUTPUT_DIR aside.

    Folder knobs end in ``_DIR`` or ``_STORE`` (``WORK_DIR``, ``MODEL_STORE``).

    Tests and grading pass these so their runs never share working folders with each other
    or with ``make run`` (papermill injects them like any other parameter).
    """
    return {name: str(Path(base) / name.lower()) for name in declared
            if name.endswith(FOLDER_KNOBS) and name != "OUTPUT_DIR"}


def lab_notebooks(selected: list[str] | None = None) -> list[Path]:
    """Return the lab notebooks ``labs/NN_*.ipynb`` in order, optionally filtered by prefix."""
    labs = sorted(paths.labs_dir().glob("[0-9][0-9]_*.ipynb"))
    if selected:
        labs = [nb for nb in labs if any(nb.stem.startswith(s) for s in selected)]
    return labs


def run_lab(
    notebook: Path,
    *,
    parameters: dict,
    output_notebook: Path,
    timeout: int = 600,
) -> LabRun:
    """Execute one lab with papermill and return its :class:`LabRun` (never raises on lab errors)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    output_notebook.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook),
            str(output_notebook),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(paths.repo_root()),
            progress_bar=False,
            execution_timeout=timeout,
            kernel_manager_class=ipc_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        return LabRun(notebook.stem, "failed", time.perf_counter() - start,
                      f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    return LabRun(notebook.stem, "ok", time.perf_counter() - start)


def format_table(runs: list[LabRun], wall: float | None = None) -> str:
    """Render the per-lab table printed at the end of a batch run (``wall``: elapsed time)."""
    width = max([len(r.lab) for r in runs] + [3])
    lines = [f"{'lab':<{width}}  {'status':<6}  {'seconds':>7}", "-" * (width + 17)]
    lines += [f"{r.lab:<{width}}  {r.status:<6}  {r.seconds:7.1f}" for r in runs]
    total = sum(r.seconds for r in runs)
    lines.append(f"{'sum':<{width}}  {'':<6}  {total:7.1f}")
    if wall is not None:
        lines.append(f"{'wall':<{width}}  {'':<6}  {wall:7.1f}")
    return "\n".join(lines)


def default_jobs(backend: str) -> int:
    """Labs run two at a time with 2+ CPUs on a backend where they are independent (``sim``);
    one at a time on a cluster, where labs share the cluster's PVC and namespaces."""
    from helpers.backend import backend_class
    from helpers.errors import BackendUnavailable
    from helpers.processes import cpus

    try:
        parallel = backend_class(backend).parallel_labs
    except BackendUnavailable:
        parallel = False  # each lab then reports the unknown name itself
    return 2 if parallel and cpus() >= 2 else 1


def run_all(
    backend: str = "sim",
    selected: list[str] | None = None,
    build_dir: Path | None = None,
    stream=None,
    jobs: int | None = None,
) -> list[LabRun]:
    """Run the selected labs, ``jobs`` at a time, printing progress to ``stream``.

    Each lab runs in its own kernel (papermill), in a worker process when ``jobs > 1``.
    Returns the runs in lab order.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from helpers import backend as backends

    stream = sys.stdout if stream is None else stream  # at call time: a redirected stdout is honoured
    build = build_dir or paths.build_dir()
    labs = lab_notebooks(selected)
    if not labs:
        from helpers.errors import LabError

        raise LabError(f"no lab matches {selected} in {paths.labs_dir()}")
    # Refuse an unknown or unreachable backend before any lab runs: a run would only
    # overwrite the executed notebooks of a good run with failed ones.
    backends.resolve(backend, announce=False)
    jobs = max(1, min(jobs or default_jobs(backend), len(labs)))
    print(f"running {len(labs)} lab(s) on {backend}, {jobs} at a time", file=stream, flush=True)
    kwargs = [dict(notebook=nb, parameters={"BACKEND": backend, "OUTPUT_DIR": str(build / "results")},
                   output_notebook=build / "labs" / nb.name) for nb in labs]
    runs: dict[str, LabRun] = {}

    def report(run: LabRun) -> None:
        runs[run.lab] = run
        print(f"[{len(runs)}/{len(labs)}] {run.lab}: {run.status} ({run.seconds:.1f} s)",
              file=stream, flush=True)
        if run.error:
            print(f"    {run.error[:400]}", file=stream, flush=True)

    if jobs == 1:
        for kw in kwargs:
            print(f"  started {kw['notebook'].stem}", file=stream, flush=True)
            report(run_lab(**kw))
    else:
        # At most ``jobs`` labs are handed to the pool at once, so a lab is announced as
        # started when a worker actually takes it, not when it is queued.
        waiting = list(kwargs)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            running = set()

            def start_next() -> None:
                kw = waiting.pop(0)
                print(f"  started {kw['notebook'].stem}", file=stream, flush=True)
                running.add(pool.submit(run_lab, **kw))

            while waiting and len(running) < jobs:
                start_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.discard(future)
                    report(future.result())
                    if waiting:
                        start_next()
    return [runs[nb.stem] for nb in labs]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m helpers.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sim", help="sim | kind | kwok | auto")
    parser.add_argument("--labs", nargs="*", help="lab prefixes to run, e.g. 01 03 (default all)")
    parser.add_argument("--build-dir", type=Path, default=None, help="default: build/")
    parser.add_argument("--jobs", type=int, default=None,
                        help="labs at a time (default: 2 on sim with 2+ CPUs, else 1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs = run_all(args.backend, args.labs, args.build_dir, jobs=args.jobs)
    print()
    print(format_table(runs, wall=time.perf_counter() - start))
    failed = [r.lab for r in runs if r.status != "ok"]
    if failed:
        print(f"\n{len(failed)} lab(s) failed: {', '.join(failed)}; "
              "the executed notebooks in build/labs/ show where.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
