"""The result of a scheduling run: the one shape every backend returns.

:class:`SchedulingResult` (per-job :class:`JobResult`, per-PodGroup :class:`PodGroupResult`,
gridlock, waste, events) is what the model (:mod:`helpers.scheduling.simulate`) and the runs
on a real API server (:mod:`helpers.backend.scheduling_run`) both produce; lab cells read it
without knowing which made it.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any

#: The job kind of an always-on service: its pods never finish, so it is never "completed".
SERVICE_KIND = "Deployment"


@dataclass
class JobResult:
    """Per-job outcome: pod counts and the final state.

    ``state`` is one of ``completed`` (every pod succeeded), ``running`` (some pods work;
    includes never-ending services), ``waiting`` (pods hold resources but wait for peers,
    and a future event may still help), ``gridlocked`` (pods hold resources and nothing can
    ever give them their peers), ``pending`` (no pod placed).
    """

    name: str
    kind: str
    pods: int
    min_member: int
    bound: int
    pending: int
    completed: int
    state: str
    scheduler: str
    queue: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class PodGroupResult:
    """A PodGroup's last phase and every phase it went through, as ``[time, phase]``.

    ``deleted_at`` is set when the PodGroup was deleted during the run: vc-controller-manager
    deletes a Volcano Job's PodGroup when the job completes, so such a PodGroup's last phase
    is ``Running``, never ``Completed`` (a PodGroup created by hand is not deleted and goes
    on to ``Completed``).
    """

    name: str
    phase: str
    min_member: int
    queue: str
    history: list[list[Any]]
    deleted_at: float | None = None


@dataclass
class SchedulingResult:
    """The outcome of one run; identical in shape for ``sim``, ``kind`` and ``kwok``."""

    backend: str
    scheduler: str
    gridlocked: bool
    jobs: dict[str, JobResult]
    podgroups: dict[str, PodGroupResult]
    metrics: dict[str, Any]
    pods: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the documented result shape)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchedulingResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a results JSON)."""
        data = dict(data)
        data["jobs"] = {k: JobResult(**v) for k, v in data["jobs"].items()}
        data["podgroups"] = {k: PodGroupResult(**v) for k, v in data["podgroups"].items()}
        return cls(**data)

    def vcjob_phases(self, job: str) -> list[str]:
        """The phases Volcano Job ``job`` went through, in order (from ``vcjob`` events).

        On a cluster they are the phases the run saw; a phase that lasts less than one poll
        (often ``Completing``) may be missing there.
        """
        return [e["message"].removeprefix("phase ") for e in self.events
                if e["type"] == "vcjob" and e["object"] == f"vcjob/{job}"]

    def bound_by_queue(self, t: float) -> dict[str, int]:
        """Pods holding a node at time ``t``, counted per Volcano queue of their job."""
        out: dict[str, int] = {}
        for pod in self.pods.values():
            start, stop = pod["bound_at"], pod["finished_at"]
            if start is None or start > t or (stop is not None and stop <= t):
                continue
            queue = self.jobs[pod["job"]].queue if pod["job"] in self.jobs else None
            if queue is not None:
                out[queue] = out.get(queue, 0) + 1
        return out

    def bound_by_queue_at_start(self) -> dict[str, int]:
        """Pods per Volcano queue holding a node once the first allocation is in place.

        That is :meth:`bound_by_queue` just before the first pod finishes (or at the end, if
        none does). Not at the first binding time: on a cluster one scheduling session's
        binds are seen over several polls, so the first binding time catches only part of
        the session; until a pod finishes, nothing frees a node, so the share is complete.
        """
        finishes = [p["finished_at"] for p in self.pods.values() if p["finished_at"] is not None]
        binds = [p["bound_at"] for p in self.pods.values() if p["bound_at"] is not None]
        if not binds:
            return {}
        if not finishes:
            return self.bound_by_queue(max(binds))
        first_finish = min(finishes)
        return self.bound_by_queue(max([b for b in binds if b < first_finish] or [min(binds)]))

    def held_idle(self, t: float) -> int:
        """Units of the scarce resource held at time ``t`` by pods that do no work.

        From ``metrics["utilisation"]`` (allocated minus working). With kube-scheduler's gang
        plugin the model counts nodes reserved at Permit as allocated; a cluster backend sees
        bound pods only.
        """
        u = self.metrics["utilisation"]
        i = bisect.bisect_right(u["t"], t) - 1
        return 0 if i < 0 else u["allocated"][i] - u["working"][i]

    def pending_reasons(self) -> dict[str, str]:
        """Why each Pending pod is not placed: the last scheduling event naming it.

        ``Gated`` (kube-scheduler's GangScheduling PreEnqueue kept it out of the queue: the
        model's event; a real scheduler records none), ``WaitingOnPermit`` (reserved, waiting
        for its gang) or ``FailedScheduling`` (no node fits, or its gang's Permit timed out).
        Pods with no such event map to ``"no scheduling event"``.
        """
        last: dict[str, str] = {}
        for e in self.events:
            if e["type"] in ("Gated", "WaitingOnPermit", "FailedScheduling") \
                    and e["object"].startswith("pod/"):
                last[e["object"][4:]] = f"{e['type']}: {e['message']}"
        return {name: last.get(name, "no scheduling event") for name, pod in self.pods.items()
                if pod["phase"] == "Pending"}

    def summary(self) -> str:
        """A readable multi-line summary (what the CLI prints).

        Its first line counts the *training* jobs that completed; an always-on service (a
        Deployment) never completes, so it is named apart rather than counted as unfinished.
        """
        m = self.metrics
        training = [j for j in self.jobs.values() if j.kind != SERVICE_KIND]
        services = len(self.jobs) - len(training)
        done = f"training jobs completed={sum(j.state == 'completed' for j in training)}/{len(training)}"
        if services:
            done += f" (+{services} always-on service{'s' if services > 1 else ''})"
        lines = [f"scheduler={self.scheduler} backend={self.backend} gridlocked={self.gridlocked} "
                 f"{done} "
                 f"makespan={_fmt(m['makespan'])} s waste={m['waste_gpu_seconds']:.0f} GPU-s "
                 f"end={m['end_time']:.0f} s"]
        lines.append(f"{'job':24} {'kind':10} {'pods':>4} {'min':>4} {'bound':>5} {'pend':>4} "
                     f"{'done':>4}  state")
        for j in self.jobs.values():
            lines.append(f"{j.name:24} {j.kind:10} {j.pods:4d} {j.min_member:4d} {j.bound:5d} "
                         f"{j.pending:4d} {j.completed:4d}  {j.state}")
        for g in self.podgroups.values():
            phases = " -> ".join(p for _, p in g.history)
            if g.deleted_at is not None:
                phases += " -> (deleted with its Volcano Job)"
            lines.append(f"podgroup {g.name} (queue {g.queue}, minMember {g.min_member}): {phases}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
