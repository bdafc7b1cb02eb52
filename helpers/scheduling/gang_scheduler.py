"""kube-scheduler with its GangScheduling plugin (Kubernetes 1.35 alpha, KEP-4671), as modelled.

The third scheduler of the labs: the default scheduler's cycle
(:mod:`.default_scheduler`) plus the plugin that the feature gates ``GenericWorkload`` and
``GangScheduling`` switch on, driven by ``scheduling.k8s.io/v1alpha1`` Workload objects.
A pod joins a gang by naming a Workload and one of its pod groups in ``spec.workloadRef``;
the group's ``policy.gang.minCount`` is the gang size. Pods without ``workloadRef``, and
pods of a ``policy.basic`` group, are scheduled exactly as by the default scheduler.

What the plugin does, and the model with it (from ``pkg/scheduler/framework/plugins/
gangscheduling`` and ``pkg/scheduler/backend/workloadmanager`` of the pinned 1.35.4):

* **PreEnqueue** keeps a gang pod out of the scheduling queue (no cycle, no
  FailedScheduling event, the pod simply stays Pending) while its Workload does not exist
  (``waiting for pods's workload "<name>" to appear in scheduling queue``), while the Workload
  has no such pod group (``pod group "<g>" doesn't exist for a workload "<name>"``), or while
  fewer than ``minCount`` pods of the group exist (``waiting for minCount pods from a gang
  to appear in scheduling queue``). A new pod of the same group, or the Workload's creation,
  re-runs PreEnqueue. The model logs these as ``Gated`` events with upstream's message.
* **Reserve / Permit**: a gang pod that passes Filter/Score reserves its node (the
  scheduler's cache counts its requests, so no other pod can take them; the API server
  still shows it Pending, with no ``nodeName``) and waits at Permit until ``minCount`` pods
  of its group are reserved or bound; then all of them bind at once. While waiting, it
  activates its group's unscheduled pods (``Activate``), so they are retried at once. The
  model logs ``WaitingOnPermit`` events and counts reserved requests as allocated (they are
  held, not working: they show up as waste).
* **Timeout**: the group's deadline is set when its first pod starts waiting at Permit (a
  new one if the last has passed) and is fixed at 5 minutes
  (``DefaultSchedulingTimeoutDuration``). At the deadline every waiting pod of the group is
  rejected together (``rejected due to timeout after waiting 5m0s at plugin
  GangScheduling``), its reservation released (the scheduler treats that as a pod deletion:
  pods that failed for lack of resources are retried), and it goes back to the
  unschedulable pods, from which only its group's events bring it back: a new pod of the
  group, the Workload's creation, or a peer starting to wait at Permit.

Left out, besides what :mod:`.default_scheduler` leaves out: ``podGroupReplicaKey`` (one
replica per pod group), the 5-minute flush of the unschedulable pods and backoff timers (a
rejected pod's retry waits for its group's next event), the scheduler's binding goroutines
(the timers of one group fire, and its pods are rejected, in the order they started
waiting; on a real scheduler those rejections race the scheduling loop, so after a timeout
which pods reserve the freed nodes first can differ from the model), and Workload
deletion. Pods created by a Job controller carry the template's ``workloadRef``; the model
does not check ``controllerRef`` (nothing reads it in 1.35).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from helpers.scheduling.default_scheduler import KubeScheduler
from helpers.scheduling.model import DEFAULT_SCHEDULER, WorkloadSpec

if TYPE_CHECKING:
    from helpers.scheduling.simulate import PodState, Simulation

#: ``DefaultSchedulingTimeoutDuration`` of the pinned 1.35: how long a gang waits at Permit.
PERMIT_TIMEOUT_SECONDS = 300.0
PLUGIN = "GangScheduling"
MSG_NO_WORKLOAD = 'waiting for pods\'s workload "{name}" to appear in scheduling queue'
MSG_NO_GROUP = 'pod group "{group}" doesn\'t exist for a workload "{name}"'
MSG_QUORUM = "waiting for minCount pods from a gang to appear in scheduling queue"
MSG_PERMIT = "waiting for minCount pods from a gang to be waiting on permit"
MSG_TIMEOUT = ("0/1 nodes are available: 1 rejected due to timeout after waiting 5m0s at plugin "
               f"{PLUGIN}.")


@dataclass
class GroupState:
    """The scheduler's runtime state of one pod group (upstream's ``podGroupInfo``)."""

    key: tuple[str, str]
    pods: list = field(default_factory=list)      # every pod of the group the scheduler knows
    waiting: list = field(default_factory=list)   # (pod, node) reserved, waiting at Permit
    assigned: int = 0                             # bound
    deadline: float | None = None
    timer: object = None                          # the pending timeout event


class GangScheduler(KubeScheduler):
    """kube-scheduler with the GangScheduling plugin on a :class:`Simulation`."""

    def __init__(self, sim: Simulation):
        super().__init__(sim)
        self.workloads: dict[str, WorkloadSpec] = {}
        self.groups: dict[tuple[str, str], GroupState] = {}
        #: Pods PreEnqueue keeps out of the queue: seq -> (pod, reason, queue entry).
        self.gated: dict[int, tuple[PodState, str]] = {}
        #: Pods rejected by this plugin (Permit timeout): only their group's events requeue them.
        self.rejected: dict[int, tuple] = {}

    # ------------------------------------------------------------------ PreEnqueue
    def _policy(self, pod: PodState) -> tuple[int | None, str | None]:
        """(minCount or None, gating reason or None) for a pod with a workloadRef."""
        name, group = pod.spec.workload_ref
        workload = self.workloads.get(name)
        if workload is None:
            return None, MSG_NO_WORKLOAD.format(name=name)
        if group not in workload.pod_groups:
            return None, MSG_NO_GROUP.format(group=group, name=name)
        min_count = workload.pod_groups[group]
        if min_count is not None and len(self.groups[pod.spec.workload_ref].pods) < min_count:
            return min_count, MSG_QUORUM
        return min_count, None

    def _enqueue(self, pod: PodState, entry: tuple) -> None:
        """moveToActiveQ: run PreEnqueue, then the active queue or the gated pods.

        ``entry`` keeps the pod's queue timestamp: a gated pod keeps its creation time.
        """
        _, reason = self._policy(pod) if pod.spec.workload_ref else (None, None)
        previous = self.gated.pop(pod.seq, None)
        if reason is None:
            heapq.heappush(self.active, entry)
            return
        if previous is None or previous[1] != reason:
            self.sim.log("Gated", f"pod/{pod.name}", f"{PLUGIN} PreEnqueue: {reason}")
        self.gated[pod.seq] = (pod, reason, entry)

    def add(self, pod: PodState) -> None:
        """A new pod: PreEnqueue, and the Pod/Add event re-runs it for its group's gated pods."""
        if pod.scheduler != DEFAULT_SCHEDULER:
            return
        ref = pod.spec.workload_ref
        if ref is None:
            super().add(pod)
            return
        group = self.groups.setdefault(ref, GroupState(ref))
        group.pods.append(pod)
        self._enqueue(pod, self._entry(pod, self.sim.t))
        # The Pod/Add event re-runs PreEnqueue for the group's gated pods; their answer can
        # only change when this pod completed the quorum (skipping the rest saves O(n^2)).
        if pod.seq not in self.gated or any(m.seq in self.rejected for m in group.pods):
            self._requeue_group(group)

    def workload_added(self, workload: WorkloadSpec) -> None:
        """A Workload is created: PreEnqueue runs again for the pods naming it."""
        self.workloads[workload.name] = workload
        self.sim.log("Created", f"workload/{workload.name}", ", ".join(
            f"podGroup {g}: " + ("basic" if n is None else f"gang minCount {n}")
            for g, n in workload.pod_groups.items()))
        for group in [g for key, g in self.groups.items() if key[0] == workload.name]:
            self._requeue_group(group)

    def _requeue_group(self, group: GroupState) -> None:
        """The group's gated pods run PreEnqueue again; its rejected pods re-enter the queue."""
        for pod in group.pods:
            if pod.seq in self.gated:
                self._enqueue(pod, self.gated[pod.seq][2])
            elif pod.seq in self.rejected:
                heapq.heappush(self.active, self.rejected.pop(pod.seq))

    # ------------------------------------------------------------------ Reserve / Permit
    def place(self, pod: PodState, node: int) -> None:
        """Reserve ``node``; Permit binds the whole group once ``minCount`` are reserved."""
        ref = pod.spec.workload_ref
        min_count = self._policy(pod)[0] if ref else None
        if min_count is None:
            super().place(pod, node)
            return
        sim = self.sim
        group = self.groups[ref]
        sim.reserve(pod, node)
        if len(group.waiting) + 1 + group.assigned >= min_count:
            for waiting, wnode in [*group.waiting, (pod, node)]:
                sim.bind(waiting, wnode, "default-scheduler", reserved=True)
            group.assigned += len(group.waiting) + 1
            group.waiting.clear()
            if group.timer is not None:
                sim.cancel(group.timer)
                group.timer = None
            return
        group.waiting.append((pod, node))
        if group.deadline is None or group.deadline <= sim.t:
            group.deadline = sim.t + PERMIT_TIMEOUT_SECONDS
            if group.timer is not None:
                sim.cancel(group.timer)
            group.timer = sim.schedule(group.deadline, "gang-timeout", ref)
        sim.log("WaitingOnPermit", f"pod/{pod.name}",
                f"{PLUGIN} Permit: {MSG_PERMIT} ({len(group.waiting) + group.assigned}/{min_count} "
                f"reserved; node {sim.cluster.nodes[node].name} held until "
                f"{group.deadline:.0f} s)")
        # Activate: the group's unscheduled pods are retried at once.
        for member in group.pods:
            if member.seq in self.unschedulable:
                heapq.heappush(self.active, self.unschedulable.pop(member.seq))
        self._requeue_group(group)

    def permit_timeout(self, ref: tuple[str, str]) -> None:
        """The group's deadline passed: reject every waiting pod and release its node."""
        sim = self.sim
        group = self.groups[ref]
        group.timer = None
        for pod, _node in group.waiting:
            sim.unreserve(pod)
            sim.log("FailedScheduling", f"pod/{pod.name}", MSG_TIMEOUT)
            pod.failed_once = False  # its next failure for lack of room is an event again
            self.resources_freed()  # Forget of an assumed pod counts as an assigned pod deletion
            self.rejected[pod.seq] = self._entry(pod, sim.t)
        group.waiting.clear()
