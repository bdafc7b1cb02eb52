"""Event loop of the scheduling model: controllers, workload semantics, metrics, gridlock.

Time is simulated (seconds from the first apply); a run is deterministic for a given seed
(the seed only breaks ties between equally good nodes, as both schedulers do at random).

What happens, in order, at each instant:

1. due events: a manifest file is applied; a controller creates pods; a container starts;
   a job's workers finish;
2. kube-scheduler (:mod:`.default_scheduler`) drains its active queue, one pod at a time;
3. Volcano (:mod:`.volcano`) runs a session if this is a session tick (``schedule_period``)
   and something changed since its last session.

Workload semantics: a worker's container starts ``pod_start_seconds`` after binding; it then
waits until ``WORLD_SIZE`` peers of its job are running (the DNS rendezvous), works
``WORK_SECONDS`` and exits, which frees its resources. ``WORLD_SIZE: 1`` pods work alone.

Creation order: bare pods in manifest order (the order the lessons rely on); with
``scheduler="gang"`` kube-scheduler drains its queue after each one, as a real scheduler
keeps up with the API calls that create them (which decides which of two gangs completes its
quorum first). For
``batch/v1`` Jobs and Deployments applied in the same file, the controllers' slow-start
batches (1, 2, 4, ... pods) of every workload interleave round-robin, batch by batch.
**Known simplification:** that lockstep is one order the real controllers can produce, not
the only one. The Job controller syncs Jobs concurrently and the syncs race, so the real
order changes from run to run: on the pinned control plane (``BACKEND="kwok"``) the
scenario ``two-jobs``/``default`` (two 4-pod Indexed Jobs on 6 GPUs) gridlocked in some
runs, as the model predicts, and in others all or most of ``train-a``'s pods came first,
``train-a`` ran, then ``train-b``, with no gridlock. ``SimConfig(job_controller_batches=False)``
gives that other outcome (one workload's pods after another's). The lessons therefore show
the deadlock with bare pods created in the order they need (``two-jobs``/``default-pods``),
and the conformance test accepts either outcome for the Indexed Jobs.

Volcano Jobs get their pods once their PodGroup leaves Pending (as vc-controller-manager
does). Their own phases are logged as ``vcjob`` events (``phase Pending``, ``Running`` once
``minAvailable`` pods run, ``Completing`` and ``Completed`` when every pod has succeeded);
at completion the controller deletes the job's PodGroup (a ``podgroup`` event ``deleted``;
the PodGroup's last phase stays ``Running`` and ``deleted_at`` is set), as the real
vc-controller-manager does. PodGroups created by hand are never deleted and reach Completed.

Metrics: ``waste`` integrates, per resource, the requests of pods that are bound but not
working (starting up or waiting for peers). The run ends when nothing can happen any more;
if then some job is unfinished (stuck, pending, or a never-ending service) the observation
window is stretched to ``horizon``. ``gridlocked`` is true when the run went quiet while a
job holds pods that wait for peers.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from helpers.errors import LabError, ManifestError
from helpers.scheduling.model import (
    CPU,
    DEFAULT_SCHEDULER,
    GPU,
    MEMORY,
    VOLCANO,
    JobResult,
    JobSpec,
    Manifests,
    NodeSpec,
    PodGroupResult,
    PodGroupSpec,
    PodSpec,
    QueueSpec,
    SchedulingResult,
)

SCHEDULERS = ("default", "volcano", "gang")


@dataclass
class SimConfig:
    """Timing and policy knobs. Defaults follow the pinned upstream defaults where one exists.

    Attributes:
        horizon: Observation window (s) used when the run ends with unfinished work.
        pod_start_seconds: Binding to container running (image already cached).
        apply_interval: Seconds between consecutive manifest files (the lab applies them
            one after another, waiting for each file's pods to be created).
        schedule_period: Volcano's ``--schedule-period`` (1s in the pinned installer).
        overcommit_factor: Volcano overcommit plugin's ``overcommit-factor`` (default 1.2).
        job_controller_batches: Interleave the Job/ReplicaSet controllers' slow-start
            batches across workloads applied together, in lockstep (else one workload's pods
            after another's). The real controllers' order varies between these and others
            from run to run; see the module docstring.
        max_steps: Safety bound on processed events; exceeding it raises LabError.
    """

    horizon: float = 3600.0
    pod_start_seconds: float = 1.0
    apply_interval: float = 1.0
    schedule_period: float = 1.0
    overcommit_factor: float = 1.2
    job_controller_batches: bool = True
    max_steps: int = 5_000_000


class PodState:
    """A pod during the run."""

    __slots__ = ("attempts", "bound_at", "created_at", "failed_once", "finished_at", "job", "name",
                 "node", "phase", "priority", "req", "reserved_on", "running_at", "scheduler", "seq",
                 "slot", "spec", "working_at")

    def __init__(self, spec: PodSpec, job: JobState, req: tuple[int, ...], seq: int, t: float):
        self.spec = spec
        self.name = spec.name
        self.job = job
        self.req = req
        self.seq = seq
        self.priority = spec.priority
        self.scheduler = spec.scheduler_name
        self.created_at = t
        self.node: int | None = None
        self.phase = "Pending"  # Pending -> Bound -> Running -> Succeeded
        self.bound_at: float | None = None
        self.running_at: float | None = None
        self.working_at: float | None = None
        self.finished_at: float | None = None
        self.slot: int | None = None
        self.reserved_on: int | None = None
        self.attempts = 0
        self.failed_once = False


class JobState:
    """A workload: its pods, its rendezvous size and its PodGroup (Volcano)."""

    def __init__(self, spec: JobSpec, seq: int):
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.seq = seq
        self.pods: list[PodState] = []
        self.world_size = max((p.world_size for p in spec.pods), default=1)
        self.finite = all(p.work_seconds is not None for p in spec.pods)
        self.running = 0
        self.done = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.pg: PodGroupState | None = None
        self.vc_phase: str | None = None  # a Volcano Job's own phase

    @property
    def total(self) -> int:
        """Pods the workload will have once every controller has created them."""
        return len(self.spec.pods)


class PodGroupState:
    """A PodGroup's spec, members, phase and phase history."""

    def __init__(self, spec: PodGroupSpec, seq: int, t: float, min_res: tuple[int, ...] | None):
        self.spec = spec
        self.name = spec.name
        self.seq = seq
        self.min_member = spec.min_member
        self.queue = spec.queue
        self.priority = spec.priority
        self.min_res = min_res
        self.phase = "Pending"
        self.history: list[list[Any]] = [[t, "Pending"]]
        self.members: list[PodState] = []
        self.job: JobState | None = None
        self.reported: set[str] = set()
        self.deleted_at: float | None = None


class Cluster:
    """Nodes and their usage, indexed by equivalence class.

    Nodes with the same allocatable, the same requested vector and the same pod count are
    interchangeable for both filters and scores, so the schedulers evaluate each class once
    instead of every node (1,000 identical nodes form a handful of classes).
    """

    def __init__(self, nodes: list[NodeSpec], resources: list[str]):
        self.resources = resources
        self.nodes = nodes
        self.alloc = [tuple(n.allocatable.get(r, 0) for r in resources) for n in nodes]
        self.used = [tuple(0 for _ in resources) for _ in nodes]
        self.npods = [0] * len(nodes)
        self.max_pods = [n.max_pods for n in nodes]
        self.classes: dict[tuple, list[int]] = {}
        gi = resources.index(GPU) if GPU in resources else None
        self.gpu_index = gi
        self.slots: list[list[bool]] = [[False] * (a[gi] if gi is not None else 0) for a in self.alloc]
        for i in range(len(nodes)):
            self.classes.setdefault(self._key(i), []).append(i)
        self.total = tuple(sum(a[k] for a in self.alloc) for k in range(len(resources)))

    def _key(self, i: int) -> tuple:
        return (self.alloc[i], self.used[i], self.npods[i], self.max_pods[i])

    def _move(self, i: int, used: tuple[int, ...], delta_pods: int) -> None:
        old = self._key(i)
        members = self.classes[old]
        members.remove(i)
        if not members:
            del self.classes[old]
        self.used[i] = used
        self.npods[i] += delta_pods
        self.classes.setdefault(self._key(i), []).append(i)

    def add(self, i: int, req: tuple[int, ...]) -> None:
        """Account a pod's requests on node ``i``."""
        self._move(i, tuple(u + r for u, r in zip(self.used[i], req, strict=True)), 1)

    def remove(self, i: int, req: tuple[int, ...]) -> None:
        """Release a pod's requests from node ``i``."""
        self._move(i, tuple(u - r for u, r in zip(self.used[i], req, strict=True)), -1)

    def take_slot(self, i: int, req: tuple[int, ...]) -> int | None:
        """Pick the lowest free GPU lane on node ``i`` (for the timeline picture only)."""
        if self.gpu_index is None or not req[self.gpu_index]:
            return None
        lanes = self.slots[i]
        first = lanes.index(False) if False in lanes else None
        for k in range(first or 0, min(len(lanes), (first or 0) + req[self.gpu_index])):
            lanes[k] = True
        return first

    def free_slot(self, i: int, slot: int | None, req: tuple[int, ...]) -> None:
        """Release the GPU lanes a pod held."""
        if slot is None or self.gpu_index is None:
            return
        for k in range(slot, min(len(self.slots[i]), slot + req[self.gpu_index])):
            self.slots[i][k] = False

    def used_total(self) -> tuple[int, ...]:
        """Sum of requests of every pod on every node."""
        return tuple(sum(u[k] for u in self.used) for k in range(len(self.resources)))


@dataclass(order=True)
class _Event:
    t: float
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Simulation:
    """One run of the model; use :func:`simulate` rather than this class directly."""

    def __init__(self, manifests: Manifests, nodes: list[NodeSpec], scheduler: str,
                 seed: int, config: SimConfig):
        from helpers.scheduling.default_scheduler import KubeScheduler
        from helpers.scheduling.gang_scheduler import GangScheduler
        from helpers.scheduling.volcano import VolcanoScheduler

        if scheduler not in SCHEDULERS:
            raise LabError(f"unknown scheduler {scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if not nodes:
            raise LabError("the cluster needs at least one node")
        self.manifests = manifests
        self.config = config
        self.scheduler_mode = scheduler
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - tie-breaking, not security
        names = {r for n in nodes for r in n.allocatable}
        names |= {r for j in manifests.jobs for p in j.pods for r in p.requests}
        names |= {r for g in manifests.podgroups for r in (g.min_resources or {})}
        names |= {r for q in manifests.queues for r in q.capability}
        extended = sorted(names - {CPU, MEMORY})
        self.resources = [CPU, MEMORY, *extended]
        self.cluster = Cluster(nodes, self.resources)
        self.t = 0.0
        self._events: list[_Event] = []
        self._eseq = 0
        self.events: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.jobs: dict[str, JobState] = {}
        self.pods: list[PodState] = []
        self.podgroups: dict[str, PodGroupState] = {}
        self.queues: dict[str, QueueSpec] = {}
        self.queue_seq: dict[str, int] = {}
        self.free_epoch = 0
        self.steps = 0
        # Metrics: piecewise-constant integrals of allocated and working requests.
        self._alloc = [0] * len(self.resources)
        self._work = [0] * len(self.resources)
        self._waste = [0.0] * len(self.resources)
        self._last_t = 0.0
        self.primary = GPU if GPU in self.resources and self.cluster.total[self.resources.index(GPU)] \
            else CPU
        self._pi = self.resources.index(self.primary)
        self.series_t: list[float] = [0.0]
        self.series_alloc: list[int] = [0]
        self.series_work: list[int] = [0]
        self.kube = GangScheduler(self) if scheduler == "gang" else KubeScheduler(self)
        self.volcano = VolcanoScheduler(self) if scheduler == "volcano" else None
        if self.volcano:
            self._add_queue(QueueSpec(name="default", weight=1, source="(created by vc-scheduler)"))
        self._check_installed()
        for k, step in enumerate(manifests.steps):
            self._push(k * config.apply_interval, "apply", step)

    # ------------------------------------------------------------------ helpers
    def vec(self, mapping: dict[str, int] | None) -> tuple[int, ...]:
        """A resource mapping as the model's vector (cpu, memory, extended...)."""
        mapping = mapping or {}
        return tuple(mapping.get(r, 0) for r in self.resources)

    def log(self, kind: str, obj: str, message: str) -> None:
        """Append to the event log (what ``kubectl get events`` would show)."""
        self.events.append({"t": round(self.t, 3), "type": kind, "object": obj, "message": message})

    def _push(self, t: float, kind: str, payload: Any) -> _Event:
        self._eseq += 1
        event = _Event(t, self._eseq, kind, payload)
        heapq.heappush(self._events, event)
        return event

    def schedule(self, t: float, kind: str, payload: Any) -> _Event:
        """Queue a timed event (e.g. a Permit timeout); returns it for :meth:`cancel`."""
        return self._push(t, kind, payload)

    def cancel(self, event: _Event) -> None:
        """Drop a queued event that no longer applies (a gang bound before its timeout)."""
        event.cancelled = True

    def _check_installed(self) -> None:
        workloads = self.manifests.workloads
        if self.scheduler_mode != "gang":
            if workloads:
                raise ManifestError(
                    f"{workloads[0].source}: field kind: Workload (scheduling.k8s.io/v1alpha1) is served "
                    "only with the GenericWorkload feature gate and the API group switched on, and "
                    "gang-scheduled only with GangScheduling too: run with scheduler='gang'")
            ref_pods = sorted({p.source for j in self.manifests.jobs for p in j.pods if p.workload_ref})
            for src in ref_pods:
                self.warnings.append(f"{src}: spec.workloadRef is dropped by an API server without the "
                                     "GenericWorkload gate; these pods are scheduled one at a time")
        else:
            self._check_workload_refs()
        if self.scheduler_mode == "volcano":
            return
        crds = sorted({g.source for g in self.manifests.podgroups if g.vcjob is None}
                      | {q.source for q in self.manifests.queues}
                      | {j.source for j in self.manifests.jobs if j.kind == "VolcanoJob"})
        if crds:
            raise ManifestError(
                f"{crds[0]}: field kind: Volcano objects (PodGroup, Queue, batch.volcano.sh Job) only "
                "exist once Volcano is installed; run with scheduler='volcano' (or use the "
                "default-scheduler manifests)")
        vc_pods = sorted({p.source for j in self.manifests.jobs for p in j.pods
                          if p.scheduler_name == VOLCANO})
        for src in vc_pods:
            self.warnings.append(f"{src}: pods name schedulerName volcano, which is not running with "
                                 "scheduler='default'; they stay Pending")

    def _check_workload_refs(self) -> None:
        """Warn about gangs that can never be placed (kube-scheduler accepts them silently)."""
        workloads = {w.name: w for w in self.manifests.workloads}
        members: dict[tuple[str, str], list[PodSpec]] = {}
        for job in self.manifests.jobs:
            for p in job.pods:
                if p.workload_ref:
                    members.setdefault(p.workload_ref, []).append(p)
        gi = self.resources.index(GPU) if GPU in self.resources else None
        for (name, group), pods in members.items():
            w = workloads.get(name)
            if w is None:
                self.warnings.append(f"{pods[0].source}: {len(pods)} pod(s) name Workload {name!r}, which "
                                     "no manifest creates: PreEnqueue keeps them Pending until it exists")
            elif group not in w.pod_groups:
                self.warnings.append(f"{pods[0].source}: pods name pod group {group!r}, which Workload "
                                     f"{name!r} does not have: they stay Pending")
            elif w.pod_groups[group] is not None and w.pod_groups[group] > len(pods):
                self.warnings.append(f"{w.source}: Workload {name!r} pod group {group!r} has minCount "
                                     f"{w.pod_groups[group]} but only {len(pods)} pods: PreEnqueue waits "
                                     "for pods that never come, they stay Pending")
            elif gi is not None and w.pod_groups[group] is not None:
                need = sum(sorted((self.vec(p.requests)[gi] for p in pods), reverse=False)
                           [:w.pod_groups[group]])
                have = self.cluster.total[gi]
                if need > have:
                    self.warnings.append(f"{w.source}: Workload {name!r} needs {need} {GPU} for its "
                                         f"minCount {w.pod_groups[group]} pods, the cluster has {have}: "
                                         "its pods wait at Permit, are rejected after 5 minutes, again "
                                         "and again; they stay Pending")

    def _advance(self, t: float) -> None:
        """Integrate waste up to ``t`` before the allocation changes."""
        dt = t - self._last_t
        if dt > 0:
            for k in range(len(self.resources)):
                idle = self._alloc[k] - self._work[k]
                if idle:
                    self._waste[k] += idle * dt
            self._last_t = t

    def _sample(self) -> None:
        a, w = self._alloc[self._pi], self._work[self._pi]
        if self.series_t[-1] == self.t:
            self.series_alloc[-1], self.series_work[-1] = a, w
        else:
            self.series_t.append(self.t)
            self.series_alloc.append(a)
            self.series_work.append(w)

    # ------------------------------------------------------------------ objects
    def _add_queue(self, q: QueueSpec) -> None:
        if q.name in self.queues and q.source != self.queues[q.name].source:
            self.queues[q.name] = q  # an applied Queue named "default" updates it
            return
        self.queue_seq.setdefault(q.name, len(self.queue_seq))
        self.queues[q.name] = q

    def _apply(self, step) -> None:
        self.log("Applied", step.source, f"{len(step.jobs)} workload(s), {len(step.podgroups)} "
                 f"PodGroup(s), {len(step.queues)} Queue(s), {len(step.services)} Service(s)")
        for q in step.queues:
            self._add_queue(q)
            self.log("Created", f"queue/{q.name}", f"weight {q.weight}, capability {q.capability or '-'}")
        for g in step.podgroups:
            pg = PodGroupState(g, len(self.podgroups), self.t, None if g.min_resources is None
                               else self.vec(g.min_resources))
            self.podgroups[g.name] = pg
            self.log("Created", f"podgroup/{g.name}", f"minMember {g.min_member}, queue {g.queue}, "
                     f"phase Pending")
            if self.volcano:
                self.volcano.dirty = True
        for w in step.workloads:
            if self.scheduler_mode == "gang":
                self.kube.workload_added(w)
        batched: list[JobState] = []
        for spec in step.jobs:
            job = self.jobs.get(spec.name)
            if job is None:
                job = JobState(spec, len(self.jobs))
                self.jobs[spec.name] = job
            pg_name = spec.pods[0].group if spec.pods else None
            if pg_name:
                job.pg = self.podgroups[pg_name]
                job.pg.job = job
            if spec.kind == "VolcanoJob":
                self._vcjob_phase(job, "Pending")
                continue  # pods come when the PodGroup leaves Pending
            if spec.kind in ("Job", "Deployment"):
                batched.append(job)
        for p in step.bare_pods:  # bare pods: created one by one in document order
            self._create_pod(self.jobs[p.job], p)
            if self.scheduler_mode == "gang":
                # kube-scheduler's cycles (about a millisecond) outpace the API calls that create
                # the pods, so a gang whose last pod arrives is placed before the next pod exists.
                self.kube.drain()
        self._controller_create(batched)

    def _controller_create(self, jobs: list[JobState]) -> None:
        if not jobs:
            return
        if not self.config.job_controller_batches:
            for job in jobs:
                for p in job.spec.pods:
                    self._create_pod(job, p)
            return
        # slowStartBatch: 1, 2, 4, ... creations per round; concurrent syncs interleave.
        cursor = {job.name: 0 for job in jobs}
        batch = 1
        while any(cursor[j.name] < j.total for j in jobs):
            for job in jobs:
                start = cursor[job.name]
                for p in job.spec.pods[start:start + batch]:
                    self._create_pod(job, p)
                cursor[job.name] = min(job.total, start + batch)
            batch *= 2

    def _create_pod(self, job: JobState, spec: PodSpec) -> PodState:
        pod = PodState(spec, job, self.vec(spec.requests), len(self.pods), self.t)
        self.pods.append(pod)
        job.pods.append(pod)
        if spec.scheduler_name == VOLCANO and spec.group is None and self.volcano:
            # vc-controller-manager's pg controller gives a lone pod its own PodGroup.
            g = PodGroupSpec(name=f"podgroup-{spec.name}", min_member=1, source=spec.source)
            pg = PodGroupState(g, len(self.podgroups), self.t, None)
            self.podgroups[g.name] = pg
            pg.job = job
            job.pg = pg
        if job.pg is not None and spec.scheduler_name == VOLCANO:
            job.pg.members.append(pod)
        self.log("Created", f"pod/{pod.name}", f"job {job.name}, scheduler {pod.scheduler}")
        if pod.scheduler == DEFAULT_SCHEDULER:
            self.kube.add(pod)
        elif self.volcano:
            self.volcano.dirty = True
        return pod

    def create_vcjob_pods(self, pg: PodGroupState) -> None:
        """vc-controller-manager: create a Volcano Job's pods once its PodGroup left Pending."""
        job = pg.job
        if job is None or job.pods or job.kind != "VolcanoJob":
            return
        self.log("Created", f"vcjob/{job.name}", f"PodGroup {pg.name} is {pg.phase}: creating "
                 f"{job.total} pods and Service {job.name}")
        for p in job.spec.pods:
            self._create_pod(job, p)

    # ------------------------------------------------------------------ lifecycle
    def bind(self, pod: PodState, node: int, by: str, *, reserved: bool = False) -> None:
        """Bind ``pod`` to ``node`` (every scheduler ends here); ``reserved``: already held."""
        if not reserved:
            self.reserve(pod, node)
        pod.node = node
        pod.phase = "Bound"
        pod.bound_at = self.t
        self.log("Scheduled", f"pod/{pod.name}", f"{by}: bound to {self.cluster.nodes[node].name}")
        self._push(self.t + self.config.pod_start_seconds, "running", pod)

    def reserve(self, pod: PodState, node: int) -> None:
        """Account ``pod``'s requests on ``node`` (bound, or reserved at Permit and unbound)."""
        self._advance(self.t)
        self.cluster.add(node, pod.req)
        pod.slot = self.cluster.take_slot(node, pod.req)
        pod.reserved_on = node
        for k, r in enumerate(pod.req):
            self._alloc[k] += r
        self._sample()

    def unreserve(self, pod: PodState) -> None:
        """Release a reservation that never became a binding (a rejected gang pod)."""
        self._advance(self.t)
        node = pod.reserved_on
        self.cluster.remove(node, pod.req)
        self.cluster.free_slot(node, pod.slot, pod.req)
        pod.slot = pod.reserved_on = None
        for k, r in enumerate(pod.req):
            self._alloc[k] -= r
        self._sample()
        self.free_epoch += 1

    def _vcjob_phase(self, job: JobState, phase: str) -> None:
        job.vc_phase = phase
        self.log("vcjob", f"vcjob/{job.name}", f"phase {phase}")

    def _running(self, pod: PodState) -> None:
        pod.phase = "Running"
        pod.running_at = self.t
        job = pod.job
        job.running += 1
        if job.vc_phase == "Pending" and job.running >= (job.spec.min_available or 1):
            self._vcjob_phase(job, "Running")
        if job.world_size <= 1:
            self._start_work([pod])
        elif job.started_at is not None:
            self._start_work([pod])
        elif job.running >= job.world_size:
            waiting = [p for p in job.pods if p.phase == "Running" and p.working_at is None]
            self.log("Started", f"job/{job.name}", f"all {job.world_size} peers resolve: "
                     "rendezvous complete, training starts")
            self._start_work(waiting)

    def _start_work(self, pods: list[PodState]) -> None:
        self._advance(self.t)
        job = pods[0].job
        if job.started_at is None:
            job.started_at = self.t
        for p in pods:
            p.working_at = self.t
            for k, r in enumerate(p.req):
                self._work[k] += r
            if p.spec.work_seconds is not None:
                self._push(self.t + p.spec.work_seconds, "finish", p)
        self._sample()

    def _finish(self, pod: PodState) -> None:
        self._advance(self.t)
        pod.phase = "Succeeded"
        pod.finished_at = self.t
        self.cluster.remove(pod.node, pod.req)
        self.cluster.free_slot(pod.node, pod.slot, pod.req)
        for k, r in enumerate(pod.req):
            self._alloc[k] -= r
            self._work[k] -= r
        self._sample()
        job = pod.job
        job.running -= 1
        job.done += 1
        if job.done == job.total:
            job.finished_at = self.t
            self.log("Completed", f"job/{job.name}", f"all {job.total} pods succeeded")
            if job.kind == "VolcanoJob":
                self._complete_vcjob(job)
        self.free_epoch += 1
        self.kube.resources_freed()
        if self.volcano:
            self.volcano.dirty = True

    def _complete_vcjob(self, job: JobState) -> None:
        """vc-controller-manager: a finished Volcano Job completes and loses its PodGroup."""
        self._vcjob_phase(job, "Completing")
        self._vcjob_phase(job, "Completed")
        pg = job.pg
        if pg is not None and pg.deleted_at is None:
            # killJob deletes the PodGroup before Volcano's next session could mark it Completed.
            pg.deleted_at = self.t
            self.log("podgroup", f"podgroup/{pg.name}", "deleted")

    # ------------------------------------------------------------------ loop
    def run(self) -> SchedulingResult:
        """Run to quiescence (or the horizon) and build the result."""
        cfg = self.config
        while True:
            while self._events and self._events[0].cancelled:
                heapq.heappop(self._events)
            next_t = self._events[0].t if self._events else None
            session_t = self.volcano.next_session(self.t) if self.volcano else None
            candidates = [x for x in (next_t, session_t) if x is not None]
            if not candidates:
                break
            t = min(candidates)
            if t > cfg.horizon:
                break
            self.t = t
            while self._events and self._events[0].t <= t:
                ev = heapq.heappop(self._events)
                if ev.cancelled:
                    continue
                self.steps += 1
                if self.steps > cfg.max_steps:
                    raise LabError(f"simulation exceeded {cfg.max_steps} events; shrink the scenario "
                                   "or raise SimConfig.max_steps")
                if ev.kind == "apply":
                    self._apply(ev.payload)
                elif ev.kind == "running":
                    self._running(ev.payload)
                elif ev.kind == "finish":
                    self._finish(ev.payload)
                elif ev.kind == "gang-timeout":
                    self.kube.permit_timeout(ev.payload)
            self.kube.drain()
            if self.volcano and self.volcano.next_session(t) == t:
                self.volcano.session()
                self.kube.drain()
        quiet = not self._events and not (self.volcano and self.volcano.dirty)
        unfinished = any(j.finished_at is None for j in self.jobs.values())
        end = cfg.horizon if unfinished else self.t
        self.t = max(self.t, end)
        self._advance(end)
        self._sample()
        return self._result(quiet, end)

    # ------------------------------------------------------------------ result
    def _result(self, quiet: bool, end: float) -> SchedulingResult:
        jobs: dict[str, JobResult] = {}
        gridlocked = False
        for job in self.jobs.values():
            bound = sum(1 for p in job.pods if p.phase in ("Bound", "Running"))
            done = job.done
            pending = job.total - bound - done
            working = any(p.working_at is not None and p.phase != "Succeeded" for p in job.pods)
            if done == job.total:
                state = "completed"
            elif working:
                state = "running"
            elif bound:
                state = "gridlocked" if quiet else "waiting"
                gridlocked = gridlocked or quiet
            else:
                state = "pending"
            sched = job.spec.pods[0].scheduler_name if job.spec.pods else DEFAULT_SCHEDULER
            jobs[job.name] = JobResult(
                name=job.name, kind=job.kind, pods=job.total,
                min_member=job.pg.min_member if job.pg else job.world_size, bound=bound,
                pending=pending, completed=done, state=state, scheduler=sched,
                queue=job.pg.queue if job.pg else None, started_at=job.started_at,
                finished_at=job.finished_at)
        podgroups = {g.name: PodGroupResult(name=g.name, phase=g.phase, min_member=g.min_member,
                                            queue=g.queue, history=g.history,
                                            deleted_at=g.deleted_at)
                     for g in self.podgroups.values()}
        finite = [j for j in self.jobs.values() if j.finite]
        makespan = None
        if finite and all(j.finished_at is not None for j in finite):
            makespan = max(j.finished_at for j in finite)
        waste = {r: round(self._waste[k], 3) for k, r in enumerate(self.resources)}
        metrics = {
            "jobs_completed": sum(1 for j in jobs.values() if j.state == "completed"),
            "jobs_total": len(jobs),
            "makespan": makespan,
            "waste": waste,
            "waste_gpu_seconds": waste.get(GPU, 0.0),
            "end_time": end,
            "utilisation": {"resource": self.primary, "capacity": self.cluster.total[self._pi],
                            "t": self.series_t, "allocated": self.series_alloc,
                            "working": self.series_work},
        }
        names = [n.name for n in self.cluster.nodes]
        pods = {p.name: {"job": p.job.name, "node": None if p.node is None else names[p.node],
                         "phase": p.phase, "created_at": p.created_at, "bound_at": p.bound_at,
                         "working_at": p.working_at, "finished_at": p.finished_at, "slot": p.slot}
                for p in self.pods}
        for job in self.jobs.values():  # pods a controller never created (vcjob still Pending)
            for spec in job.spec.pods[len(job.pods):]:
                pods[spec.name] = {"job": job.name, "node": None, "phase": "NotCreated",
                                   "created_at": None, "bound_at": None, "working_at": None,
                                   "finished_at": None, "slot": None}
        nodes = {n.name: {"allocatable": dict(n.allocatable), "max_pods": n.max_pods}
                 for n in self.cluster.nodes}
        return SchedulingResult(backend="sim", scheduler=self.scheduler_mode, gridlocked=gridlocked,
                                jobs=jobs, podgroups=podgroups, metrics=metrics, pods=pods,
                                nodes=nodes, events=self.events, warnings=self.warnings,
                                seed=self.seed)


def simulate(manifests: Manifests, nodes: list[NodeSpec], scheduler: str = "default", *,
             seed: int = 0, config: SimConfig | None = None) -> SchedulingResult:
    """Run the model on parsed manifests and a node list.

    Args:
        manifests: From :func:`helpers.scheduling.load_manifests`.
        nodes: From :func:`helpers.scheduling.make_nodes` (or hand-built NodeSpecs).
        scheduler: ``default`` (kube-scheduler only) or ``volcano`` (Volcano installed next
            to kube-scheduler; pods go to the scheduler they name).
        seed: Breaks ties between equally scored nodes; same seed, same run.
        config: Timing and policy knobs (:class:`SimConfig`).

    Returns:
        The :class:`~helpers.scheduling.model.SchedulingResult` of the run.

    Raises:
        ManifestError: Volcano objects with ``scheduler="default"``.
        LabError: Unknown scheduler, no nodes, or a run beyond ``max_steps``.
    """
    return Simulation(manifests, nodes, scheduler, seed, config or SimConfig()).run()
