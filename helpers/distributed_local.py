"""Distributed training on the laptop: N workers of ``python -m helpers.train`` on 127.0.0.1.

The ``sim`` stand-in for an XGBoostJob's replicas. :class:`LocalTraining` starts each
worker as its own process with the environment the Training Operator v1 would set
(``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, see
:meth:`helpers.distributed.Rendezvous.operator_env`), so the code that runs is exactly
what runs in the pods:

- the launcher's port (rank 0's roll call) is free on 127.0.0.1, and the tracker
  picks a free one of its own;
- all workers share one process group, stopped together
  (:func:`helpers.processes.stop_processes`);
- nothing outlives the kernel: an interrupt while waiting stops the group at once, a
  ``weakref.finalize`` stops it when the handle goes away or the interpreter exits, and each
  worker exits when the kernel dies (``--parent-pid``, :func:`helpers.processes.die_with_parent`).

Starting only some of the ranks (``ranks=[0, 1, 2]`` of 4) is lab 01's partial gang as a
real program: the started workers hold their places at the tracker, train nothing, and
fail when ``join_timeout`` runs out, naming the missing rank.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from helpers import distributed, paths
from helpers.errors import LabError
from helpers.processes import free_port, stop_processes

#: Seconds a local worker waits for its group by default. A complete group forms as soon as
#: its last worker has started (a few seconds on a busy laptop), so a generous bound costs
#: nothing; to watch a partial gang give up, pass a short one (lab 03 uses 3 s).
LOCAL_JOIN_TIMEOUT = 60.0
#: Extra seconds :meth:`LocalTraining.wait` allows beyond the workers' own bound: Python
#: and XGBoost start-up (about a second each on a busy machine) and saving the model.
STARTUP_ALLOWANCE = 30.0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``port`` of ``host`` any more (a server could bind it).

    Binds with ``SO_REUSEADDR``, as servers do, so connections of the finished run that
    linger in TIME_WAIT do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class LocalRun:
    """The outcome of a :class:`LocalTraining` run.

    Attributes:
        world_size: the group size the workers were told.
        ranks: the ranks that were started.
        exit_codes: rank -> exit code (0 trained; 2 the group did not form).
        reports: rank -> the worker's JSON report (``--report-json``).
        logs: rank -> the worker's output.
        seconds: wall time from the first start to the last exit.
        tracker_port: the launcher's port on 127.0.0.1 (rank 0's roll call).
        pids: the workers' process ids.
    """

    world_size: int
    ranks: list[int]
    exit_codes: dict[int, int | None]
    reports: dict[int, dict]
    logs: dict[int, str]
    seconds: float
    tracker_port: int
    pids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every started worker trained and exited 0."""
        return all(code == 0 for code in self.exit_codes.values())

    @property
    def model_path(self) -> Path | None:
        """Where rank 0 saved the model, if it did."""
        saved = self.reports.get(0, {}).get("model_path")
        return Path(saved) if saved else None

    @property
    def accuracy(self) -> float | None:
        """Rank 0's held-out accuracy, if it trained."""
        return self.reports.get(0, {}).get("accuracy")

    @property
    def missing_ranks(self) -> list[int]:
        """The ranks the workers reported as never arrived (empty when the group formed)."""
        return sorted({r for rep in self.reports.values() for r in rep.get("missing_ranks", [])})

    def errors(self) -> dict[int, str]:
        """rank -> the message of a worker that failed."""
        return {rank: rep["error"] for rank, rep in self.reports.items() if not rep.get("ok")}

    def summary(self) -> dict[str, object]:
        """The figures a lab records in its results JSON."""
        return {"world_size": self.world_size, "ranks": self.ranks, "ok": self.ok,
                "exit_codes": {str(k): v for k, v in self.exit_codes.items()},
                "missing_ranks": self.missing_ranks, "accuracy": self.accuracy,
                "seconds": round(self.seconds, 2)}


class LocalTraining:
    """``n_workers`` workers of ``python -m helpers.train`` training together on 127.0.0.1.

    Args:
        n_workers: the group size (the XGBoostJob's Master + Workers).
        ranks: which ranks to start; default all. Fewer is a partial gang.
        store_dir: the model store rank 0 saves into; default :func:`helpers.paths.model_store`.
        name: the model's folder name in the store.
        fmt: ``json`` or ``ubj``.
        seed: the split's and XGBoost's seed.
        n_estimators: boosting rounds; ``None`` keeps :data:`helpers.training.DEFAULT_PARAMS`.
        test_fraction: share of each species held out (``--test-fraction``).
        join_timeout: seconds each worker waits for the tracker and for the group.
        launcher: whose variables the workers get: ``training-operator-v1`` (``MASTER_ADDR``,
            ...; the default, as the kit's XGBoostJob) or ``trainer-v2`` (``DMLC_*``).

    Use as a context manager, or :meth:`start` then :meth:`wait` (which always stops the
    group before it returns or raises). :func:`train_local` does both.
    """

    def __init__(self, n_workers: int = 4, *, ranks: list[int] | None = None,  # noqa: PLR0913 - keyword-only knobs
                 store_dir: str | os.PathLike[str] | None = None, name: str = "iris",
                 fmt: str = "json", seed: int = 42, n_estimators: int | None = None,
                 test_fraction: float = 0.3, join_timeout: float = LOCAL_JOIN_TIMEOUT,
                 launcher: str = "training-operator-v1"):
        if launcher not in ("training-operator-v1", "trainer-v2"):
            raise LabError(f"launcher {launcher!r}: choose training-operator-v1 or trainer-v2")
        self.launcher = launcher
        if n_workers < 1:
            raise LabError(f"n_workers={n_workers}: a group needs at least one worker")
        self.n_workers = n_workers
        self.ranks = sorted(set(range(n_workers) if ranks is None else ranks))
        if not self.ranks or not set(self.ranks) <= set(range(n_workers)):
            raise LabError(f"ranks {ranks} must be a non-empty subset of 0..{n_workers - 1}")
        self.store = paths.resolve(store_dir) if store_dir is not None else paths.model_store()
        self.name, self.fmt, self.seed = name, fmt, seed
        self.n_estimators, self.join_timeout = n_estimators, join_timeout
        self.test_fraction = test_fraction
        self.tracker_port: int | None = None
        self.procs: dict[int, subprocess.Popen] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._finalizer: weakref.finalize | None = None
        self._started = 0.0
        self._pgid = 0

    def command(self, rank: int) -> list[str]:
        """The argument list of one worker (never a shell string)."""
        cmd = [sys.executable, "-m", "helpers.train", "--output-dir", str(self.store),
               "--seed", str(self.seed), "--format", self.fmt, "--name", self.name,
               "--test-fraction", str(self.test_fraction),
               "--join-timeout", str(self.join_timeout),
               "--report-json", str(self._dir / f"rank-{rank}.json")]
        if threading.current_thread() is threading.main_thread():
            # PR_SET_PDEATHSIG follows the launching *thread*: from another thread it would
            # stop the workers when that thread ends, so there only the finalizer stops them.
            cmd += ["--parent-pid", str(os.getpid())]
        if self.n_estimators is not None:
            cmd += ["--n-estimators", str(self.n_estimators)]
        return cmd

    @property
    def _dir(self) -> Path:
        if self._tmp is None:
            raise LabError("the workers have not been started: call start() first")
        return Path(self._tmp.name)

    def start(self) -> LocalTraining:
        """Start the workers (rank order), all in one new process group."""
        if self.procs:
            raise LabError("these workers were already started: make a new LocalTraining")
        self._tmp = tempfile.TemporaryDirectory(prefix="kflabs-train-")
        self.tracker_port = free_port()
        self._started = time.perf_counter()
        pgid = 0  # 0: the first worker leads a new group; the rest join it
        started: list[subprocess.Popen] = []  # shared with the finalizer, which holds no self
        for rank in self.ranks:
            rdv = distributed.Rendezvous("127.0.0.1", self.tracker_port, rank, self.n_workers)
            v1 = self.launcher == "training-operator-v1"
            env = {k: v for k, v in os.environ.items()  # one launcher's variables, not two
                   if k not in distributed.OPERATOR_V1_ENV + distributed.TRAINER_V2_ENV}
            env.update(rdv.operator_env() if v1 else rdv.trainer_v2_env(),
                       OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # single-threaded beside the kernel
            with open(self._dir / f"rank-{rank}.log", "wb") as log:  # noqa: PTH123
                proc = subprocess.Popen(self.command(rank), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=paths.ROOT, env=env,
                                        process_group=pgid)
            self.procs[rank] = proc
            started.append(proc)
            if pgid == 0:
                pgid = proc.pid
                self._finalizer = weakref.finalize(self, stop_processes, started, pgid, 2.0)
        self._pgid = pgid
        return self

    def stop(self, grace: float = 5.0) -> dict[int, int | None]:
        """Stop every worker still running (SIGTERM, then SIGKILL); safe to call twice."""
        if not self.procs:
            return {}
        codes = stop_processes(list(self.procs.values()), self._pgid, grace)
        if self._finalizer is not None:
            self._finalizer.detach()
        return dict(zip(self.procs, codes, strict=True))

    def wait(self, timeout: float | None = None) -> LocalRun:
        """Wait for every worker to exit, then collect their reports and logs.

        Args:
            timeout: the most seconds to wait; default the workers' own bound (twice: the
                tracker, then the group) plus :data:`STARTUP_ALLOWANCE`.

        Returns:
            A :class:`LocalRun`; check ``.ok`` (a group that did not form is a result here,
            not an exception: the lab shows it).

        Raises:
            LabError: the workers were still running after ``timeout`` (they are stopped).
        """
        bound = 2 * self.join_timeout + STARTUP_ALLOWANCE if timeout is None else timeout
        deadline = time.monotonic() + bound
        try:
            for proc in self.procs.values():
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise LabError(f"the local workers were still running after {bound:g} s: stopped "
                           f"them; their last output:\n{self._tails()}") from None
        finally:
            # Also on KeyboardInterrupt (a kernel interrupt): never leave workers behind.
            codes = self.stop()
        seconds = time.perf_counter() - self._started
        reports = {}
        for rank in self.ranks:
            path = self._dir / f"rank-{rank}.json"
            if path.is_file():
                reports[rank] = json.loads(path.read_text())
        run = LocalRun(world_size=self.n_workers, ranks=self.ranks, exit_codes=codes,
                       reports=reports, logs=self.logs(), seconds=seconds,
                       tracker_port=self.tracker_port, pids=[p.pid for p in self.procs.values()])
        crashed = [r for r in self.ranks if r not in reports]
        if crashed:
            raise LabError(f"local workers {crashed} exited without a report (exit codes "
                           f"{[codes[r] for r in crashed]}); their output:\n{self._tails()}")
        return run

    def logs(self) -> dict[int, str]:
        """rank -> the worker's output so far."""
        return {rank: (self._dir / f"rank-{rank}.log").read_text(errors="replace")
                for rank in self.ranks if (self._dir / f"rank-{rank}.log").is_file()}

    def _tails(self, lines: int = 6) -> str:
        return "\n".join(f"[rank {rank}] {line}" for rank, text in self.logs().items()
                         for line in text.splitlines()[-lines:])

    def cleanup(self) -> None:
        """Stop the workers and delete their logs and reports; safe to call twice."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalTraining:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def train_local(n_workers: int = 4, *, ranks: list[int] | None = None,
                timeout: float | None = None, **kwargs: object) -> LocalRun:
    """Run ``n_workers`` local workers to the end and return what they did.

    Args:
        n_workers: the group size.
        ranks: the ranks to start (default all; fewer is a partial gang that times out).
        timeout: see :meth:`LocalTraining.wait`.
        **kwargs: other :class:`LocalTraining` options (``store_dir``, ``seed``,
            ``join_timeout``, ...).
    """
    with LocalTraining(n_workers, ranks=ranks, **kwargs) as workers:
        return workers.wait(timeout)


#: ``make bench`` targets of this area: lab 03 (which runs a 4-worker group and a partial
#: gang) alone on the embedded default.
def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.distributed_local``: train with N local workers, print the outcome."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.distributed_local",
                                     description=main.__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="group size (default 4)")
    parser.add_argument("--start", type=int, default=None,
                        help="start only the first START ranks (a partial gang)")
    parser.add_argument("--output-dir", required=True, help="model store rank 0 saves into")
    parser.add_argument("--join-timeout", type=float, default=LOCAL_JOIN_TIMEOUT,
                        help=f"seconds each worker waits for its group (default {LOCAL_JOIN_TIMEOUT:g})")
    args = parser.parse_args(argv)
    ranks = None if args.start is None else list(range(args.start))
    try:
        run = train_local(args.workers, ranks=ranks, store_dir=Path(args.output_dir).resolve(),
                          join_timeout=args.join_timeout)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run.summary(), sort_keys=True))
    for rank, message in run.errors().items():
        print(f"rank {rank}: {message}", file=sys.stderr)
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
