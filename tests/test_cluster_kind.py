"""The kind path end to end, on a real kind cluster (``make cluster-up`` first).

Marked ``cluster``: every test skips, saying why, unless the kind cluster's context answers.
On a laptop with Docker: ``make cluster-up && .venv/bin/pytest -m cluster tests/test_cluster_kind.py``.

What runs: the cluster is the pinned Kubernetes with 8 fake GPUs on the workers; Volcano
admits jobs; the Training Operator carries the gang-scheduler flag; KServe defaults to
Standard mode; then the chapter's demonstration: the XGBoostJob trains with the kit's code
onto the PVC, gang-scheduled by Volcano; the InferenceService serves that model from
``pvc://``; V1 and V2 requests through a port-forward give the labels the local model gives;
clean-up is safe twice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import backend, distributed, training
from helpers.backend.kind import installs as kind_installs
from helpers.backend.kind import lifecycle as kind_lifecycle
from helpers.backend.kind import serving as kind_serving
from helpers.backend.kind import training as kind_training
from helpers.backend.kind.maintainer import kindconfig as kind_maintainer_config
from helpers.kube import client as k8s
from helpers.kube import kubectl as kubectl_run
from helpers.kube import names as kube_names

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def target(kind_target) -> backend.Backend:
    """The kind backend (tests/conftest.py ``kind_target``: a skip naming what is missing)."""
    return kind_target


def _json(*args: str) -> dict:
    return json.loads(kubectl_run.kubectl(*args, "-o", "json").stdout)


_NET_NS = "kflabs-nettest"


def _pod(name: str, node: str, command: str, volume: str | None = None) -> dict:
    # nodeSelector, not nodeName: a WaitForFirstConsumer volume binds once the scheduler picks.
    spec: dict = {"nodeSelector": {"kubernetes.io/hostname": node}, "restartPolicy": "Never",
                  "containers": [{
        "name": "c", "image": "busybox:1.36.1", "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command]}]}
    if volume:
        spec["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": volume}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": _NET_NS},
            "spec": spec}


def test_pods_on_different_workers_reach_each_other_and_a_pvc_binds(target):
    """The pod network (kindnetd, or the maintainers' kflabs-podnet) and the default StorageClass."""
    workers = kind_lifecycle.worker_nodes()
    assert len(workers) >= 2
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "net-pvc", "namespace": _NET_NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": _NET_NS}}
    docs = [ns, pvc, _pod("server", workers[0],
                          "echo reached-the-server > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
                          volume="net-pvc")]
    kubectl_run.kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": docs}))
    try:
        kubectl_run.kubectl("wait", "--for=condition=Ready", "pod/server", "-n", _NET_NS,
                            "--timeout=180s", timeout=200)
        ip = _json("get", "pod", "server", "-n", _NET_NS)["status"]["podIP"]
        request = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} 8080"
        kubectl_run.kubectl("apply", "-f", "-", input_text=json.dumps(
            _pod("client", workers[1], request)))
        kubectl_run.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/client",
                            "-n", _NET_NS, "--timeout=120s", timeout=140)
        assert "reached-the-server" in kubectl_run.kubectl("logs", "client", "-n", _NET_NS).stdout
        claim = _json("get", "pvc", "net-pvc", "-n", _NET_NS)
        assert claim["status"]["phase"] == "Bound"
        default = [sc["metadata"]["name"] for sc in _json("get", "storageclass")["items"]
                   if (sc["metadata"].get("annotations") or {}).get(
                       "storageclass.kubernetes.io/is-default-class") == "true"]
        assert claim["spec"]["storageClassName"] in default
    finally:
        kubectl_run.kubectl("delete", "namespace", _NET_NS, "--wait=false", check=False)


def test_nodes_run_the_pinned_kubernetes_with_fake_gpus(target):
    nodes = _json("get", "nodes")["items"]
    assert len(nodes) == 4
    # The learners' digest-pinned image, or on a maintainer machine the one built here.
    wanted = kind_maintainer_config.expected_kubernetes()
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {wanted}
    gpus = [int(n["status"]["allocatable"].get(kube_names.GPU_RESOURCE, "0")) for n in nodes]
    assert sum(gpus) == kind_lifecycle.TOTAL_FAKE_GPUS


def test_fake_gpu_patch_is_idempotent(target):
    first = kind_lifecycle.patch_fake_gpus()
    assert kind_lifecycle.patch_fake_gpus() == first


def test_volcano_admits_a_job_through_its_webhooks(target):
    out = kubectl_run.kubectl("create", "--dry-run=server", "-f", "-", "-o", "json",
                          input_text=json.dumps(kind_installs._VOLCANO_PROBE)).stdout
    job = json.loads(out)
    # The mutating webhook filled the defaults in.
    assert job["spec"]["queue"] == "default" and job["spec"]["maxRetry"] == 3


def test_training_operator_runs_with_the_volcano_gang_flag(target):
    dep = _json("get", "deployment", "training-operator", "-n", "kubeflow")
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--gang-scheduler-name=volcano" in command
    assert kind_installs.patch_training_operator() is False  # already there: nothing to do


def test_scheduling_pods_really_rendezvous_then_complete(target):
    """Lab 01's two 4-worker gangs under Volcano, on real containers: every worker waits for
    its peers' DNS names, says so, works its (scaled) WORK_SECONDS and exits 0."""
    from helpers.backend import scheduling_run
    from helpers.scheduling import make_nodes, scenario

    sc = scenario("two-jobs")
    result = scheduling_run.run(sc.paths("volcano"), make_nodes(sc.nodes, sc.node_gpus),
                                scheduler="volcano", backend=target, cleanup=False)
    api = kind_training.api_client(target)
    namespace = "kflabs-scheduling"
    try:
        assert result.metrics["jobs_completed"] == 2 and not result.gridlocked, result.summary()
        pods = k8s.pods(api, namespace)
        assert len(pods) == 8 and {p.status.phase for p in pods} == {"Succeeded"}, \
            [(p.metadata.name, p.status.phase) for p in pods]
        for pod in pods:
            log = k8s.pod_log(api, namespace, pod.metadata.name, 5)
            assert "rendezvous complete: 4 worker(s)" in log, (pod.metadata.name, log)
            assert "working for 3 s" in log, log  # its 120 s x the time scale 0.02, rounded up
    finally:
        k8s.delete_namespaces(api, [namespace], timeout=90, force_pods=True)
        target.release_nodes(api)
    assert sum(kind_lifecycle.patch_fake_gpus().values()) == kind_lifecycle.TOTAL_FAKE_GPUS


def test_kserve_defaults_to_standard_mode(target):
    cm = _json("get", "configmap", "inferenceservice-config", "-n", "kserve")
    assert json.loads(cm["data"]["deploy"])["defaultDeploymentMode"] == "Standard"
    assert kind_installs.configure_kserve_standard() is False


def test_train_on_the_cluster_serve_and_predict_v1_v2(target):
    from helpers.serving import isvc
    from helpers.serving.client import Endpoint

    run = kind_training.run_training_job(target, seed=42, timeout=900)
    summary = run.as_dict()
    assert run.succeeded, run.master_log
    assert summary["schedulers"] == ["volcano"], summary["pods"]
    assert len(run.pods) == 4 and run.podgroup_min_member == 4
    assert set(run.podgroup_phases) & {"Inqueue", "Running"}, run.podgroup_phases
    assert "saved model to /mnt/models/iris/model.json" in run.master_log
    # The 4 pods trained together: the Master's tracker saw the whole group join.
    assert distributed.group_formed_line(4, [0, 1, 2, 3]) in run.master_log, run.master_log
    assert "rank 0 of 4 (training-operator-v1)" in run.master_log

    doc = isvc.inference_service("iris", run.model_uri, protocol_version="v2")
    info = kind_serving.deploy_inference_service(doc, target, timeout=600)
    X, _, _, _ = training.load_iris()
    local = training.train(seed=42)
    want = np.argmax(local.model.predict_proba(X[:10]), axis=1)
    with kubectl_run.port_forward(info["predictor_service"], info["namespace"], 80,
                              target=target) as fwd:
        endpoint = Endpoint(fwd.url, "iris")
        assert endpoint.ready()
        for protocol in ("v1", "v2"):
            assert np.array_equal(endpoint.labels(X[:10], protocol), want), protocol
        endpoint.close()


def test_a_trainjob_gang_schedules_through_volcano_and_trains_onto_the_pvc(target):
    """Kubeflow Trainer v2: the kit's TrainJob (runtime with ``podGroupPolicy: volcano``)."""
    from helpers.backend.kind import trainer_v2 as kind_trainer_v2

    run = kind_trainer_v2.run_trainjob(target, seed=42, timeout=900)
    summary = run.as_dict()
    assert run.succeeded, run.master_log
    assert summary["schedulers"] == ["volcano"], summary["pods"]
    assert len(run.pods) == 4 and run.podgroup_min_member == 4, summary
    assert distributed.group_formed_line(4, [0, 1, 2, 3]) in run.master_log, run.master_log
    assert f"saved model to /mnt/models/{run.model_file}" in run.master_log, run.master_log
    kind_trainer_v2.delete_trainjob(target)


def test_a_model_trained_in_the_notebook_is_copied_onto_the_pvc(target, tmp_path):
    result = training.train(seed=42)
    saved = training.save_model(result.model, tmp_path, name="iris-local", fmt="json")
    uri = kind_serving.upload_model(saved.parent, target=target)
    assert uri == f"pvc://{kube_names.MODEL_PVC}/iris-local/"
    api = kind_training.api_client(target)
    # The loader pod is gone afterwards: only the model stays on the volume.
    k8s.wait_for(lambda: kind_serving._loader_phase(api) is None, 60, "the loader pod to be deleted")


def test_requests_survive_the_predictor_pod_being_deleted(target, tmp_path):
    """The fault: the predictor pod is deleted while requests flow; none of them is lost.

    The Deployment starts a new pod; until it is Ready the port-forward's kubectl ends
    (its pod is gone) and :class:`~helpers.kube.kubectl.PortForward` starts it again on the
    same local port, while :class:`~helpers.serving.client.Endpoint` retries refused
    connections and 503s. Every request must come back with the local model's labels.
    """
    import threading
    import time

    from helpers.serving import isvc
    from helpers.serving.client import Endpoint

    result = training.train(seed=42)
    saved = training.save_model(result.model, tmp_path, name="iris", fmt="json")
    uri = kind_serving.upload_model(saved.parent, target=target)
    info = kind_serving.deploy_inference_service(isvc.inference_service("iris", uri), target,
                                                 timeout=600)
    X, _, _, _ = training.load_iris()
    want = np.argmax(result.model.predict_proba(X[:5]), axis=1)
    api = kind_training.api_client(target)
    selector = "serving.kserve.io/inferenceservice=iris"

    def predictor_pods() -> list[str]:
        pods = k8s.pods(api, info["namespace"], selector)
        return sorted(p.metadata.name for p in pods if p.metadata.deletion_timestamp is None)

    before = predictor_pods()
    assert len(before) == 1, before
    answers, failures, stop = [], [], threading.Event()
    with kubectl_run.port_forward(info["predictor_service"], info["namespace"], 80,
                                  target=target) as fwd:
        endpoint = Endpoint(fwd.url, "iris", retries=12, retry_delay=1.0)

        def send() -> None:
            while not stop.is_set():
                try:
                    answers.append(endpoint.labels(X[:5], "v1"))
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failures.append(repr(exc))
                time.sleep(0.2)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        k8s.wait_for(lambda: len(answers) >= 5, 60, "requests to flow before the fault")
        served_before = len(answers)
        kubectl_run.kubectl("delete", "pod", before[0], "-n", info["namespace"], "--wait=false")
        k8s.wait_for(lambda: predictor_pods() and predictor_pods() != before, 180,
                     "the Deployment to start a new predictor pod")
        k8s.wait_for(lambda: len(answers) >= served_before + 20, 300,
                     "requests to be answered by the new predictor pod")
        stop.set()
        sender.join(timeout=60)
        restarts, retried = fwd.restarts, endpoint.retried
        endpoint.close()
    assert not failures, failures[:3]
    assert all(np.array_equal(a, want) for a in answers)
    # the fault really hit the path: the forward was restarted or the endpoint retried
    assert restarts + retried >= 1, (restarts, retried)


def test_cleanup_is_safe_twice(target):
    kind_serving.cleanup(target)
    kind_serving.cleanup(target)
    assert kind_serving.delete_inference_service() is False
    assert kind_training.delete_training_job() is False
