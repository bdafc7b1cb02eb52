"""The scheduling labs' engine: a deterministic model of kube-scheduler and Volcano.

Labs call one function whatever the backend::

    from helpers import scheduling
    result = scheduling.run_scenario("chapter", "volcano", backend)   # -> SchedulingResult
    result.to_dict()                                                   # the shape below

On ``sim`` it runs :mod:`helpers.scheduling.simulate` on the manifests under
``cluster/manifests/scheduling``; on ``kind``/``kwok`` it applies the same manifests to a
real API server through :mod:`helpers.backend.scheduling_run` and returns the same shape.

Result shape (``SchedulingResult.to_dict()``; every backend returns exactly these keys)::

    {
      "backend": "sim" | "kind" | "kwok",
      "scheduler": "default" | "volcano" | "gang",
      "seed": int,
      "gridlocked": bool,     # some job holds pods that wait for peers, and nothing can
                              # ever change that (the run went quiet)
      "jobs": {name: {"name", "kind": "Job"|"Deployment"|"VolcanoJob"|"Pods",
                      "pods", "min_member", "bound", "pending", "completed",
                      "state": "completed"|"running"|"waiting"|"gridlocked"|"pending",
                      "scheduler", "queue", "started_at", "finished_at"}},
      "podgroups": {name: {"name", "phase": "Pending"|"Inqueue"|"Running"|"Completed",
                           "min_member", "queue", "history": [[t, phase], ...],
                           "deleted_at": float | None}},  # a Volcano Job's PodGroup is
                              # deleted when the job completes (last phase: Running)
      "metrics": {"jobs_completed": int, "jobs_total": int,
                  "makespan": float | None,     # last finite job's completion, None if
                                                # some finite job never completed
                  "waste": {resource: resource-seconds},  # bound but not working
                  "waste_gpu_seconds": float,   # waste["example.com/gpu"]
                  "end_time": float,            # the observation window [0, end_time]
                  "utilisation": {"resource": str, "capacity": int,
                                  "t": [...], "allocated": [...], "working": [...]}},
      "pods": {name: {"job", "node",
                      "phase": "Pending"|"Bound"|"Running"|"Succeeded"|"NotCreated",
                      "created_at", "bound_at", "working_at", "finished_at",
                      "slot"}},   # first GPU lane on the node (model only, else None)
      "nodes": {name: {"allocatable": {resource: int}, "max_pods": int}},
      "events": [{"t": float, "type": str, "object": str, "message": str}, ...],
                  # types both backends write: "Scheduled" ("<scheduler>: bound to <node>"),
                  # "Unschedulable", "FailedScheduling", "vcjob" ("phase <P>"), "podgroup"
                  # ("deleted"); model names for pods and PodGroups
      "warnings": [str, ...],
    }

``SchedulingResult.summary()`` renders it for people; ``bound_by_queue(t)`` counts pods
holding nodes per Volcano queue at time ``t``; ``vcjob_phases(job)`` lists a Volcano Job's
own phases. Times are seconds from the first apply.
``bound`` counts pods placed on a node and not yet finished; ``pending`` pods not placed;
``completed`` pods that exited successfully.

Where the model simplifies (details in each module's docstring): time is simulated and exact
(a fixed 1 s container start, no image pulls, pods terminate instantly and never fail);
kube-scheduler is modelled by its queue, NodeResourcesFit and LeastAllocated only (no
preemption, affinity, taints, topology spread, node sampling or backoff timers); Volcano by
enqueue (overcommit + proportion), allocate (gang statements, queue shares), backfill and
PodGroup phases (no preemption/reclaim, pipelining, hierarchical queues, guarantee, network
topology or job restart policies); kube-scheduler's GangScheduling plugin
(``scheduler="gang"``, the Workload API of 1.35) by its PreEnqueue quorum, Permit wait and
5-minute whole-group timeout (:mod:`helpers.scheduling.gang_scheduler`). Controllers are
modelled only as far as pod creation order (Job/ReplicaSet slow-start batches; Volcano Jobs
after Inqueue) and a Volcano Job's phases and PodGroup deletion. Known simplification: Jobs
applied together get their pods in one fixed order (slow-start batches in lockstep), where
the real Job controller's concurrent syncs race and the order, hence gridlock or not, varies
from run to run (scenario ``two-jobs``/``default``; see :mod:`helpers.scheduling.simulate`).
"""

from __future__ import annotations

from helpers.scheduling.model import (
    JobResult,
    Manifests,
    NodeSpec,
    PodGroupResult,
    SchedulingResult,
    load_manifests,
    make_nodes,
)
from helpers.scheduling.scenarios import SCENARIOS, Scenario, run_scenario, scenario
from helpers.scheduling.simulate import SimConfig, simulate

__all__ = [
    "SCENARIOS",
    "JobResult",
    "Manifests",
    "NodeSpec",
    "PodGroupResult",
    "Scenario",
    "SchedulingResult",
    "SimConfig",
    "load_manifests",
    "make_nodes",
    "run_scenario",
    "scenario",
    "simulate",
]
