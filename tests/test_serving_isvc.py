"""InferenceService manifests: building, rendering, validation, and the committed YAML."""

from __future__ import annotations

import copy

import pytest
import yaml

from helpers import versions
from helpers.errors import ManifestError
from helpers.serving import isvc


@pytest.fixture(scope="module")
def manifest() -> dict:
    """The kit's default Iris InferenceService."""
    return isvc.default_manifest()


def test_default_manifest_shape(manifest):
    """apiVersion/kind, explicit namespace, Standard mode, xgbserver over V2 from a PVC."""
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "iris"
    assert manifest["metadata"]["namespace"] == isvc.DEFAULT_NAMESPACE
    assert manifest["metadata"]["annotations"][isvc.DEPLOYMENT_MODE_ANNOTATION] == "Standard"
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "xgboost"}
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == "kserve-xgbserver"
    assert model["storageUri"] == "pvc://model-store/iris/"
    assert "name" not in model  # the SDK's empty container name is dropped


def test_resources_fit_kind(manifest):
    """Smaller than the stock xgbserver's 1 cpu / 2Gi request."""
    from kubernetes.utils import parse_quantity

    res = manifest["spec"]["predictor"]["model"]["resources"]
    assert parse_quantity(res["requests"]["cpu"]) < 1
    assert parse_quantity(res["limits"]["memory"]) < parse_quantity("2Gi")


def test_render_round_trips_and_names_the_pin(manifest):
    """The YAML loads back to the same dict, and its header names the pinned KServe."""
    text = isvc.render_yaml(manifest)
    assert yaml.safe_load(text) == manifest
    assert versions.pin("kserve") in text.splitlines()[0]


def test_committed_manifest_is_the_rendered_one(manifest):
    """cluster/manifests/serving holds exactly what the builder renders (one source)."""
    path = isvc.manifest_path("iris")
    assert path.read_text() == isvc.render_yaml(manifest), (
        "re-render with: python -c 'from helpers.serving import isvc; "
        "isvc.write_manifest(isvc.default_manifest())'")
    assert isvc.load_yaml(path) == manifest


def test_onnx_manifest_uses_triton():
    """An ONNX model defaults to the Triton runtime (V2 only)."""
    doc = isvc.inference_service("iris-onnx", "s3://models-bucket/iris-onnx/", model_format="onnx")
    assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    with pytest.raises(ManifestError, match="speaks v2/grpc-v2, not v1"):
        isvc.inference_service("iris-onnx", "s3://models-bucket/x/", model_format="onnx",
                               protocol_version="v1")


def _broken(manifest: dict, path: str, value) -> dict:
    doc = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
M = "spec.predictor.model"
BROKEN = [
    ("typo-field", f"{M}.storageURI", "pvc://a/b/", "did you mean 'storageUri'"),
    ("wrong-type", f"{M}.modelFormat", "xgboost", "expected an object"),
    ("no-format", f"{M}.modelFormat", _DELETE, "model_format"),
    ("bad-name", "metadata.name", "Iris_Model", "DNS-1035"),
    ("no-namespace", "metadata.namespace", _DELETE, "namespace"),
    ("bad-format", f"{M}.modelFormat.name", "pytorch", "expected one of"),
    ("bad-protocol", f"{M}.protocolVersion", "v3", "protocolVersion"),
    ("runtime-format", f"{M}.runtime", "kserve-tritonserver", "does not serve xgboost"),
    ("unknown-runtime", f"{M}.runtime", "my-runtime", "not a runtime the kit knows"),
    ("mlserver-v1", f"{M}.protocolVersion", "v1", None),  # fine with xgbserver
    ("bad-scheme", f"{M}.storageUri", "ftp://host/iris/", "scheme 'ftp'"),
    ("bad-pvc", f"{M}.storageUri", "pvc://Model_Store/iris/", "DNS-1123 PVC name"),
    ("bad-bucket", f"{M}.storageUri", "s3://x/iris", "bucket"),
    ("relative-file", f"{M}.storageUri", "file://models/iris", "file:///"),
    ("no-uri", f"{M}.storageUri", _DELETE, "storageUri: missing"),
    ("bad-quantity", f"{M}.resources.requests.memory", "lots", "not a Kubernetes quantity"),
    ("too-big-for-kind", f"{M}.resources.requests.cpu", "4", "kind node"),
    ("bad-mode", "metadata.annotations", {isvc.DEPLOYMENT_MODE_ANNOTATION: "Fast"}, "Fast"),
    ("unknown-top", "spex", {}, "unknown top-level field"),
    ("wrong-kind", "kind", "Deployment", "expected 'InferenceService'"),
]


@pytest.mark.parametrize(("path", "value", "message"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_validation_names_the_problem(manifest, path, value, message):
    """Each broken manifest is refused with its field path; a valid variant passes."""
    doc = _broken(manifest, path, value)
    if message is None:
        assert isvc.validate(doc) == doc
        return
    with pytest.raises(ManifestError) as info:
        isvc.validate(doc)
    assert message in str(info.value)


def test_all_problems_reported_together(manifest):
    """Several mistakes -> one error listing each of them."""
    doc = _broken(_broken(manifest, "metadata.name", "X"), f"{M}.protocolVersion", "v9")
    with pytest.raises(ManifestError) as info:
        isvc.validate(doc)
    assert "metadata.name" in str(info.value) and "v9" in str(info.value)


def test_real_cluster_may_ask_for_more(manifest):
    """for_kind=False lifts the kind budget only."""
    doc = _broken(manifest, f"{M}.resources.requests.cpu", "1")
    doc = _broken(doc, f"{M}.resources.limits.cpu", "4")
    doc["spec"]["predictor"]["model"]["resources"]["requests"]["memory"] = "2Gi"
    doc["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] = "2Gi"
    with pytest.raises(ManifestError, match="kind node"):
        isvc.validate(doc)
    assert isvc.validate(doc, for_kind=False) == doc


@pytest.mark.parametrize("uri", ["pvc://model-store/iris/", "pvc://xgboostlocal",
                                 "gs://kfserving-examples/models/xgboost/iris",
                                 "s3://my-bucket/iris/", "https://example.com/iris/model.json",
                                 "hdfs://namenode/models/iris", "webhdfs://namenode/iris",
                                 "file:///mnt/models/iris", "hf://org/iris-xgb",
                                 "oci://registry.local/models/iris:1"])
def test_storage_uri_schemes_accepted(manifest, uri):
    """Every scheme KServe's storage initializer reads is accepted when well formed."""
    assert isvc.validate(_broken(manifest, f"{M}.storageUri", uri))


def test_pvc_uri_helper():
    """pvc_uri builds pvc://<pvc>/<path>/ and refuses a bad PVC name."""
    assert isvc.pvc_uri("model-store", "iris") == "pvc://model-store/iris/"
    assert isvc.pvc_uri("xgboostlocal", "") == "pvc://xgboostlocal"
    with pytest.raises(ManifestError):
        isvc.pvc_uri("Bad_PVC", "iris")


def test_load_yaml_refuses_missing_and_multi_doc(tmp_path):
    """load_yaml: clear errors for a missing file and for several documents."""
    with pytest.raises(ManifestError, match="does not exist"):
        isvc.load_yaml(tmp_path / "nope.yaml")
    two = tmp_path / "two.yaml"
    two.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(ManifestError, match="2 YAML documents"):
        isvc.load_yaml(two)


def test_sdk_version_must_match_the_pin(manifest, monkeypatch):
    """Validating with an SDK other than the pinned KServe release is itself a problem."""
    monkeypatch.setattr(isvc, "_sdk_version", lambda: "0.11.0")
    with pytest.raises(ManifestError, match="pins KServe"):
        isvc.validate(manifest)


def test_sdk_import_leaves_kubernetes_validate_importable():
    """isvc keeps kubernetes_validate out of kserve's import only, not out of the process."""
    import subprocess
    import sys

    code = ("import sys; from helpers.serving import isvc; isvc.default_manifest(); "
            "assert 'kubernetes_validate' not in sys.modules; "
            "import kubernetes_validate; print(kubernetes_validate.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "kubernetes_validate"
