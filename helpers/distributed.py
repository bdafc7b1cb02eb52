"""Distributed XGBoost training through XGBoost's collective (Rabit): one worker's side.

Every worker of an XGBoostJob (Training Operator v1) or of a TrainJob on Trainer v2's
XGBoost runtime runs ``python -m helpers.train``; the launcher tells each one where the
group meets through environment variables, read here in one place (:func:`from_env`):

==================  =============================================  =======================
launcher            tracker address                                rank / world size
==================  =============================================  =======================
Training Operator   ``MASTER_ADDR`` (``<job>-master-0``),          ``RANK`` (Master 0,
v1, XGBoostJob      ``MASTER_PORT`` (the Master's                  Workers 1..N),
                    ``xgboostjob-port``)                           ``WORLD_SIZE``
Trainer v2,         ``DMLC_TRACKER_URI`` (``<job>-node-0-0.<job>``),  ``DMLC_TASK_ID``,
XGBoost runtime     ``DMLC_TRACKER_PORT``                          ``DMLC_NUM_WORKER``
==================  =============================================  =======================

Rank 0 runs the tracker (:class:`xgboost.tracker.RabitTracker`) and every rank, rank 0
included, joins the collective (:class:`xgboost.collective.CommunicatorContext`) and fits
on its shard of the training split; histograms are summed across the group, so all ranks
end with the same model, and rank 0 saves it. Every wait is bounded: reaching the tracker,
and the group forming. A worker that never arrives makes the others fail after
``join_timeout`` seconds with :class:`RendezvousError`, naming the ranks that were missing.

The launcher's port is where rank 0's :class:`RollCall` listens, not the tracker itself:
xgboost 2.1's ``RabitTracker`` binds a port of its own choosing whatever ``port`` it is
given, so the roll call tells each arriving worker the tracker's port (on a cluster the
replicas' Services are headless, so every port of the pod is reachable by its name), and
it records who arrived, which the tracker does not say.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from helpers.errors import LabError

#: Seconds a worker waits for the tracker to listen and for the whole group to join, on a
#: cluster: pods of one gang start within seconds of each other once Volcano admits it,
#: but a node may still be unpacking the image. The local launcher passes a short bound.
DEFAULT_JOIN_TIMEOUT = 120.0
#: Environment names the Training Operator v1 sets on every XGBoostJob replica
#: (pkg/controller.v1/xgboost/xgboost.go, SetPodEnv, at the pinned release).
OPERATOR_V1_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
#: Environment names Trainer v2's XGBoost runtime plugin sets on every node
#: (pkg/runtime/framework/plugins/xgboost, DMLC_* in pkg/constants).
TRAINER_V2_ENV = ("DMLC_TRACKER_URI", "DMLC_TRACKER_PORT", "DMLC_NUM_WORKER", "DMLC_TASK_ID")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Seconds rank 0 keeps its roll call open after the group failed to form, so the other
#: ranks (whose bounds run out at about the same moment) can still ask who arrived.
ROLLCALL_LINGER = 1.0


class RendezvousError(LabError):
    """The workers did not all meet at the tracker within the bound.

    Attributes:
        missing_ranks: the ranks that never checked in (as far as this worker could learn;
            empty if rank 0 itself was unreachable).
    """

    def __init__(self, message: str, missing_ranks: list[int] | None = None):
        super().__init__(message)
        self.missing_ranks = list(missing_ranks or [])


@dataclass(frozen=True)
class Rendezvous:
    """Where one worker meets its group: the tracker's address, its rank, the group size.

    Attributes:
        tracker_host: the host rank 0 runs the tracker on (a DNS name on a cluster).
        tracker_port: the port the launcher gave: rank 0's roll call, which tells each
            worker the port the tracker took.
        rank: this worker's rank, 0 .. world_size - 1 (0 runs the tracker and saves).
        world_size: how many workers train together.
        launcher: which environment it came from: ``training-operator-v1``,
            ``trainer-v2`` or ``local`` (:mod:`helpers.distributed_local`).
    """

    tracker_host: str
    tracker_port: int
    rank: int
    world_size: int
    launcher: str = "local"

    def operator_env(self) -> dict[str, str]:
        """The Training Operator v1's variables for this worker (what the local launcher sets)."""
        return {"MASTER_ADDR": self.tracker_host, "MASTER_PORT": str(self.tracker_port),
                "WORLD_SIZE": str(self.world_size), "RANK": str(self.rank)}

    def trainer_v2_env(self) -> dict[str, str]:
        """Trainer v2's XGBoost runtime variables for this worker."""
        return {"DMLC_TRACKER_URI": self.tracker_host, "DMLC_TRACKER_PORT": str(self.tracker_port),
                "DMLC_NUM_WORKER": str(self.world_size), "DMLC_TASK_ID": str(self.rank)}


def _int(env: Mapping[str, str], name: str, launcher: str) -> int:
    raw = env[name].strip()
    try:
        return int(raw)
    except ValueError:
        raise LabError(f"{name}={raw!r} (set by the {launcher}) is not a whole number: "
                       "check the job's environment") from None


def from_env(env: Mapping[str, str] | None = None) -> Rendezvous | None:
    """Read the rendezvous a launcher set in the environment, or ``None`` if there is none.

    Args:
        env: the environment to read; default ``os.environ``.

    Returns:
        A :class:`Rendezvous` when the Training Operator v1's variables (``MASTER_ADDR``,
        ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``) or Trainer v2's (``DMLC_TRACKER_URI``,
        ``DMLC_TRACKER_PORT``, ``DMLC_NUM_WORKER``, ``DMLC_TASK_ID``) are all set, v1's
        first; ``None`` when neither set is present (a plain single-process run).

    Raises:
        LabError: a set is only partly present, or a value is not a valid number/rank.
    """
    env = os.environ if env is None else env
    for names, launcher in ((OPERATOR_V1_ENV, "training-operator-v1"),
                            (TRAINER_V2_ENV, "trainer-v2")):
        present = [n for n in names if env.get(n, "").strip()]
        if not present:
            continue
        if len(present) < len(names):
            missing = [n for n in names if n not in present]
            raise LabError(f"the environment sets {present} but not {missing}: a {launcher} "
                           "worker needs all of them to find its group (or none, to train alone)")
        host, port, world, rank = (env[names[0]].strip(), _int(env, names[1], launcher),
                                   _int(env, names[2], launcher), _int(env, names[3], launcher))
        if world < 1 or not 0 <= rank < world:
            raise LabError(f"rank {rank} of a world of {world} (from the {launcher}'s "
                           f"{names[3]}/{names[2]}): a rank must lie in 0..world-1")
        if not 0 < port < 65535:
            raise LabError(f"tracker port {port} from {names[1]} is not a usable TCP port")
        return Rendezvous(host, port, rank, world, launcher)
    return None


def shard(n_rows: int, rank: int, world_size: int) -> slice:
    """The rows of the training split rank ``rank`` trains on: every ``world_size``-th row.

    The split keeps the CSV's order (grouped by species), so striding gives every shard
    the same mix of the three species, which XGBoost's classifier needs on every worker.
    """
    if world_size > n_rows:
        raise LabError(f"{world_size} workers for {n_rows} training rows: at most one worker "
                       "per row (use fewer workers)")
    return slice(rank, None, world_size)


# ----------------------------------------------------------------------------- roll call ---

class RollCall:
    """Rank 0's record of which ranks have arrived, on a small TCP port of its own.

    XGBoost's tracker does not say whom it is still waiting for, so each worker, before it
    joins the collective, sends ``rank N`` here and is answered ``port P`` (the tracker's
    port); a worker whose join times out asks ``who`` to learn who arrived. Binds the
    launcher's port on the tracker's host (all interfaces unless it is loopback).
    """

    def __init__(self, bind_host: str, port: int):
        self.tracker_port: int | None = None  # set once the tracker listens
        self.arrived: set[int] = set()
        self._lock = threading.Lock()
        self._sock = socket.create_server((bind_host, port), reuse_port=False)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rollcall", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(1.0)
                try:
                    line = conn.makefile("r").readline().strip()
                    if line.startswith("rank ") and self.tracker_port is not None:
                        with self._lock:
                            self.arrived.add(int(line.split()[1]))
                        conn.sendall(f"port {self.tracker_port}\n".encode())
                    elif line == "who":
                        with self._lock:
                            conn.sendall((json.dumps(sorted(self.arrived)) + "\n").encode())
                except (OSError, ValueError):
                    pass  # a peer that hung up or sent garbage: the roll call goes on

    def close(self) -> None:
        """Stop listening (safe to call twice)."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=1.0)


def _ask(host: str, port: int, message: str, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(message.encode() + b"\n")
        return sock.makefile("r").readline().strip()


def wait_for_tracker(rdv: Rendezvous, timeout: float) -> int:
    """Check in at rank 0's roll call, retrying until it listens or ``timeout`` runs out.

    Returns:
        The port the tracker listens on.

    Raises:
        RendezvousError: rank 0 was not listening within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            answer = _ask(rdv.tracker_host, rdv.tracker_port, f"rank {rdv.rank}", 1.0)
            if answer.startswith("port "):
                return int(answer.split()[1])
        except (OSError, ValueError) as exc:  # refused / unresolvable while rank 0 starts: retry
            last = exc
        time.sleep(0.1)
    raise RendezvousError(
        f"rank {rdv.rank}: the tracker (rank 0) at {rdv.tracker_host}:{rdv.tracker_port} was "
        f"not listening after {timeout:g} s ({last}): rank 0 never arrived; check that the "
        "master replica is running", missing_ranks=[0])


def _missing(rdv: Rendezvous, rollcall: RollCall | None) -> list[int] | None:
    if rollcall is not None:
        arrived = set(rollcall.arrived)
    else:
        try:
            arrived = set(json.loads(_ask(rdv.tracker_host, rdv.tracker_port, "who", 1.0)))
        except (OSError, ValueError):
            return None
    return sorted(set(range(rdv.world_size)) - arrived)


def _join_failure(rdv: Rendezvous, timeout: float, rollcall: RollCall | None,
                  detail: str) -> RendezvousError:
    missing = _missing(rdv, rollcall)
    who = (f"ranks {missing} of {rdv.world_size} never arrived" if missing else
           "every rank checked in but the group did not form" if missing == [] else
           "rank 0 could not be asked who arrived")
    return RendezvousError(
        f"rank {rdv.rank}: the collective of {rdv.world_size} workers did not form within "
        f"{timeout:g} s at the tracker {rdv.tracker_host}:{rdv.tracker_port}: {who} ({detail}). "
        "Every worker waits for the whole group, so a partial gang holds its slots and trains "
        "nothing: start all the workers (gang scheduling does) or fewer of them",
        missing_ranks=missing or [])


def group_formed_line(world_size: int, ranks: list[int]) -> str:
    """What rank 0 prints once the tracker has the whole group (read back from pod logs)."""
    return f"tracker: all {world_size} workers joined the collective (ranks {ranks})"


@contextmanager
def collective_group(rdv: Rendezvous, join_timeout: float = DEFAULT_JOIN_TIMEOUT,
                     ) -> Iterator[None]:
    """Join XGBoost's collective as ``rdv.rank``; rank 0 also runs the tracker.

    Inside the ``with`` block XGBoost trains as one member of the group. Leaving the block
    finalizes the collective and, on rank 0, waits (bounded) for the tracker to finish.

    Args:
        rdv: where the group meets (:func:`from_env`).
        join_timeout: seconds to wait for rank 0 to listen, and again for the group to form.

    Raises:
        RendezvousError: rank 0 did not come up, or the group did not form in time; the
            message names the ranks that never arrived.
    """
    from xgboost import collective
    from xgboost.core import XGBoostError
    from xgboost.tracker import RabitTracker

    tracker = rollcall = None
    bind = "127.0.0.1" if rdv.tracker_host in _LOOPBACK else "0.0.0.0"  # noqa: S104 - pods
    try:
        if rdv.rank == 0:
            try:  # first: a port in use fails here, before a tracker exists to wind down
                rollcall = RollCall(bind, rdv.tracker_port)
            except OSError as exc:
                raise LabError(f"rank 0 cannot listen on {bind}:{rdv.tracker_port} ({exc}): "
                               "another process holds the port; stop it or pick another "
                               "port") from None
            # sortby="task": ranks follow the task ids below, so the tracker's rank is ours.
            tracker = RabitTracker(n_workers=rdv.world_size, host_ip=bind, sortby="task",
                                   timeout=max(1, round(join_timeout)))
            tracker.start()
            rollcall.tracker_port = int(tracker.worker_args()["dmlc_tracker_port"])
        port = wait_for_tracker(rdv, join_timeout)
        args = {"dmlc_tracker_uri": rdv.tracker_host, "dmlc_tracker_port": port,
                # zero-padded: the tracker sorts task ids as strings
                "dmlc_task_id": f"{rdv.rank:05d}", "dmlc_timeout": max(1, round(join_timeout)),
                "dmlc_retry": 3}
        try:
            collective.init(**args)
        except XGBoostError as exc:
            detail = str(exc).strip().splitlines()
            failure = _join_failure(rdv, join_timeout, rollcall,
                                    detail[1].strip("- ") if len(detail) > 1 else "timeout")
            if rollcall is not None:
                time.sleep(ROLLCALL_LINGER)  # the other ranks' bounds end now too: let them ask
            raise failure from None
        try:
            if collective.get_rank() != rdv.rank:
                raise LabError(f"the tracker gave rank {collective.get_rank()} to the worker "
                               f"launched as rank {rdv.rank}: ranks must follow the task ids")
            if rollcall is not None:  # the line a cluster test reads in the Master's log
                print(group_formed_line(collective.get_world_size(), sorted(rollcall.arrived)),
                      flush=True)
            yield
        finally:
            collective.finalize()
        if tracker is not None:
            tracker.wait_for(max(1, round(join_timeout)))
    finally:
        if rollcall is not None:
            rollcall.close()
        if tracker is not None:
            try:
                tracker.free()
            except XGBoostError:
                pass  # the tracker's own timeout after a failed group: already reported


def report(path: str | os.PathLike[str], **fields: object) -> None:
    """Write one worker's outcome as JSON (``python -m helpers.train --report-json``)."""
    with open(path, "w") as fh:  # noqa: PTH123
        json.dump(fields, fh, indent=1, sort_keys=True)


def rendezvous_fields(rdv: Rendezvous) -> dict[str, object]:
    """The rendezvous as report fields."""
    return asdict(rdv)
