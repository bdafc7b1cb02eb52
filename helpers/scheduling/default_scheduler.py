"""kube-scheduler's one-pod-at-a-time cycle, as modelled.

Faithful to the upstream scheduler in the parts that decide the lessons:

* **Queue** (``PrioritySort``): the active queue pops the pod with the highest priority,
  then the earliest queue timestamp. A pod that fails goes to the unschedulable pods with a
  *refreshed* timestamp (``AddUnschedulableIfNotPresent``), so retries run in the order of
  the last failure.
* **Filter** (``NodeResourcesFit``): for every resource the pod requests, the request must
  fit ``allocatable - requested`` on the node; the node's pod count must stay below its
  ``pods`` limit. Extended resources such as ``example.com/gpu`` are checked the same way.
* **Score** (``NodeResourcesFit`` with the ``LeastAllocated`` strategy, cpu and memory
  weight 1): ``(allocatable - requested) * 100 / allocatable`` per resource, integer
  arithmetic, weighted mean. An incoming pod without cpu/memory requests counts 100m /
  200Mi (the scheduler's non-zero defaults; the model does not apply them to pods already
  on the node). Ties are broken at random (seeded here).
* **Requeue**: when resources are freed (an assigned pod terminates) every unschedulable
  pod moves back to the active queue (NodeResourcesFit's queueing hint for pod deletion).
* Pods naming another ``schedulerName`` are not this scheduler's business.

Left out: preemption, the other filter/score plugins (affinity, taints, topology spread,
image locality, balanced allocation), ``percentageOfNodesToScore`` sampling, parallel
filtering, backoff timers and the 5-minute unschedulable flush (retrying without a cluster
change cannot succeed here), binding latency and the scheduler's cache assumptions.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from helpers.scheduling.model import CPU, DEFAULT_SCHEDULER, MEMORY

if TYPE_CHECKING:
    from helpers.scheduling.simulate import PodState, Simulation

#: Non-zero defaults kube-scheduler assumes for scoring pods without requests.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
MAX_NODE_SCORE = 100


def least_allocated_score(alloc: tuple[int, ...], used: tuple[int, ...], req: tuple[int, ...],
                          cpu: int = 0, mem: int = 1) -> int:
    """LeastAllocated score of a node for a pod (0-100), cpu and memory weight 1.

    Args:
        alloc: Node allocatable vector.
        used: Node requested vector (pods already bound).
        req: The pod's request vector.
        cpu: Index of cpu in the vectors.
        mem: Index of memory in the vectors.
    """
    total = 0
    for k, default in ((cpu, DEFAULT_MILLI_CPU_REQUEST), (mem, DEFAULT_MEMORY_REQUEST)):
        capacity = alloc[k]
        requested = used[k] + (req[k] or default)
        if capacity == 0 or requested > capacity:
            score = 0
        else:
            score = (capacity - requested) * MAX_NODE_SCORE // capacity
        total += score
    return total // 2


def fit_failures(cluster, key: tuple, req: tuple[int, ...]) -> list[str]:
    """NodeResourcesFit's reasons a node class rejects a pod ([] means it fits)."""
    alloc, used, npods, max_pods = key
    reasons = []
    if npods + 1 > max_pods:
        reasons.append("Too many pods")
    for k, r in enumerate(req):
        if r and r > alloc[k] - used[k]:
            reasons.append(f"Insufficient {cluster.resources[k]}")
    return reasons


def pick(groups: list[list[int]], rng) -> int:
    """Pick uniformly among the nodes of several equally scored classes."""
    index = rng.randrange(sum(len(g) for g in groups))
    for g in groups:
        if index < len(g):
            return g[index]
        index -= len(g)
    raise AssertionError("unreachable: index within the total")


class KubeScheduler:
    """The default scheduler acting on a :class:`~helpers.scheduling.simulate.Simulation`."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.active: list[tuple] = []
        self.unschedulable: dict[int, tuple] = {}
        self.attempt = 0
        #: request vector -> free_epoch at which it last failed on every node.
        self._fail_cache: dict[tuple[int, ...], tuple[int, str]] = {}
        self.cpu = sim.resources.index(CPU)
        self.mem = sim.resources.index(MEMORY)

    def _entry(self, pod: PodState, timestamp: float) -> tuple:
        self.attempt += 1
        # (-priority, queue timestamp, attempt order) is PrioritySort's order; the attempt
        # counter stands in for the clock's sub-millisecond ordering.
        return (-pod.priority, timestamp, self.attempt, pod.seq, pod)

    def add(self, pod: PodState) -> None:
        """A new pod naming default-scheduler enters the active queue."""
        if pod.scheduler != DEFAULT_SCHEDULER:
            return
        heapq.heappush(self.active, self._entry(pod, self.sim.t))

    def resources_freed(self) -> None:
        """An assigned pod terminated: move every unschedulable pod back to the active queue."""
        if not self.unschedulable:
            return
        for entry in self.unschedulable.values():
            heapq.heappush(self.active, entry)
        self.unschedulable.clear()

    def drain(self) -> None:
        """Run scheduling cycles until the active queue is empty."""
        while self.active:
            entry = heapq.heappop(self.active)
            self.schedule_one(entry[-1])

    def schedule_one(self, pod: PodState) -> bool:
        """One scheduling cycle: filter, score, select, bind; or park the pod as unschedulable."""
        sim = self.sim
        pod.attempts += 1
        cached = self._fail_cache.get(pod.req)
        if cached is not None and cached[0] == sim.free_epoch:
            # Nothing was freed since an identical request failed everywhere: only binds
            # happened since, and they only shrink free capacity.
            self._unschedulable(pod, cached[1])
            return False
        best_score = -1
        best: list[list[int]] = []
        reasons: dict[str, int] = {}
        for key, members in sim.cluster.classes.items():
            failures = fit_failures(sim.cluster, key, pod.req)
            if failures:
                for reason in failures:
                    reasons[reason] = reasons.get(reason, 0) + len(members)
                continue
            score = least_allocated_score(key[0], key[1], pod.req, self.cpu, self.mem)
            if score > best_score:
                best_score, best = score, [members]
            elif score == best_score:
                best.append(members)
        if not best:
            n = len(sim.cluster.nodes)
            detail = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
            message = f"0/{n} nodes are available: {detail}."
            self._fail_cache[pod.req] = (sim.free_epoch, message)
            self._unschedulable(pod, message)
            return False
        # selectHost: a uniformly random node among the best-scored ones.
        self.place(pod, pick(best, sim.rng))
        return True

    def place(self, pod: PodState, node: int) -> None:
        """The cycle picked ``node``: Reserve, Permit and bind (here, bind at once)."""
        self.sim.bind(pod, node, "default-scheduler")

    def _unschedulable(self, pod: PodState, message: str) -> None:
        if not pod.failed_once:
            pod.failed_once = True
            self.sim.log("FailedScheduling", f"pod/{pod.name}", message)
        self.unschedulable[pod.seq] = self._entry(pod, self.sim.t)
