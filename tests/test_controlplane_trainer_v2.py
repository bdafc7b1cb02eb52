"""Kubeflow Trainer v2 + JobSet + Volcano on the kwok control plane: the kit's Iris TrainJob
(cluster/manifests/training/40-trainjob.yaml on the ClusterTrainingRuntime
30-trainingruntime-xgboost-volcano.yaml) is gang-scheduled by the real vc-scheduler.

What the source says (github.com/kubeflow/trainer/v2 at the pin, v2.3.0):

* pkg/runtime/framework/plugins/volcano/volcano.go, ``Build``: for a runtime with
  ``podGroupPolicy.volcano`` the controller server-side-applies a
  ``scheduling.volcano.sh/v1beta1`` PodGroup named ``trainJob.Name`` in its namespace, with
  ``minMember`` = the sum of every PodSet's count (all its pods) and ``minResources`` = each
  PodSet's single-pod requests times its count, summed; ``spec.queue`` only when the
  runtime's template annotations carry ``scheduling.volcano.sh/queue-name``; the TrainJob as
  controller owner. ``EnforcePodGroupPolicy`` adds the pod annotation
  ``scheduling.k8s.io/group-name: <TrainJob name>``; nothing there sets ``schedulerName``
  (the kit's runtime says ``schedulerName: volcano`` in its pod template).
* The TrainJob becomes a JobSet (pkg/runtime/framework/plugins/jobset), whose controller
  makes one Job per replicated job; kube-controller-manager makes the pods; vc-scheduler
  binds them only when the whole PodGroup fits.

The PodGroup is compared with :func:`helpers.scheduling.trainer_v2.trainer_podgroup`, and
the v2 column of :func:`helpers.scheduling.trainer_v2.side_by_side` (what lab 02 section 5
shows) with the real objects, so the lab's prediction and the controller cannot drift apart.

One Trainer + JobSet session (started on request, ``helpers.backend.kwok.trainer_v2``) serves
the module, on the run's shared control plane, with 2 fake nodes x 2 ``example.com/gpu``.
"""

from __future__ import annotations

import copy
import time

import pytest

from helpers.backend.kwok import nodes as kwok_nodes
from helpers.backend.kwok import trainer_v2 as kwok_trainer_v2
from helpers.kube import client as k8s
from helpers.kube.names import GPU_RESOURCE
from helpers.scheduling import trainer_v2
from helpers.scheduling.model import parse_quantity

pytestmark = [pytest.mark.kwok, pytest.mark.timeout(600)]

#: vc-scheduler runs a cycle every second (its default schedule period); a gang that is
#: still unbound after this many seconds was passed over by several cycles.
SETTLE_SECONDS = 6.0
NODES, GPUS_PER_NODE = 2, 2


@pytest.fixture(scope="module")
def api(kwok_controlplane):
    """A client of the run's control plane (tests/conftest.py starts it once per run)."""
    return k8s.connect(kwok_controlplane["kubeconfig"])


def _kwok_trainjob(trainjob: dict) -> dict:
    """The kit's TrainJob without its model-store volume patch (kwok has no storage: a pod
    with an unbound PVC is never scheduled). The patch touches no annotation, so the
    predicted PodGroup is the same."""
    job = copy.deepcopy(trainjob)
    job["spec"].pop("runtimePatches", None)
    return job


@pytest.fixture(scope="module")
def session(api):
    """Trainer v2 and JobSet running, the kit's runtime applied, fake nodes, the namespace."""
    _, trainjob, runtime = trainer_v2.course_jobs()
    ns = trainjob["metadata"]["namespace"]
    kwok_nodes.create_fake_nodes(api, NODES, GPUS_PER_NODE, prefix="trainer-v2")
    try:
        with kwok_trainer_v2.trainer_v2(api) as controllers:
            k8s.ensure_namespace(api, ns)
            k8s.apply(api, runtime)  # through Trainer's validating webhook
            yield {"controllers": controllers, "runtime": runtime, "ns": ns,
                   "trainjob": _kwok_trainjob(trainjob)}
            k8s.delete_namespace(api, ns)
            k8s.delete(api, runtime)
    finally:
        kwok_nodes.delete_fake_nodes(api)


def _podgroup(api, ns: str, name: str) -> dict | None:
    return next((g for g in k8s.podgroups(api, ns) if g["metadata"]["name"] == name), None)


def _diagnostics(api, session) -> str:
    return f"{k8s.diagnose(api, session['ns'])}\n{session['controllers'].diagnose()}"


def _quantities(resources: dict) -> dict[str, float]:
    return {k: parse_quantity(v, resource=k, where=k) for k, v in resources.items()}


def test_iris_trainjob_gets_the_predicted_podgroup_and_volcano_binds_its_pods_together(api, session):
    """The real controller's PodGroup and pods are what lab 02 section 5 predicts, field by
    field, and vc-scheduler binds all of them on the fake nodes."""
    job, runtime, ns = session["trainjob"], session["runtime"], session["ns"]
    name = job["metadata"]["name"]
    predicted = trainer_v2.trainer_podgroup(job, runtime)
    pods_wanted = predicted["spec"]["minMember"]
    k8s.apply(api, job)  # through Trainer's defaulting and validating webhooks

    def gang_running() -> bool:
        pods = k8s.pods(api, ns, selector=f"jobset.sigs.k8s.io/jobset-name={name}")
        group = _podgroup(api, ns, name)  # its phase follows at vc-scheduler's next cycle
        return len(pods) == pods_wanted and all(
            p.spec.node_name and p.status.phase == "Running" for p in pods) \
            and group is not None and (group.get("status") or {}).get("phase") == "Running"

    k8s.wait_for(gang_running, 120, f"the {pods_wanted} pods of TrainJob {name} and its "
                 "PodGroup to run", diagnostics=lambda: _diagnostics(api, session))
    group = _podgroup(api, ns, name)
    assert group is not None, [g["metadata"]["name"] for g in k8s.podgroups(api, ns)]
    # the PodGroup, field by field, against the prediction
    assert group["spec"]["minMember"] == pods_wanted == job["spec"]["trainer"]["numNodes"]
    assert _quantities(group["spec"]["minResources"]) == _quantities(predicted["spec"]["minResources"])
    assert group["spec"].get("queue") == predicted["spec"]["queue"] == "default"
    owner = group["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("TrainJob", name, True)
    assert group["status"]["phase"] == "Running"
    # lab 02 section 5's v2 column against the real pods
    v1_job, _, _ = trainer_v2.course_jobs()
    rows = {r["field"]: r["v2"] for r in trainer_v2.side_by_side(v1_job, job, runtime)}
    assert rows["PodGroup name"] == group["metadata"]["name"]
    assert rows["minMember"] == group["spec"]["minMember"]
    assert rows["queue"] == group["spec"].get("queue")
    pods = k8s.pods(api, ns, selector=f"jobset.sigs.k8s.io/jobset-name={name}")
    nodes = {n.metadata.name for n in k8s.core(api).list_node().items}
    for pod in pods:
        notes = pod.metadata.annotations or {}
        for key in (trainer_v2.GROUP_ANNOTATION, trainer_v2.TASK_SPEC_ANNOTATION):
            assert notes.get(key) == rows[f"pod annotation {key}"], (pod.metadata.name, key)
        assert pod.spec.scheduler_name == rows["pod schedulerName"] == "volcano"
        assert pod.spec.node_name in nodes
        # the XGBoost plugin's rendezvous variables (pkg/runtime/framework/plugins/xgboost)
        env = {e.name: e for e in next(c for c in pod.spec.containers if c.name == "node").env}
        assert {"DMLC_TRACKER_URI", "DMLC_TRACKER_PORT", "DMLC_TASK_ID", "DMLC_NUM_WORKER"} <= set(env)
        assert env["DMLC_NUM_WORKER"].value == str(pods_wanted)
        assert env["DMLC_TRACKER_PORT"].value == "29500"
    k8s.delete(api, job)


def test_trainjob_too_big_for_the_cluster_gets_no_pod_bound(api, session):
    """Three nodes of 2 GPUs each need 6 of the cluster's 4: two pods alone would fit (one per
    node), but the PodGroup (minMember 3) never fits whole, so Volcano binds none of them."""
    ns = session["ns"]
    job = copy.deepcopy(session["trainjob"])
    job["metadata"]["name"] = name = "too-big-v2"
    per_node = GPUS_PER_NODE
    job["spec"]["trainer"]["numNodes"] = 3
    job["spec"]["trainer"]["resourcesPerNode"] = {"requests": {GPU_RESOURCE: str(per_node)},
                                                  "limits": {GPU_RESOURCE: str(per_node)}}
    assert 3 * per_node > NODES * GPUS_PER_NODE >= 2 * per_node  # too big whole, not in part
    k8s.apply(api, job)
    selector = f"jobset.sigs.k8s.io/jobset-name={name}"
    k8s.wait_for(lambda: len(k8s.pods(api, ns, selector=selector)) == 3
                 and _podgroup(api, ns, name) is not None, 60,
                 f"TrainJob {name}'s 3 pods and its PodGroup",
                 diagnostics=lambda: _diagnostics(api, session))
    group = _podgroup(api, ns, name)
    assert group["spec"]["minMember"] == 3
    assert _quantities(group["spec"]["minResources"])[GPU_RESOURCE] == 3 * per_node
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:  # never a single pod bound, in any cycle
        bound = [p.metadata.name for p in k8s.pods(api, ns, selector=selector) if p.spec.node_name]
        assert not bound, f"Volcano bound part of a gang that cannot fit whole: {bound}"
        time.sleep(0.5)
    assert _podgroup(api, ns, name)["status"].get("phase") in ("Pending", "Inqueue")
    k8s.delete(api, job)
