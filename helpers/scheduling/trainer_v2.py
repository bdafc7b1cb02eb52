"""Kubeflow Trainer v2 + Volcano: the PodGroup a TrainJob gets, beside Training Operator v1's.

v1 (the chapter's way) gang-schedules when the *operator* runs with
``--gang-scheduler-name=volcano`` (:mod:`helpers.scheduling.training_operator`). v2 asks in the
*runtime*: a (Cluster)TrainingRuntime with ``podGroupPolicy: {volcano: {}}``. For each TrainJob
on such a runtime, Trainer v2.3.0 (pkg/runtime/framework/plugins/volcano) creates a PodGroup
named after the TrainJob, ``minMember`` = all its pods (``trainer.numNodes`` overrides the
runtime's ``mlPolicy.numNodes``), ``minResources`` = their requests summed, the queue from the
annotation ``scheduling.volcano.sh/queue-name`` of the runtime's ``spec.template.metadata``
(a TrainJob's ``runtimePatches`` can override it; no annotation, no queue field), and annotates
every pod ``scheduling.k8s.io/group-name``. Unlike v1 it sets no ``schedulerName``: the
runtime's pod template has to say ``schedulerName: volcano``.

tests/test_controlplane_trainer_v2.py checks these predictions against the real controllers
(Trainer v2.3.0 and JobSet v0.12.0 on the kwok control plane, with vc-scheduler binding).
"""

from __future__ import annotations

from typing import Any

from helpers.errors import ManifestError
from helpers.scheduling import training_operator
from helpers.scheduling.model import parse_quantity

QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
#: v1 also tells Volcano each pod's replica type (Master, Worker) in this annotation.
TASK_SPEC_ANNOTATION = "volcano.sh/task-spec"

#: How a learner's v1 job maps onto v2, field by field.
MIGRATION: list[dict[str, str]] = [
    {"what": "turn gang scheduling on",
     "v1": "operator flag --gang-scheduler-name=volcano (every job)",
     "v2": "runtime spec.podGroupPolicy: {volcano: {}} (jobs on that runtime)"},
    {"what": "the job", "v1": "XGBoostJob (kubeflow.org/v1)",
     "v2": "TrainJob + ClusterTrainingRuntime (trainer.kubeflow.org/v1alpha1), run as a JobSet"},
    {"what": "roles and size", "v1": "xgbReplicaSpecs: Master 1 + Worker N",
     "v2": "trainer.numNodes: N+1 (one pod template; rank 0 is node 0)"},
    {"what": "minMember", "v1": "runPolicy.schedulingPolicy.minAvailable (default: all replicas)",
     "v2": "always all pods (no minAvailable)"},
    {"what": "queue", "v1": "runPolicy.schedulingPolicy.queue (default: default)",
     "v2": f"annotation {QUEUE_ANNOTATION} on the runtime's spec.template.metadata, "
           "or in a TrainJob's runtimePatches"},
    {"what": "schedulerName", "v1": "set to volcano by the operator",
     "v2": "write schedulerName: volcano in the runtime's pod template"},
    {"what": "rendezvous env", "v1": "MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK",
     "v2": "DMLC_TRACKER_URI, DMLC_TRACKER_PORT, DMLC_NUM_WORKER, DMLC_TASK_ID"},
    {"what": "image, command, args, resources",
     "v1": "each replica's container", "v2": "trainer.image/command/args/resourcesPerNode"},
]


def _trainer_replicated_job(runtime: dict[str, Any]) -> dict[str, Any]:
    jobs = runtime.get("spec", {}).get("template", {}).get("spec", {}).get("replicatedJobs") or []
    for rjob in jobs:
        labels = rjob.get("template", {}).get("metadata", {}).get("labels", {})
        if labels.get("trainer.kubeflow.org/trainjob-ancestor-step") == "trainer":
            return rjob
    raise ManifestError(f"runtime {runtime.get('metadata', {}).get('name')}: no replicated job "
                        "labelled trainer.kubeflow.org/trainjob-ancestor-step: trainer")


def trainer_podgroup(trainjob: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The PodGroup Trainer v2 creates for ``trainjob`` on ``runtime`` (a single-step runtime).

    Raises:
        ManifestError: the runtime has no Volcano podGroupPolicy, or no trainer step.
    """
    if "volcano" not in (runtime.get("spec", {}).get("podGroupPolicy") or {}):
        raise ManifestError(f"runtime {runtime['metadata']['name']} has no podGroupPolicy.volcano: "
                            "Trainer creates no Volcano PodGroup for its TrainJobs")
    rjob = _trainer_replicated_job(runtime)
    trainer = trainjob.get("spec", {}).get("trainer") or {}
    nodes = int(trainer.get("numNodes", runtime["spec"].get("mlPolicy", {}).get("numNodes", 1)))
    pods = nodes * int(rjob.get("replicas", 1))
    requests = (trainer.get("resourcesPerNode") or {}).get("requests") or {}
    min_resources = {k: training_operator.format_quantity(k, parse_quantity(v, resource=k,
                                                          where=f"{k} request") * pods)
                     for k, v in requests.items()}
    annotations = dict(runtime["spec"]["template"].get("metadata", {}).get("annotations") or {})
    for patch in trainjob.get("spec", {}).get("runtimePatches") or []:
        meta = ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("metadata") or {}
        annotations.update(meta.get("annotations") or {})
    spec: dict[str, Any] = {"minMember": pods, "minResources": min_resources}
    if QUEUE_ANNOTATION in annotations:
        spec["queue"] = annotations[QUEUE_ANNOTATION]
    name = trainjob["metadata"]["name"]
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": trainjob["metadata"].get("namespace", "default")},
            "spec": spec}


def side_by_side(v1_job: dict[str, Any], trainjob: dict[str, Any],
                 runtime: dict[str, Any]) -> list[dict[str, Any]]:
    """What v1 and v2 create for the two jobs, field by field (rows of field, v1, v2)."""
    pg1 = training_operator.operator_podgroup(v1_job)
    pg2 = trainer_podgroup(trainjob, runtime)
    pod2 = _trainer_replicated_job(runtime)["template"]["spec"]["template"]["spec"]
    roles = [r.lower() for r in next(v for k, v in v1_job["spec"].items()
                                     if k.endswith("ReplicaSpecs"))]
    return [
        {"field": "PodGroup name", "v1": pg1["metadata"]["name"], "v2": pg2["metadata"]["name"]},
        {"field": "minMember", "v1": pg1["spec"]["minMember"], "v2": pg2["spec"]["minMember"]},
        {"field": "minResources", "v1": pg1["spec"]["minResources"],
         "v2": pg2["spec"]["minResources"]},
        {"field": "queue", "v1": pg1["spec"]["queue"], "v2": pg2["spec"].get("queue")},
        {"field": f"pod annotation {GROUP_ANNOTATION}", "v1": pg1["metadata"]["name"],
         "v2": pg2["metadata"]["name"]},
        {"field": f"pod annotation {TASK_SPEC_ANNOTATION}", "v1": "/".join(roles), "v2": None},
        {"field": "pod schedulerName", "v1": "volcano (set by the operator)",
         "v2": pod2.get("schedulerName")},
    ]


def course_jobs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The kit's v1 XGBoostJob, v2 TrainJob and v2 runtime, from cluster/manifests/training."""
    import yaml

    from helpers import paths

    folder = paths.manifests_dir("training")
    names = ("20-xgboostjob.yaml", "40-trainjob.yaml", "30-trainingruntime-xgboost-volcano.yaml")
    v1_job, trainjob, runtime = (yaml.safe_load((folder / n).read_text()) for n in names)
    return v1_job, trainjob, runtime


#: The manager of :func:`queue_patch`'s entry. ``runtimePatches`` is a list keyed by manager
#: (one entry per manager), and Trainer's webhook wants a domain-prefixed path ("acme.io/foo").
QUEUE_PATCH_MANAGER = "kflabs.example.com/queue"


def queue_patch(queue: str, manager: str = QUEUE_PATCH_MANAGER) -> dict[str, Any]:
    """A TrainJob ``runtimePatches`` entry that puts this one job's PodGroup in ``queue``."""
    return {"manager": manager, "trainingRuntimeSpec": {"template": {"metadata": {
        "annotations": {QUEUE_ANNOTATION: queue}}}}}
