"""The cluster branch of the scheduling labs: the same manifests, a real API server.

:func:`run` takes the manifest files a scenario uses and a node list, exactly as the
embedded model does, applies them to a cluster (``kwok``: the local control plane, or a
kind cluster), watches the real pods and PodGroups, and returns the model's result shape
(:class:`helpers.scheduling.model.SchedulingResult`), so a lab cell never branches on the
backend beyond the call that produces the result.

How the run maps the lesson onto a real cluster:

* Each manifest file is one apply step, applied in file order; the run waits until the
  cluster settles before the next step, as the model applies steps one after another.
* Bare pods meant for the default scheduler are created one after another, each only once
  the scheduler has placed it or declared it unschedulable, so the order the lesson needs
  (A0, B0, A1, B1, ...) is the order kube-scheduler sees. (Controllers such as the Job
  controller create pods in their own order, which varies from run to run for Jobs applied
  together; lab 01 shows it with ``two-jobs``/``default``.)
* The result uses the model's vocabulary: pods and PodGroups by their model names; the
  schedulers' Kubernetes Events as events typed by their reason (``Scheduled`` written as
  ``<scheduler>: bound to <node>``); a Volcano Job's phases as ``vcjob`` events; a PodGroup
  that disappears (vc-controller-manager deletes a Volcano Job's PodGroup when the job
  completes) as a ``podgroup`` event ``deleted`` and its ``deleted_at``.
* Pods, PodGroups and Volcano Jobs are polled a few times a second, and every time is the
  poll's clock, so what is seen in one poll is causally ordered. A PodGroup can be
  ``Pending`` for less than a poll, so two watches (:mod:`helpers.kube.phase_watch`)
  record every PodGroup and Volcano Job phase too; a phase the poll missed is recorded
  when the poll sees the next one.
* Nothing runs inside the pods on fake nodes, so the run plays the workers' part: once
  every peer of a job runs (the rendezvous), it annotates those pods with
  ``kflabs.example.com/run-until`` = now + ``WORK_SECONDS`` x ``time_scale`` (0.02 by default),
  one time for the whole gang, and kwok completes them then. ``work=False`` leaves pods
  running forever (a snapshot).
* On kind the containers really run: each worker waits for its peers' DNS names, sleeps
  ``WORK_SECONDS`` and exits; the backend's ``adapt_manifests`` scales that by ``time_scale``.
* The run ends when the cluster has been quiet for ``settle`` seconds with no completion
  still due, or after ``timeout`` (then a warning says so). Times in the result are in the
  lesson's seconds (real seconds / ``time_scale``): approximate, unlike the model's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from helpers.backend.kwok.layout import RUN_UNTIL_ANNOTATION
from helpers.errors import BackendUnavailable, ManifestError
from helpers.kube import client as k8s
from helpers.kube.names import kwok_kubeconfig
from helpers.kube.phase_watch import PhaseTrail, PhaseWatch, podgroup_phase, vcjob_phase
from helpers.scheduling.model import (
    CPU,
    DEFAULT_SCHEDULER,
    GPU,
    MEMORY,
    JobResult,
    JobSpec,
    Manifests,
    NodeSpec,
    PodGroupResult,
    SchedulingResult,
    load_manifests,
    manifest_files,
)

#: Labels the controllers put on the pods they create.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
VCJOB_NAME_LABEL = "volcano.sh/job-name"


@dataclass
class _PodTrack:
    """What the run saw happen to one pod (real seconds since the first apply)."""

    model_name: str
    job: str
    real_name: str
    created_at: float
    node: str | None = None
    phase: str = "Pending"
    bound_at: float | None = None
    working_at: float | None = None
    finished_at: float | None = None
    annotated: bool = False


@dataclass
class _Run:
    """Mutable state of one observation."""

    manifests: Manifests
    t0: float
    time_scale: float
    pods: dict[str, _PodTrack] = field(default_factory=dict)  # real pod name -> track
    pg_history: dict[str, list[list[Any]]] = field(default_factory=dict)
    pg_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    vcjob_phase: dict[str, str] = field(default_factory=dict)
    pg_real_names: dict[str, str] = field(default_factory=dict)  # real PodGroup name -> key
    pg_deleted: dict[str, float] = field(default_factory=dict)  # key -> real seconds
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last_change: float = 0.0
    #: Watches that see every PodGroup / Volcano Job phase (a poll misses short ones).
    watches: dict[str, PhaseWatch] = field(default_factory=dict)
    trails: dict[tuple[str, str], PhaseTrail] = field(default_factory=dict)
    #: UIDs of the pods and PodGroups this run saw: a namespace re-made under the same name
    #: can still receive a late Event about the previous run's objects (kube-scheduler posts
    #: its events asynchronously), and those must not count as this run's.
    uids: set[str] = field(default_factory=set)

    def phases_to_record(self, kind: str, obj: dict, current: str) -> list[str]:
        """What to record now for ``obj`` seen by the poll in phase ``current`` (see
        :class:`helpers.kube.phase_watch.PhaseTrail`)."""
        uid = obj["metadata"]["uid"]
        trail = self.trails.setdefault((kind, uid), PhaseTrail())
        watch = self.watches.get(kind)
        return trail.see(current, watch.phases(uid) if watch else [])

    def now(self) -> float:
        return time.monotonic() - self.t0

    def lesson(self, real: float | None) -> float | None:
        return None if real is None else round(real / self.time_scale, 2)

    def event(self, kind: str, obj: str, message: str) -> None:
        self.events.append({"t": self.lesson(self.now()), "type": kind, "object": obj,
                            "message": message})
        self.last_change = time.monotonic()


def _quantity(resource: str, value: int) -> str:
    if resource == CPU:
        return f"{value}m"
    return str(value)


def node_objects(nodes: Sequence[NodeSpec]) -> list[dict]:
    """Fake Node objects (managed by kwok) with the model nodes' allocatable resources."""
    from helpers.backend.kwok import nodes as kwok_nodes

    out = []
    for n in nodes:
        obj = kwok_nodes.fake_node(n.name, gpus=n.allocatable.get(GPU, 0),
                                     cpu=_quantity(CPU, n.allocatable.get(CPU, 32000)),
                                     memory=_quantity(MEMORY, n.allocatable.get(MEMORY, 2**38)),
                                     pods=n.max_pods)
        out.append(obj)
    return out


def _connect(backend: Any, kubeconfig: str | None):
    cfg = kubeconfig or getattr(backend, "kubeconfig", None)
    context = getattr(backend, "context", None)
    if cfg is None:
        cfg = str(kwok_kubeconfig())
    problem = _probe(cfg, context)
    if problem:
        raise BackendUnavailable(f"cannot run the scheduling scenario on a cluster: {problem}. "
                                 "Fix: `make controlplane-up` (kwok) or `make cluster-up` (kind).")
    return k8s.connect(cfg, context)


def _probe(cfg: str, context: str | None) -> str | None:
    return k8s.probe(Path(cfg), context)


def _model_pod_name(pod, manifests: Manifests, vcjobs: set[str],
                    deployments: dict[str, list]) -> tuple[str, str] | None:
    """(model pod name, job) for a real pod, or None when the scenario does not own it."""
    labels = pod.metadata.labels or {}
    name = pod.metadata.name
    jobs = {j.name: j for j in manifests.jobs}
    if labels.get(VCJOB_NAME_LABEL) in vcjobs:
        return name, labels[VCJOB_NAME_LABEL]  # vc-controller names them <job>-<task>-<i>
    job = labels.get(JOB_NAME_LABEL)
    if job in jobs and jobs[job].kind == "Job":
        return f"{job}-{labels.get(JOB_INDEX_LABEL, '?')}", job
    for owner in pod.metadata.owner_references or []:
        if owner.kind == "ReplicaSet":
            for dep, slot in deployments.items():
                if owner.name.rsplit("-", 1)[0] == dep:
                    if name not in slot:
                        slot.append(name)
                    return f"{dep}-{slot.index(name)}", dep
    for j in manifests.jobs:
        if j.kind == "Pods":
            for p in j.pods:
                if p.name == name:
                    return name, j.name
    return None


def _observe(api, run: _Run, namespaces: list[str], work: bool) -> None:  # noqa: PLR0912, PLR0915 - one pass over every pod's phase, kept together so the order of the checks reads as the lifecycle
    """Poll pods and PodGroups once; record transitions; start work where gangs are whole."""

    core = k8s.core(api)
    vcjobs = {j.name for j in run.manifests.jobs if j.kind == "VolcanoJob"}
    deployments = getattr(run, "_deploy_slots", None)
    if deployments is None:
        deployments = {j.name: [] for j in run.manifests.jobs if j.kind == "Deployment"}
        run._deploy_slots = deployments  # type: ignore[attr-defined]
    now = run.now()
    live: dict[str, Any] = {}
    for ns in namespaces:
        for pod in k8s.pods(api, ns):
            mapped = _model_pod_name(pod, run.manifests, vcjobs, deployments)
            if mapped is None:
                continue
            live[pod.metadata.name] = pod
            track = run.pods.get(pod.metadata.name)
            if track is None:
                track = _PodTrack(mapped[0], mapped[1], pod.metadata.name, created_at=now)
                run.pods[pod.metadata.name] = track
                run.uids.add(pod.metadata.uid or "")
                run.event("created", f"pod/{mapped[0]}", f"pod of {mapped[1]} created")
            if pod.spec.node_name and track.node is None:
                track.node, track.bound_at = pod.spec.node_name, now
                run.event("bound", f"pod/{track.model_name}", f"bound to {track.node}")
            phase = pod.status.phase or "Pending"
            if phase != track.phase:
                track.phase = phase
                if phase in ("Succeeded", "Failed") and track.finished_at is None:
                    track.finished_at = now
                    run.event("finished", f"pod/{track.model_name}", phase.lower())
                elif phase == "Running":
                    run.event("running", f"pod/{track.model_name}", f"running on {track.node}")
    # The rendezvous: a job's workers start working when all its peers run.
    specs = {j.name: j for j in run.manifests.jobs}
    by_job: dict[str, list[_PodTrack]] = {}
    for track in run.pods.values():
        by_job.setdefault(track.job, []).append(track)
    for job, tracks in by_job.items():
        spec = specs.get(job)
        if spec is None:
            continue
        world = max(p.world_size for p in spec.pods)
        running = [t for t in tracks if t.phase == "Running"]
        if len(running) < world:
            continue
        for t in running:
            if t.working_at is None:
                t.working_at = now
        work_seconds = spec.pods[0].work_seconds
        if work and work_seconds is not None:
            # One end time for the whole gang, so its pods finish together however long the
            # patches below take (they are sent one after the other).
            until = run_until(max(work_seconds * run.time_scale, 0.05))
            for t in running:
                if not t.annotated:
                    _annotate(core, live[t.real_name], until)
                    t.annotated = True
                    run.event("working", f"pod/{t.model_name}",
                              f"rendezvous complete; completes after {work_seconds:g} s")
    for ns in namespaces:
        for vcjob in _vcjobs(api, ns) if vcjobs else []:
            key = f"vcjob/{vcjob['metadata']['name']}"
            phase = vcjob_phase(vcjob)
            for new_phase in run.phases_to_record("vcjob", vcjob, phase) if phase else ():
                run.vcjob_phase[key] = new_phase
                run.event("vcjob", key, f"phase {new_phase}")
        seen = set()
        for pg in k8s.podgroups(api, ns):
            key = _podgroup_key(pg, vcjobs)
            seen.add(key)
            run.uids.add(pg["metadata"].get("uid", ""))
            run.pg_real_names[pg["metadata"]["name"]] = key
            phase = podgroup_phase(pg)
            hist = run.pg_history.setdefault(key, [])
            for new_phase in run.phases_to_record("podgroup", pg, phase):
                if not hist or hist[-1][1] != new_phase:
                    hist.append([run.lesson(now), new_phase])
                    run.event("podgroup", f"podgroup/{key}", f"phase {new_phase}")
            run.pg_info[key] = {"min_member": pg["spec"].get("minMember", 1),
                                "queue": pg["spec"].get("queue", "default"), "phase": phase}
        for key in sorted(set(run.pg_info) - seen - set(run.pg_deleted)):
            # vc-controller-manager deletes a Volcano Job's PodGroup when the job completes.
            run.pg_deleted[key] = now
            run.event("podgroup", f"podgroup/{key}", "deleted")


def _vcjobs(api, namespace: str) -> list[dict]:

    out = k8s.custom(api).list_namespaced_custom_object(
        "batch.volcano.sh", "v1alpha1", namespace, "jobs")
    return out.get("items", [])


def vcjob_phases(result: SchedulingResult, job: str) -> list[str]:
    """The phases a Volcano Job went through during a run, in order (from the event log).

    Same as :meth:`SchedulingResult.vcjob_phases`, which works on every backend's result.
    """
    return result.vcjob_phases(job)


def _podgroup_key(pg: dict, vcjobs: set[str]) -> str:
    # Volcano names a Volcano Job's PodGroup <job>-<uid>; the model names it after the job.
    for owner in pg["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("name") in vcjobs:
            return owner["name"]
    return pg["metadata"]["name"]


def run_until(seconds: float, now: datetime | None = None) -> str:
    """The RFC 3339 time ``seconds`` from ``now``: the value of :data:`RUN_UNTIL_ANNOTATION`.

    kwok's ``durationFrom`` reads an RFC 3339 time as "wait until then" (and a Go duration as
    "wait this long after the pod is seen"), so pods given the same time finish together.
    """
    at = (now or datetime.now(timezone.utc)) + timedelta(seconds=seconds)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _annotate(core, pod, until: str) -> None:

    body = {"metadata": {"annotations": {RUN_UNTIL_ANNOTATION: until}}}
    try:
        core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body)
    except k8s.ApiException as exc:
        if exc.status != 404:  # a pod deleted meanwhile needs no work
            raise


#: Phases after which vc-controller-manager changes a Volcano Job no more.
VCJOB_TERMINAL = ("Completed", "Failed", "Aborted", "Terminated")


def _quiet(run: _Run, settle: float) -> bool:
    pending_work = any(t.annotated and t.finished_at is None for t in run.pods.values())
    # A Volcano Job whose pods have all finished is still due its final phase.
    finishing = False
    for key, phase in run.vcjob_phase.items():
        tracks = [t for t in run.pods.values() if t.job == key.removeprefix("vcjob/")]
        if tracks and all(t.finished_at is not None for t in tracks) and phase not in VCJOB_TERMINAL:
            finishing = True
    return not pending_work and not finishing and time.monotonic() - run.last_change >= settle


def _wait_placed(api, namespace: str, name: str, backend: Any, timeout: float = 30) -> None:
    """Wait until the scheduler has bound pod ``name`` or marked it unschedulable.

    On timeout the error carries the namespace's state and ``backend.health()`` (on kwok: a
    component that is no longer running, with its log tail).
    """

    core = k8s.core(api)

    def decided() -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.spec.node_name:
            return True
        return any(c.type == "PodScheduled" and c.status == "False"
                   for c in pod.status.conditions or [])

    k8s.wait_for(decided, timeout, f"kube-scheduler to place or reject pod {namespace}/{name}",
                 diagnostics=lambda: k8s.diagnose(api, namespace) + backend.health())


def _cleanup(api, docs: list[dict], namespaces: list[str]) -> None:
    # The lab's pods only wait or sleep: nothing is lost by skipping their 30 s grace period.
    k8s.delete_namespaces(api, namespaces, timeout=90, force_pods=True)
    for doc in docs:  # cluster-scoped objects outlive the namespace
        if doc.get("kind") in ("Queue", "PriorityClass"):
            k8s.delete(api, doc)


def run(manifest_paths: Sequence[str | Path] | str | Path, nodes: Sequence[NodeSpec], *,  # noqa: PLR0913 - keyword-only knobs with defaults
        scheduler: str, backend: Any = None, kubeconfig: str | None = None, seed: int = 0,
        work: bool = True, time_scale: float = 0.02, settle: float = 3.0,
        timeout: float = 120.0, cleanup: bool = True) -> SchedulingResult:
    """Apply a scenario's manifests to a cluster, watch it, and return the model's result shape.

    Args:
        manifest_paths: Files or folders, in apply order (as given to the model).
        nodes: The cluster's nodes; on ``kwok`` these become fake nodes (existing fake nodes
            are replaced). On kind the real nodes are used and this only fills ``nodes``.
        scheduler: ``default``, ``volcano`` or ``gang``; recorded in the result (the
            manifests already name their scheduler; ``gang`` needs the Workload API on).
        backend: The cluster backend (``kwok`` or ``kind``) from
            :func:`helpers.backend.resolve`; its ``prepare_nodes`` makes ``nodes`` real.
        kubeconfig: Overrides the backend's kubeconfig.
        seed: Recorded in the result (the real schedulers take no seed).
        work: Complete each job ``WORK_SECONDS`` x ``time_scale`` after its rendezvous;
            False leaves everything running (a snapshot of the placement).
        time_scale: Real seconds per lesson second.
        settle: Seconds without any change that end the run (and separate apply steps).
        timeout: Upper bound on the observation, in real seconds.
        cleanup: Delete the scenario's namespaces, Queues and PriorityClasses afterwards,
            and give a shared cluster its nodes back (``backend.release_nodes``).

    Returns:
        A :class:`SchedulingResult` with ``backend`` set to the cluster's kind.

    Raises:
        BackendUnavailable: The cluster is not reachable.
        ManifestError: A manifest the model cannot read (the cluster gets only what the
            model understands, so the two always run the same scenario).
        helpers.kube.client.ApplyError: The API server refused a manifest.
    """
    if scheduler not in ("default", "volcano", "gang"):
        raise ManifestError(f"scheduler={scheduler!r}: choose default, volcano or gang")
    if time_scale <= 0:
        raise ManifestError(f"time_scale={time_scale!r} must be > 0")
    files = manifest_files(manifest_paths)
    manifests = load_manifests(files)
    if not getattr(backend, "is_cluster", False):
        raise BackendUnavailable(f"scheduling_run needs a cluster backend object (kwok or kind: "
                                 f"helpers.backend.resolve('kwok')), got {backend!r}")
    api = _connect(backend, kubeconfig)
    per_file = [backend.adapt_manifests(k8s.load_manifests(f), time_scale) for f in files]
    docs = [d for file_docs in per_file for d in file_docs]
    namespaces = sorted({d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"}
                        | {d["metadata"].get("namespace") for d in docs
                           if d.get("metadata", {}).get("namespace")})
    _cleanup(api, docs, namespaces)  # a previous, interrupted run must not leak into this one
    backend.prepare_nodes(api, nodes)  # kwok: these nodes become fake nodes; kind: as they are
    for ns in namespaces:
        k8s.ensure_namespace(api, ns)
    state = _Run(manifests, time.monotonic(), time_scale)
    state.watches = {
        "podgroup": PhaseWatch(api, "scheduling.volcano.sh", "v1beta1", "podgroups",
                               podgroup_phase).start(),
        "vcjob": PhaseWatch(api, "batch.volcano.sh", "v1alpha1", "jobs", vcjob_phase).start()}
    state.last_change = time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        for file_docs in per_file:
            for doc in file_docs:
                k8s.apply(api, doc)
                spec = doc.get("spec") or {}
                # A gang pod (spec.workloadRef) may sit in PreEnqueue with no decision to wait for.
                if doc.get("kind") == "Pod" and not spec.get("workloadRef") and \
                        spec.get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER:
                    _wait_placed(api, doc["metadata"].get("namespace", "default"),
                                 doc["metadata"]["name"], backend)
                    _observe(api, state, namespaces, work)
            state.last_change = time.monotonic()
            while not _quiet(state, settle) and time.monotonic() < deadline:
                _observe(api, state, namespaces, work)
                time.sleep(0.2)
        if time.monotonic() >= deadline:
            state.warnings.append(f"the cluster had not settled after {timeout:g} s; the "
                                  "result is a snapshot" + backend.health())
        result = _result(api, state, nodes, backend=backend.name, scheduler=scheduler, seed=seed,
                         namespaces=namespaces)
    finally:
        for watch in state.watches.values():
            watch.request_stop()  # both threads wind down together, not one after the other
        for watch in state.watches.values():
            watch.stop()
        if cleanup:
            _cleanup(api, docs, namespaces)
            backend.release_nodes(api)  # kind: the cluster's own fake GPUs again
    return result


def _result(api, run: _Run, nodes: Sequence[NodeSpec], *, backend: str, scheduler: str,
            seed: int, namespaces: list[str]) -> SchedulingResult:
    end = run.now()
    by_job: dict[str, list[_PodTrack]] = {}
    for t in run.pods.values():
        by_job.setdefault(t.job, []).append(t)
    jobs: dict[str, JobResult] = {}
    stuck: list[str] = []
    for spec in run.manifests.jobs:
        tracks = by_job.get(spec.name, [])
        jobs[spec.name] = _job_result(spec, tracks, run)
        if jobs[spec.name].state == "waiting":
            stuck.append(spec.name)
    # The run only ends when nothing changes and no completion is due: a job still waiting
    # for peers then waits forever.
    gridlocked = bool(stuck) and not any(
        t.annotated and t.finished_at is None for t in run.pods.values())
    if gridlocked:
        for name in stuck:
            jobs[name].state = "gridlocked"
    podgroups = {
        key: PodGroupResult(name=key, phase=info["phase"], min_member=info["min_member"],
                            queue=info["queue"], history=run.pg_history.get(key, []),
                            deleted_at=run.lesson(run.pg_deleted.get(key)))
        for key, info in sorted(run.pg_info.items())}
    finite = [j for j in jobs.values()
              if any(p.work_seconds is not None for p in _spec(run, j.name).pods)]
    makespan = None
    if finite and all(j.state == "completed" for j in finite):
        makespan = max(j.finished_at or 0.0 for j in finite)
    waste_gpu, util = _waste_and_utilisation(run, nodes, end)
    pods = {t.model_name: {"job": t.job, "node": t.node, "phase": t.phase,
                           "created_at": run.lesson(t.created_at),
                           "bound_at": run.lesson(t.bound_at),
                           "working_at": run.lesson(t.working_at),
                           "finished_at": run.lesson(t.finished_at), "slot": None}
            for t in sorted(run.pods.values(), key=lambda t: t.model_name)}
    node_table = {n.name: {"allocatable": dict(n.allocatable), "max_pods": n.max_pods}
                  for n in nodes}
    events = list(run.events)
    model_pod = {t.real_name: t.model_name for t in run.pods.values()}
    for ns in namespaces:
        for reason, involved, message in _scheduler_events(api, ns, run.uids):
            kind, _, name = involved.partition("/")
            if kind == "podgroup":
                obj = f"podgroup/{run.pg_real_names.get(name, name)}"
            else:
                obj = f"pod/{model_pod.get(name, name)}" if kind == "pod" else involved
            events.append({"t": run.lesson(end), "type": reason, "object": obj,
                           "message": message})
    return SchedulingResult(
        backend=backend, scheduler=scheduler, gridlocked=gridlocked, jobs=jobs,
        podgroups=podgroups,
        metrics={"jobs_completed": sum(j.state == "completed" for j in jobs.values()),
                 "jobs_total": len(jobs), "makespan": makespan,
                 "waste": {GPU: waste_gpu}, "waste_gpu_seconds": waste_gpu,
                 "end_time": run.lesson(end), "utilisation": util},
        pods=pods, nodes=node_table, events=events, warnings=run.warnings, seed=seed)


def _spec(run: _Run, job: str) -> JobSpec:
    return next(j for j in run.manifests.jobs if j.name == job)


def _job_result(spec: JobSpec, tracks: list[_PodTrack], run: _Run) -> JobResult:
    completed = sum(t.phase == "Succeeded" for t in tracks)
    bound = sum(t.node is not None and t.finished_at is None for t in tracks)
    total = len(spec.pods)
    pending = total - completed - bound
    world = max(p.world_size for p in spec.pods)
    working = sum(t.working_at is not None and t.finished_at is None for t in tracks)
    if completed == total:
        state = "completed"
    elif working and working >= min(world, bound):
        state = "running"
    elif bound:
        state = "waiting"
    else:
        state = "pending"
    pg = run.pg_info.get(spec.name)
    min_member = spec.min_available or (pg["min_member"] if pg else world)
    started = [t.working_at for t in tracks if t.working_at is not None]
    finished = [t.finished_at for t in tracks if t.finished_at is not None]
    return JobResult(
        name=spec.name, kind=spec.kind, pods=total, min_member=min_member, bound=bound,
        pending=pending, completed=completed, state=state,
        scheduler=spec.pods[0].scheduler_name if spec.pods else DEFAULT_SCHEDULER,
        queue=spec.queue or (pg["queue"] if pg else None),
        started_at=run.lesson(min(started)) if started else None,
        finished_at=run.lesson(max(finished)) if completed == total and finished else None)


def _waste_and_utilisation(run: _Run, nodes: Sequence[NodeSpec], end: float):
    specs = {j.name: j for j in run.manifests.jobs}
    gpu_of = {}
    for t in run.pods.values():
        spec = specs.get(t.job)
        gpu_of[t.real_name] = spec.pods[0].requests.get(GPU, 0) if spec and spec.pods else 0
    waste = 0.0
    marks = {0.0, end}
    for t in run.pods.values():
        if t.bound_at is None:
            continue
        stop = t.finished_at if t.finished_at is not None else end
        idle_until = min(t.working_at if t.working_at is not None else stop, stop)
        waste += gpu_of[t.real_name] * max(idle_until - t.bound_at, 0.0)
        marks.update(x for x in (t.bound_at, t.working_at, t.finished_at) if x is not None)
    times = sorted(marks)
    allocated, working = [], []
    for x in times:
        alloc = work = 0
        for t in run.pods.values():
            if t.bound_at is None or t.bound_at > x:
                continue
            if t.finished_at is not None and t.finished_at <= x:
                continue
            alloc += gpu_of[t.real_name]
            if t.working_at is not None and t.working_at <= x:
                work += gpu_of[t.real_name]
        allocated.append(alloc)
        working.append(work)
    capacity = sum(n.allocatable.get(GPU, 0) for n in nodes)
    util = {"resource": GPU, "capacity": capacity, "t": [run.lesson(x) for x in times],
            "allocated": allocated, "working": working}
    return round(waste / run.time_scale, 2), util


def _scheduler_events(api, namespace: str,
                      uids: set[str] | None = None) -> list[tuple[str, str, str]]:
    """FailedScheduling / Unschedulable / Scheduled events: what the real schedulers said.

    Returns ``(reason, kind/name, message)``; the reason is the event type the model logs
    too. A pod's Scheduled message is written as the model writes it,
    ``<scheduler>: bound to <node>`` (the scheduler is the event's reporting component).
    With ``uids``, an event about a pod or PodGroup is kept only if its object's UID is one
    of them (events about objects of an earlier run in a same-named namespace are dropped).
    """

    out = []
    for e in k8s.core(api).list_namespaced_event(namespace).items:
        if e.reason not in ("FailedScheduling", "Unschedulable", "Scheduled"):
            continue
        kind = e.involved_object.kind.lower()
        if uids is not None and kind in ("pod", "podgroup") and e.involved_object.uid not in uids:
            continue
        message = (e.message or "").strip()[:200]
        if e.reason == "Scheduled" and kind == "pod" and " to " in message:
            component = e.reporting_component or (e.source.component if e.source else "") or "?"
            message = f"{component}: bound to {message.rsplit(' to ', 1)[1]}"
        out.append((e.reason, f"{kind}/{e.involved_object.name}", message))
    return out
