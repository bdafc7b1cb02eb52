"""Volcano's scheduler (vc-scheduler) as modelled: periodic sessions of enqueue, allocate, backfill.

The model follows the pinned release's default configuration (``volcano-scheduler.conf``
in ``installer/volcano-development.yaml``): actions ``enqueue, allocate, backfill``; tier 1
plugins ``priority, gang, conformance``; tier 2 ``overcommit, drf, predicates, proportion,
nodeorder, binpack``. One session runs every ``--schedule-period`` (1 s):

* **enqueue** - PodGroups in phase Pending, queue by queue (queue order below) and job by
  job (priority, then creation), become ``Inqueue`` when every voting plugin permits:
  *overcommit* (``inqueue + minResources <= total * 1.2 - used``) and *proportion*
  (``minResources + allocated + inqueue <= queue capability``). A PodGroup without
  ``minResources`` is admitted at once. Volcano Jobs get their pods only after this.
* **allocate** - for each queue (lowest share first, skipping *overused* queues whose
  allocation reached their *deserved* share) and each Inqueue/Running job (priority, gang:
  not-yet-ready jobs first, creation): pending tasks are placed one by one in a tentative
  **statement** on the best node (predicates: resource fit incl. extended resources and the
  pod limit; nodeorder ``leastrequested`` + ``balancedresource`` + ``binpack`` scores, ties
  at random) until ``minMember`` tasks are ready. The statement is **committed** (all pods
  bound at once) only when the gang is ready, otherwise **discarded** (nothing bound).
  Tasks above ``minMember`` are added one at a time in later rounds.
* **backfill** - pods without resource requests (BestEffort) are placed on any node that
  passes the predicates.
* **proportion** - each queue's *deserved* resources are found by water-filling the
  cluster's total by weight, capped by the queue's capability and its request; ``share`` is
  the largest ``allocated / deserved`` ratio over resources.
* At session close each PodGroup's phase is recomputed (``getPodGroupPhase``): Running once
  ``minMember`` pods are scheduled, Completed when every scheduled pod has finished,
  otherwise it keeps Inqueue or goes back to Pending. A Volcano Job's PodGroup never gets
  there: vc-controller-manager deletes it when the job completes (:mod:`.simulate`), and a
  deleted PodGroup leaves the session's snapshot.

Left out: preemption and reclaim (not in the default actions), pipelining onto releasing
resources (pods terminate instantly here), the Unknown phase, hierarchical queues,
guarantee/deserved fields, elastic resources, drf's job order (all jobs here have equal
dominant shares at the start), network topology (hypernodes), NUMA, the predicates plugin's
affinity/taint checks, and the controller's restart/abort policies (pods never fail here).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

from helpers.scheduling.default_scheduler import least_allocated_score
from helpers.scheduling.model import CPU, MEMORY, VOLCANO

if TYPE_CHECKING:
    from helpers.scheduling.simulate import PodGroupState, PodState, Simulation

#: The default scheduler configuration of the pinned installer.
DEFAULT_CONF = {
    "actions": ["enqueue", "allocate", "backfill"],
    "tiers": [["priority", "gang", "conformance"],
              ["overcommit", "drf", "predicates", "proportion", "nodeorder", "binpack"]],
}

#: Objects created by ``kubectl apply -f installer/volcano-development.yaml`` at the pinned
#: tag (read from the installer at volcano v1.15.1): (kind, name, namespace or "").
INSTALLER_OBJECTS: list[tuple[str, str, str]] = [
    ("Namespace", "volcano-system", ""),
    ("Namespace", "volcano-monitoring", ""),
    ("ServiceAccount", "volcano-admission", "volcano-system"),
    ("ConfigMap", "volcano-admission-configmap", "volcano-system"),
    ("ClusterRole", "volcano-admission", ""),
    ("ClusterRoleBinding", "volcano-admission-role", ""),
    ("Service", "volcano-admission-service", "volcano-system"),
    ("Deployment", "volcano-admission", "volcano-system"),
    ("ServiceAccount", "volcano-admission-init", "volcano-system"),
    ("Role", "volcano-admission-init", "volcano-system"),
    ("RoleBinding", "volcano-admission-init-role", "volcano-system"),
    ("Job", "volcano-admission-init", "volcano-system"),
    ("CustomResourceDefinition", "jobs.batch.volcano.sh", ""),
    ("CustomResourceDefinition", "cronjobs.batch.volcano.sh", ""),
    ("CustomResourceDefinition", "commands.bus.volcano.sh", ""),
    ("ServiceAccount", "volcano-controllers", "volcano-system"),
    ("ConfigMap", "volcano-controller-configmap", "volcano-system"),
    ("ConfigMap", "volcano-sharding-configmap", "volcano-system"),
    ("ClusterRole", "volcano-controllers", ""),
    ("ClusterRoleBinding", "volcano-controllers-role", ""),
    ("Service", "volcano-controllers-service", "volcano-system"),
    ("Deployment", "volcano-controllers", "volcano-system"),
    ("ServiceAccount", "volcano-scheduler", "volcano-system"),
    ("ConfigMap", "volcano-scheduler-configmap", "volcano-system"),
    ("ClusterRole", "volcano-scheduler", ""),
    ("ClusterRoleBinding", "volcano-scheduler-role", ""),
    ("Service", "volcano-scheduler-service", "volcano-system"),
    ("Deployment", "volcano-scheduler", "volcano-system"),
    ("CustomResourceDefinition", "podgroups.scheduling.volcano.sh", ""),
    ("CustomResourceDefinition", "queues.scheduling.volcano.sh", ""),
    ("CustomResourceDefinition", "numatopologies.nodeinfo.volcano.sh", ""),
    ("CustomResourceDefinition", "hypernodes.topology.volcano.sh", ""),
    ("CustomResourceDefinition", "nodeshards.shard.volcano.sh", ""),
    ("CustomResourceDefinition", "colocationconfigurations.config.volcano.sh", ""),
    ("MutatingWebhookConfiguration", "volcano-admission-service-queues-mutate", ""),
    ("MutatingWebhookConfiguration", "volcano-admission-service-jobs-mutate", ""),
    ("ValidatingWebhookConfiguration", "volcano-admission-service-jobs-validate", ""),
    ("ValidatingWebhookConfiguration", "volcano-admission-service-queues-validate", ""),
    ("ValidatingWebhookConfiguration", "volcano-admission-service-podgroups-validate", ""),
    ("ValidatingWebhookConfiguration", "volcano-admission-service-hypernodes-validate", ""),
    ("ValidatingWebhookConfiguration", "volcano-admission-service-cronjobs-validate", ""),
    ("CustomResourceDefinition", "jobtemplates.flow.volcano.sh", ""),
    ("CustomResourceDefinition", "jobflows.flow.volcano.sh", ""),
]

_EPS = 1e-9
_SCHEDULED = ("Bound", "Running", "Succeeded")


class _QueueAttr:
    """proportion's per-queue bookkeeping for one session."""

    def __init__(self, name: str, weight: int, priority: int, seq: int, dims: int):
        self.name = name
        self.weight = weight
        self.priority = priority
        self.seq = seq
        self.allocated = [0.0] * dims
        self.request = [0.0] * dims
        self.inqueue = [0.0] * dims
        self.deserved = [0.0] * dims
        self.real_capability: list[float] = []
        self.share = 0.0

    def update_share(self) -> None:
        """share = max over resources of allocated / deserved (helpers.Share)."""
        share = 0.0
        for a, d in zip(self.allocated, self.deserved, strict=True):
            if d > _EPS:
                share = max(share, a / d)
            elif a > _EPS:
                share = max(share, 1.0)
        self.share = share

    def order(self) -> tuple:
        """QueueOrderFn: higher queue priority, then lower share, then creation."""
        return (-self.priority, self.share, self.seq, self.name)


def _inqueue_part(min_res: tuple[int, ...], allocated: list[float]) -> list[float]:
    """GetInqueueResource: the part of minResources not yet allocated."""
    return [max(m - a, 0.0) for m, a in zip(min_res, allocated, strict=True)]


def node_order_score(key: tuple, req: tuple[int, ...], cpu: int, mem: int) -> float:
    """nodeorder (leastrequested + balancedresource) + binpack, each plugin weight 1."""
    alloc, used = key[0], key[1]
    least = least_allocated_score(alloc, used, req, cpu, mem)
    fractions = []
    binpack = 0.0
    for k in (cpu, mem):
        cap = alloc[k]
        want = used[k] + req[k]
        frac = min(want / cap, 1.0) if cap else 1.0
        fractions.append(frac)
        if req[k] and cap and want <= cap:
            binpack += want / cap
    balanced = int((1 - abs(fractions[0] - fractions[1]) / 2) * 100)
    return least + balanced + binpack / 2 * 100


class VolcanoScheduler:
    """vc-scheduler acting on a :class:`~helpers.scheduling.simulate.Simulation`."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.dirty = False
        self.last_session: float | None = None
        self.sessions = 0
        self.cpu = sim.resources.index(CPU)
        self.mem = sim.resources.index(MEMORY)
        self.dims = len(sim.resources)

    # ------------------------------------------------------------------ timing
    def next_session(self, t: float) -> float | None:
        """The next session tick at or after ``t`` if something changed, else None."""
        if not self.dirty:
            return None
        period = self.sim.config.schedule_period
        tick = math.ceil(round(t / period, 9)) * period
        if self.last_session is not None and tick <= self.last_session + _EPS:
            tick = self.last_session + period
        return round(tick, 9)

    # ------------------------------------------------------------------ session
    def session(self) -> None:
        """Open a session, run enqueue, allocate and backfill, close it."""
        sim = self.sim
        self.dirty = False
        self.last_session = sim.t
        self.sessions += 1
        # A deleted PodGroup (its Volcano Job completed) is no longer in the snapshot.
        groups = [g for g in sim.podgroups.values() if g.deleted_at is None and (
            g.phase != "Completed" or any(p.phase != "Succeeded" for p in g.members))]
        groups = [g for g in groups if self._queue_ok(g)]
        self._open(groups)
        self._enqueue(groups)
        self._allocate(groups)
        self._backfill(groups)
        self._close(groups)

    def _queue_ok(self, g: PodGroupState) -> bool:
        if g.queue in self.sim.queues:
            return True
        self._report(g, "Unschedulable", f"queue {g.queue!r} does not exist; create the Queue")
        return False

    def _report(self, g: PodGroupState, kind: str, message: str) -> None:
        if message not in g.reported:
            g.reported.add(message)
            self.sim.log(kind, f"podgroup/{g.name}", message)

    def _job_allocated(self, g: PodGroupState) -> list[float]:
        out = [0.0] * self.dims
        for p in g.members:
            if p.phase in ("Bound", "Running"):
                for k, r in enumerate(p.req):
                    out[k] += r
        return out

    def _open(self, groups: list[PodGroupState]) -> None:
        sim = self.sim
        total = [float(x) for x in sim.cluster.total]
        self.total = total
        used = sim.cluster.used_total()
        factor = sim.config.overcommit_factor
        self.idle = [t * factor - u for t, u in zip(total, used, strict=True)]
        self.oc_inqueue = [0.0] * self.dims
        self.attrs: dict[str, _QueueAttr] = {}
        for g in groups:
            q = sim.queues[g.queue]
            attr = self.attrs.get(g.queue)
            if attr is None:
                attr = _QueueAttr(q.name, q.weight, q.priority, sim.queue_seq[q.name], self.dims)
                cap = [float(q.capability[r]) if r in q.capability else math.inf
                       for r in sim.resources]
                attr.real_capability = [min(t, c) for t, c in zip(total, cap, strict=True)]
                self.attrs[g.queue] = attr
            alloc = self._job_allocated(g)
            for k in range(self.dims):
                attr.allocated[k] += alloc[k]
                attr.request[k] += alloc[k]
            for p in g.members:
                if p.phase == "Pending":
                    for k, r in enumerate(p.req):
                        attr.request[k] += r
            scheduled = sum(1 for p in g.members if p.phase in ("Bound", "Running"))
            counted = g.phase == "Inqueue" or (g.phase == "Running" and scheduled >= g.min_member)
            if g.min_res is not None and counted:
                part = _inqueue_part(g.min_res, alloc)
                for k in range(self.dims):
                    attr.inqueue[k] += part[k]
                    self.oc_inqueue[k] += part[k]
        self._deserve()

    def _deserve(self) -> None:
        """proportion's water-filling of the cluster total by queue weight."""
        remaining = list(self.total)
        meet: set[str] = set()
        attrs = sorted(self.attrs.values(), key=lambda a: a.seq)
        while True:
            total_weight = sum(a.weight for a in attrs if a.name not in meet)
            if total_weight == 0:
                break
            old_remaining = list(remaining)
            increased = [0.0] * self.dims
            decreased = [0.0] * self.dims
            for a in attrs:
                if a.name in meet:
                    continue
                old = list(a.deserved)
                for k in range(self.dims):
                    d = a.deserved[k] + remaining[k] * a.weight / total_weight
                    d = min(d, a.real_capability[k], a.request[k])
                    a.deserved[k] = max(d, 0.0)
                if all(r <= d + _EPS for r, d in zip(a.request, a.deserved, strict=True)) or \
                        all(abs(x - y) <= _EPS for x, y in zip(a.deserved, old, strict=True)):
                    meet.add(a.name)
                for k in range(self.dims):
                    diff = a.deserved[k] - old[k]
                    if diff > 0:
                        increased[k] += diff
                    else:
                        decreased[k] -= diff
                a.update_share()
            remaining = [max(r + dec - inc, 0.0)
                         for r, dec, inc in zip(remaining, decreased, increased, strict=True)]
            if all(r < 0.1 for r in remaining) or \
                    all(abs(x - y) <= _EPS for x, y in zip(remaining, old_remaining, strict=True)):
                break

    # ------------------------------------------------------------------ enqueue
    def _job_order(self, g: PodGroupState) -> tuple:
        ready = self._ready_count(g, 0) >= g.min_member
        return (-g.priority, 1 if ready else 0, g.seq)

    def _enqueueable(self, g: PodGroupState) -> str | None:
        """Return None when overcommit and proportion permit, else the rejection message."""
        if g.min_res is None:
            return None
        need = g.min_res
        for k, r in enumerate(need):
            if r and self.oc_inqueue[k] + r > self.idle[k] + _EPS:
                return (f"resource in cluster is overused: {self.sim.resources[k]} "
                        f"(needs {r}, idle with overcommit {self.idle[k] - self.oc_inqueue[k]:g})")
        attr = self.attrs[g.queue]
        for k, r in enumerate(need):
            if r and r + attr.allocated[k] + attr.inqueue[k] > attr.real_capability[k] + _EPS:
                return (f"queue resource quota insufficient: {self.sim.resources[k]} in queue "
                        f"{g.queue} (capability {attr.real_capability[k]:g})")
        for k, r in enumerate(need):
            attr.inqueue[k] += r
        return None

    def _enqueue(self, groups: list[PodGroupState]) -> None:
        pending: dict[str, list] = {}
        for g in groups:
            if g.phase == "Pending":
                heapq.heappush(pending.setdefault(g.queue, []), (*self._job_order(g), g.name, g))
        queues = [self.attrs[name] for name in pending]
        while queues:
            attr = min(queues, key=_QueueAttr.order)
            jobs = pending[attr.name]
            if not jobs:
                queues.remove(attr)
                continue
            g = heapq.heappop(jobs)[-1]
            problem = self._enqueueable(g)
            if problem is None:
                if g.min_res is not None:
                    for k, r in enumerate(g.min_res):
                        self.oc_inqueue[k] += r
                g.phase = "Inqueue"
            else:
                self._report(g, "Unschedulable", f"job enqueue rejected: {problem}")

    # ------------------------------------------------------------------ allocate
    def _ready_count(self, g: PodGroupState, tentative: int) -> int:
        return tentative + sum(1 for p in g.members if p.phase in _SCHEDULED)

    def _best_node(self, pod: PodState) -> int | None:
        from helpers.scheduling.default_scheduler import fit_failures, pick

        cluster = self.sim.cluster
        best_score = None
        best: list[list[int]] = []
        for key, members in cluster.classes.items():
            if fit_failures(cluster, key, pod.req):
                continue
            score = node_order_score(key, pod.req, self.cpu, self.mem)
            if best_score is None or score > best_score + _EPS:
                best_score, best = score, [members]
            elif abs(score - best_score) <= _EPS:
                best.append(members)
        return pick(best, self.sim.rng) if best else None

    def _allocatable(self, attr: _QueueAttr, pod: PodState) -> bool:
        return all(not r or attr.allocated[k] + r <= attr.deserved[k] + _EPS
                   for k, r in enumerate(pod.req))

    def _overused(self, attr: _QueueAttr) -> bool:
        return all(d <= a + _EPS for d, a in zip(attr.deserved, attr.allocated, strict=True))

    def _allocate(self, groups: list[PodGroupState]) -> None:  # noqa: PLR0912 - Volcano's allocate action, step by step as upstream writes it
        sim = self.sim
        jobs_by_queue: dict[str, list] = {}
        worksheets: dict[str, list[PodState]] = {}
        for g in groups:
            if g.phase == "Pending":
                continue
            valid = sum(1 for p in g.members if p.phase != "Failed")
            if valid < g.min_member:
                self._report(g, "Unschedulable", f"Not enough valid tasks for gang-scheduling, "
                             f"valid: {valid}, min: {g.min_member}")
                continue
            tasks = sorted((p for p in g.members if p.phase == "Pending" and any(p.req)),
                           key=lambda p: (-p.priority, p.seq))
            if not tasks:
                continue
            worksheets[g.name] = tasks
            heapq.heappush(jobs_by_queue.setdefault(g.queue, []), (*self._job_order(g), g.name, g))
        queues = [self.attrs[name] for name in jobs_by_queue]
        while queues:
            attr = min(queues, key=_QueueAttr.order)
            queues.remove(attr)
            if self._overused(attr):
                continue
            jobs = jobs_by_queue[attr.name]
            if not jobs:
                continue
            g = heapq.heappop(jobs)[-1]
            tasks = worksheets[g.name]
            statement: list[tuple[PodState, int]] = []
            fit_error = None
            while tasks:
                pod = tasks.pop(0)
                if not self._allocatable(attr, pod):
                    continue
                node = self._best_node(pod)
                if node is None:
                    fit_error = pod
                    break
                statement.append((pod, node))
                sim.cluster.add(node, pod.req)
                for k, r in enumerate(pod.req):
                    attr.allocated[k] += r
                attr.update_share()
                if self._ready_count(g, len(statement)) >= g.min_member:
                    break
            if statement and self._ready_count(g, len(statement)) >= g.min_member:
                for pod, node in statement:  # Statement.Commit: bind every task
                    sim.cluster.remove(node, pod.req)
                    sim.bind(pod, node, "volcano")
                if tasks:
                    heapq.heappush(jobs, (*self._job_order(g), g.name, g))
            else:
                for pod, node in statement:  # Statement.Discard: roll every task back
                    sim.cluster.remove(node, pod.req)
                    for k, r in enumerate(pod.req):
                        attr.allocated[k] -= r
                attr.update_share()
                pending = sum(1 for p in g.members if p.phase == "Pending")
                why = "" if fit_error is None else \
                    f" ({len(statement)} placed before no node fit {fit_error.name})"
                self._report(g, "Unschedulable",
                             f"{pending}/{len(g.members)} tasks in gang unschedulable: pod group is not "
                             f"ready, {pending} Pending, {g.min_member} minAvailable{why}")
            queues.append(attr)

    # ------------------------------------------------------------------ backfill
    def _backfill(self, groups: list[PodGroupState]) -> None:
        from helpers.scheduling.default_scheduler import fit_failures

        cluster = self.sim.cluster
        for g in groups:
            if g.phase == "Pending":
                continue
            for pod in g.members:
                if pod.phase != "Pending" or any(pod.req) or pod.scheduler != VOLCANO:
                    continue
                for key, members in cluster.classes.items():
                    if not fit_failures(cluster, key, pod.req):
                        self.sim.bind(pod, members[0], "volcano (backfill)")
                        break

    # ------------------------------------------------------------------ close
    def _close(self, groups: list[PodGroupState]) -> None:
        sim = self.sim
        for g in groups:
            scheduled = sum(1 for p in g.members if p.phase in _SCHEDULED)
            completed = sum(1 for p in g.members if p.phase == "Succeeded")
            if scheduled >= g.min_member:
                phase = "Completed" if scheduled == completed else "Running"
            elif g.phase != "Inqueue":
                phase = "Pending"
            else:
                phase = "Inqueue"
            old = g.history[-1][1]
            g.phase = phase
            if phase != old:
                g.history.append([sim.t, phase])
                sim.log("PodGroupPhase", f"podgroup/{g.name}", f"{old} -> {phase}")
                if old == "Pending" and g.job is not None and g.job.kind == "VolcanoJob":
                    sim.create_vcjob_pods(g)
                    self.dirty = True
