"""The kind backend's training and serving functions against a real API server: the Docker-less control plane.

kind cannot start here, but the local control plane (``make controlplane-build``) serves the
same API: the XGBoostJob and InferenceService CRDs (taken from the pinned Go modules at test
time) are installed on it, and then the functions the labs' kind branches call run for real:
the model PVC is created idempotently, the training job and InferenceService are accepted by
the server's strict field validation, the bounded waits give up with diagnostics when nothing
acts on them (no operator or KServe controller runs here), and every clean-up is safe twice.
Marked ``kwok``: skips with the reason when the control plane is not built.
"""

from __future__ import annotations

import pytest

from helpers import versions
from helpers.backend.kind import serving as kind_serving
from helpers.backend.kind import training as kind_training
from helpers.backend.kwok import build as kwok_build
from helpers.backend.kwok import nodes as kwok_nodes
from helpers.errors import BackendUnavailable, ManifestError
from helpers.kube import client as k8s
from helpers.kube import names as kube_names

pytestmark = [pytest.mark.kwok, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def api(request):
    """The run's control plane (tests/conftest.py) with the training and serving CRDs."""

    if not kwok_build.binaries_present():
        pytest.skip("the local control plane is not built: `make controlplane-build` (needs Go)")
    try:
        kserve = kwok_nodes.module_dir("github.com/kserve/kserve", versions.pin("kserve"))
        trainer = kwok_nodes.module_dir("github.com/kubeflow/training-operator",
                                          versions.pin("training_operator"))
    except BackendUnavailable as exc:
        pytest.skip(f"upstream CRDs unavailable: {exc}")
    info = request.getfixturevalue("kwok_controlplane")
    client = k8s.connect(info["kubeconfig"])
    k8s.apply_crds(client, [kserve / "config/crd/full/serving.kserve.io_inferenceservices.yaml",
                            trainer / "manifests/base/crds/kubeflow.org_xgboostjobs.yaml"])
    yield client
    k8s.delete_namespace(client, kube_names.MODEL_NAMESPACE, timeout=60)


def test_model_pvc_is_created_once_and_deleted_safely_twice(api):
    from kubernetes import client

    assert kind_training.ensure_model_pvc(api=api) == kube_names.MODEL_PVC
    assert kind_training.ensure_model_pvc(api=api) == kube_names.MODEL_PVC  # idempotent
    core = client.CoreV1Api(api)
    pvc = core.read_namespaced_persistent_volume_claim(kube_names.MODEL_PVC, kube_names.MODEL_NAMESPACE)
    assert pvc.spec.access_modes == ["ReadWriteOnce"]
    assert kind_training.delete_model_pvc(api=api) is True
    k8s.wait_for(lambda: not kind_serving._pvc_exists(api, kube_names.MODEL_NAMESPACE, kube_names.MODEL_PVC),
                 30, "the model PVC to be deleted")
    assert kind_training.delete_model_pvc(api=api) is False


def test_training_job_is_accepted_by_strict_server_validation(api):
    kind_training.ensure_model_pvc(api=api)
    job = kind_training.training_job_manifest("kflabs-train:test", seed=1, fmt="ubj")
    stored = k8s.apply(api, job, dry_run=True)
    assert stored["spec"]["xgbReplicaSpecs"]["Worker"]["replicas"] == 3


def test_training_wait_gives_up_with_diagnostics_when_no_operator_runs(api):
    with pytest.raises(k8s.WaitTimeout) as err:
        kind_training.run_training_job(api=api, image="kflabs-train:test", timeout=3)
    msg = str(err.value)
    assert f"XGBoostJob {kube_names.MODEL_NAMESPACE}/{kind_training.TRAINING_JOB} to finish" in msg
    assert f"state of namespace {kube_names.MODEL_NAMESPACE}" in msg
    assert kind_training.delete_training_job(api=api) is True
    assert kind_training.delete_training_job(api=api) is False


def test_inference_service_on_a_missing_pvc_is_refused_before_applying(api):
    from helpers.serving import isvc

    doc = isvc.inference_service("iris", isvc.pvc_uri("no-such-pvc", "iris"))
    with pytest.raises(ManifestError, match="no-such-pvc.*does not exist"):
        kind_serving.deploy_inference_service(doc, api=api, timeout=2)
    assert kind_serving.delete_inference_service(api=api) is False  # nothing was created


def test_inference_service_wait_gives_up_with_its_conditions(api):
    from helpers.serving import isvc

    kind_training.ensure_model_pvc(api=api)
    with pytest.raises(k8s.WaitTimeout) as err:
        kind_serving.deploy_inference_service(isvc.default_manifest(), api=api, timeout=2)
    msg = str(err.value)
    assert f"InferenceService {kube_names.MODEL_NAMESPACE}/iris to be Ready" in msg
    assert f"InferenceService {kube_names.MODEL_NAMESPACE}/iris conditions" in msg
    stored = k8s.get_custom(api, ("serving.kserve.io", "v1beta1", kube_names.MODEL_NAMESPACE,
                                       "inferenceservices", "iris"))
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "pvc://model-store/iris/"
    assert kind_serving.delete_inference_service(api=api) is True
    assert kind_serving.delete_inference_service(api=api) is False
