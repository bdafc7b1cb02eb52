"""Build, render and validate KServe ``InferenceService`` manifests (serving.kserve.io/v1beta1).

An InferenceService is to a model what a Pod is to a container: it names the model's
format, where its files live (``storageUri``) and the runtime that serves them, and KServe
creates the Deployment, Service and routing. :func:`inference_service` builds one from
the kserve SDK's own model classes (so field names are the SDK's, e.g.
``protocolVersion``), :func:`validate` checks a manifest *before* anything is submitted,
and :func:`render_yaml` writes it the way ``kubectl apply -f`` reads it.

Validation has two layers:

1. **Schema**: every field is parsed into the kserve SDK's ``V1beta1...`` classes (and the
   Kubernetes client's for ``metadata`` and ``resources``), matching the pinned KServe
   release (``helpers.versions.pin("kserve")``). An unknown field (a typo such as
   ``storageURI``), a wrong type or a missing required field is reported with its path.
2. **Semantics** the schema cannot express: name syntax, a supported model format, a
   runtime that serves that format over that protocol, a well-formed ``storageUri`` for
   its scheme, and resource requests that fit a kind node.

All problems are collected and raised together as one :class:`~helpers.errors.ManifestError`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import yaml

from helpers import paths, versions
from helpers.errors import ManifestError, yaml_problem
from helpers.kube.names import DNS1035_LABEL as _DNS1035_LABEL
from helpers.kube.names import DNS1123_LABEL as _DNS1123_LABEL
from helpers.kube.names import MODEL_NAMESPACE

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
#: The namespace the serving manifests use (like kflabs-scheduling for the scheduling labs).
DEFAULT_NAMESPACE = MODEL_NAMESPACE
#: KServe's deployment-mode annotation; Standard (formerly RawDeployment) needs no Knative.
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODES = ("Standard", "Knative", "RawDeployment", "Serverless", "ModelMesh")

#: Which runtime serves which format over which protocols (KServe's ClusterServingRuntimes).
RUNTIMES: dict[str, dict[str, tuple[str, ...]]] = {
    "kserve-xgbserver": {"formats": ("xgboost",), "protocols": ("v1", "v2")},
    "kserve-mlserver": {"formats": ("xgboost",), "protocols": ("v2",)},
    "kserve-tritonserver": {"formats": ("onnx",), "protocols": ("v2", "grpc-v2")},
}
#: The runtime chosen when none is given, per format.
DEFAULT_RUNTIME = {"xgboost": "kserve-xgbserver", "onnx": "kserve-tritonserver"}
MODEL_FORMATS = tuple(DEFAULT_RUNTIME)
PROTOCOLS = ("v1", "v2", "grpc-v2")

#: Small enough for a kind node shared with Volcano and the Training Operator. The stock
#: kserve-xgbserver asks for (and limits to) 1 cpu / 2Gi, which a laptop cluster may lack.
KIND_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
#: The most a single predictor may request on kind (checked when ``for_kind=True``).
KIND_BUDGET = {"cpu": "1", "memory": "1Gi"}

STORAGE_SCHEMES = ("pvc", "gs", "s3", "hdfs", "webhdfs", "http", "https", "file", "hf", "oci")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def _sdk() -> ModuleType:
    """Import and return the ``kserve`` SDK, leaving out an optional import nothing here uses.

    Importing ``kserve`` imports the Kubernetes *dynamic* client, which imports
    ``kubernetes_validate`` - and through it jsonschema's format checkers, about 3 s of a
    notebook's start - whenever that package is installed (it is a test dependency here).
    The kit never uses the dynamic client's validation, so that one optional import is kept
    out while kserve loads (the dynamic client then simply reports validation unavailable),
    and ``kubernetes_validate`` itself stays importable afterwards for anyone who wants it.
    """
    if "kserve" in sys.modules:
        return sys.modules["kserve"]
    keep_out = "kubernetes_validate" not in sys.modules and "kubernetes.dynamic" not in sys.modules
    if keep_out:
        sys.modules["kubernetes_validate"] = None  # a None entry makes `import` fail cleanly
    try:
        import kserve
    finally:
        if keep_out and sys.modules.get("kubernetes_validate", "") is None:
            del sys.modules["kubernetes_validate"]
    return kserve


def pvc_uri(pvc: str, path: str = "iris") -> str:
    """The ``storageUri`` of a folder on a PVC: ``pvc://<pvc>/<path>/``.

    KServe's storage initializer mounts the PVC and serves ``<path>`` as ``/mnt/models``.
    """
    problems = _check_storage_uri(f"pvc://{pvc}/{path.strip('/')}/" if path else f"pvc://{pvc}")
    if problems:
        raise ManifestError("; ".join(problems))
    return f"pvc://{pvc}/{path.strip('/')}/" if path.strip("/") else f"pvc://{pvc}"


def parse_pvc_uri(uri: str) -> tuple[str, str]:
    """``pvc://<pvc>/<path>/`` -> ``(pvc, path)``: the one place a ``pvc://`` URI is read.

    Raises:
        ManifestError: not a well-formed ``pvc://`` URI (the kit's model store, a local folder
            on sim and the PVC on kind, holds only those; nothing local stands in for a bucket).
    """
    parsed = urlparse(uri) if isinstance(uri, str) else None
    if parsed is None or parsed.scheme != "pvc":
        raise ManifestError(f"storageUri {uri!r}: only pvc:// URIs map to the kit's model store "
                            "(a local folder on sim, the PVC on kind); use "
                            "isvc.pvc_uri(<pvc>, <path>)")
    problems = _check_storage_uri(uri)
    if problems:
        raise ManifestError("; ".join(problems))
    return parsed.netloc, parsed.path.strip("/")


def storage_uri_of(manifest: Mapping[str, Any]) -> str:
    """The ``spec.predictor.model.storageUri`` of an InferenceService manifest."""
    return manifest["spec"]["predictor"]["model"]["storageUri"]


def inference_service(name: str, storage_uri: str, *, namespace: str = DEFAULT_NAMESPACE,  # noqa: PLR0913 - keyword-only InferenceService fields
                      model_format: str = "xgboost", runtime: str | None = "default",
                      protocol_version: str | None = "v2",
                      resources: Mapping[str, Mapping[str, str]] | None = None,
                      deployment_mode: str | None = "Standard",
                      labels: Mapping[str, str] | None = None, for_kind: bool = True) -> dict:
    """Build a validated InferenceService manifest as a plain dict.

    Args:
        name: the InferenceService (and served model) name; a DNS-1035 label.
        storage_uri: where the model directory lives, e.g. ``pvc://model-store/iris/``.
        namespace: the namespace to create it in (explicit: no reliance on kubectl's).
        model_format: ``xgboost`` or ``onnx``.
        runtime: a ServingRuntime name; ``"default"`` picks :data:`DEFAULT_RUNTIME` for the
            format; ``None`` leaves the choice to KServe (for V2 xgboost it picks MLServer).
        protocol_version: ``v1``, ``v2`` or ``grpc-v2``; ``None`` omits it (KServe: v1).
        resources: ``{"requests": {...}, "limits": {...}}``; default :data:`KIND_RESOURCES`.
        deployment_mode: the ``serving.kserve.io/deploymentMode`` annotation, or ``None``.
        labels: extra metadata labels.
        for_kind: also check the resources fit :data:`KIND_BUDGET`.

    Returns:
        The manifest, ready for :func:`render_yaml` or the Kubernetes API.

    Raises:
        ManifestError: every problem found, one per line.
    """
    kserve = _sdk()
    from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

    if runtime == "default":
        runtime = DEFAULT_RUNTIME.get(model_format)
    res = dict(resources) if resources is not None else KIND_RESOURCES
    annotations = {DEPLOYMENT_MODE_ANNOTATION: deployment_mode} if deployment_mode else None
    all_labels = {"app.kubernetes.io/part-of": "kflabs-serving", **(labels or {})}
    obj = kserve.V1beta1InferenceService(
        api_version=API_VERSION, kind=KIND,
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels=all_labels,
                              annotations=annotations),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=kserve.V1beta1PredictorSpec(
            model=kserve.V1beta1ModelSpec(
                model_format=kserve.V1beta1ModelFormat(name=model_format),
                protocol_version=protocol_version, runtime=runtime, storage_uri=storage_uri,
                resources=V1ResourceRequirements(requests=dict(res.get("requests", {})),
                                                  limits=dict(res.get("limits", {})))),
        )),
    )
    doc = _sanitize(obj)
    validate(doc, for_kind=for_kind)
    return doc


def _sanitize(obj: Any) -> dict:
    doc = _sdk().ApiClient().sanitize_for_serialization(obj)
    model = doc.get("spec", {}).get("predictor", {}).get("model", {})
    # V1beta1ModelSpec carries a container `name` defaulting to "": meaningless here, and
    # an empty string in a manifest only raises questions.
    if model.get("name") == "":
        del model["name"]
    # Read top-down like the upstream examples: identity first, then what is served.
    order = ["name", "namespace", "labels", "annotations", "modelFormat", "protocolVersion",
             "runtime", "storageUri", "resources", "requests", "limits"]
    return _ordered(doc, order)


def _ordered(value: Any, order: list[str]) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (order.index(k) if k in order else len(order), ""))
        return {k: _ordered(value[k], order) for k in keys}
    if isinstance(value, list):
        return [_ordered(v, order) for v in value]
    return value


# -- validation -----------------------------------------------------------------------

def validate(doc: Mapping[str, Any], for_kind: bool = True) -> dict:
    """Check an InferenceService manifest against the SDK schema and the kit's rules.

    Args:
        doc: the manifest (as loaded from YAML).
        for_kind: also check the predictor's resources fit :data:`KIND_BUDGET`.

    Returns:
        ``doc`` as a plain dict, unchanged.

    Raises:
        ManifestError: all problems found, each naming the field path and the fix.
    """
    if not isinstance(doc, Mapping):
        raise ManifestError(f"an InferenceService manifest must be a mapping, got "
                            f"{type(doc).__name__}")
    doc = json.loads(json.dumps(doc))  # plain dicts/lists, and proof it is JSON-serialisable
    problems = schema_problems(doc) + semantic_problems(doc, for_kind=for_kind)
    if problems:
        name = (doc.get("metadata") or {}).get("name", "<unnamed>")
        raise ManifestError(f"InferenceService {name!r} is not valid (checked against the "
                            f"KServe {versions.pin('kserve')} SDK schema and the kit's rules):\n- "
                            + "\n- ".join(problems))
    return doc


def schema_problems(doc: Mapping[str, Any]) -> list[str]:
    """Parse ``doc`` into the kserve SDK classes; return every schema problem found."""
    problems: list[str] = []
    sdk, pinned = _sdk_version(), versions.pin("kserve").lstrip("v")
    if sdk != pinned:
        problems.append(f"the installed kserve SDK is {sdk} but cluster/versions.yaml pins KServe "
                        f"{pinned}: the schema checked would not be the cluster's (run make setup)")
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: {doc.get('apiVersion')!r}, expected {API_VERSION!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind: {doc.get('kind')!r}, expected {KIND!r}")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    problems += [f"{key}: unknown top-level field" for key in unknown]
    if "metadata" not in doc:
        problems.append("metadata: missing (needs at least a name)")
    else:
        _parse(doc["metadata"], "V1ObjectMeta", "metadata", problems)
    if "spec" not in doc:
        problems.append("spec: missing (needs spec.predictor)")
    else:
        _parse(doc["spec"], "V1beta1InferenceServiceSpec", "spec", problems)
    return problems


def _sdk_version() -> str:
    from importlib.metadata import version

    return version("kserve")


_PRIMITIVES = {"str": (str, int, float), "int": (int,), "float": (int, float), "bool": (bool,),
               "object": (object,), "datetime": (str,), "date": (str,)}


def _resolve_class(type_name: str) -> Any:
    import kubernetes.client.models

    return getattr(_sdk().models, type_name, None) or getattr(kubernetes.client.models,
                                                               type_name, None)


def _parse(data: Any, type_name: str, path: str, problems: list[str]) -> Any:
    """Build the SDK object for ``data``; append a message per unknown/mistyped field."""
    if data is None:
        return None
    if type_name.startswith("list["):
        if not isinstance(data, list):
            problems.append(f"{path}: expected a list, got {type(data).__name__}")
            return None
        return [_parse(v, type_name[5:-1], f"{path}[{i}]", problems) for i, v in enumerate(data)]
    if type_name.startswith("dict("):
        if not isinstance(data, dict):
            problems.append(f"{path}: expected a mapping, got {type(data).__name__}")
            return None
        value_type = type_name[5:-1].split(", ", 1)[1]
        return {k: _parse(v, value_type, f"{path}.{k}", problems) for k, v in data.items()}
    if type_name in _PRIMITIVES:
        wanted = _PRIMITIVES[type_name]
        if isinstance(data, bool) and bool not in wanted and object not in wanted or \
                not isinstance(data, wanted):
            problems.append(f"{path}: expected {type_name}, got {type(data).__name__} {data!r}")
        return data
    klass = _resolve_class(type_name)
    if klass is None:  # a type neither SDK defines: nothing more to check
        return data
    if not isinstance(data, dict):
        problems.append(f"{path}: expected an object ({type_name}), got {type(data).__name__}")
        return None
    by_json_key = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        if key not in by_json_key:
            close = [k for k in by_json_key if k.lower() == key.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{path}.{key}: unknown field for {type_name}{hint}")
            continue
        attr = by_json_key[key]
        kwargs[attr] = _parse(value, klass.openapi_types[attr], f"{path}.{key}", problems)
    try:
        return klass(**kwargs)  # the SDK's client-side validation: required fields
    except (ValueError, TypeError) as exc:
        problems.append(f"{path}: {exc}")
        return None


def semantic_problems(doc: Mapping[str, Any], for_kind: bool = True) -> list[str]:
    """The kit's rules the schema cannot express (names, formats, runtimes, URIs, sizes)."""
    problems: list[str] = []
    meta = _mapping(doc.get("metadata"))
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not _DNS1035_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name: {name!r} must be a DNS-1035 label (lower-case letters, "
                        "digits and '-', starting with a letter, at most 63 characters)")
    if not isinstance(namespace, str) or not _DNS1123_LABEL.match(namespace):
        problems.append(f"metadata.namespace: {namespace!r} must be set explicitly to a DNS-1123 "
                        f"label, e.g. {DEFAULT_NAMESPACE!r}")
    mode = _mapping(meta.get("annotations")).get(DEPLOYMENT_MODE_ANNOTATION)
    if mode is not None and mode not in DEPLOYMENT_MODES:
        problems.append(f"metadata.annotations.{DEPLOYMENT_MODE_ANNOTATION}: {mode!r}, expected "
                        f"one of {list(DEPLOYMENT_MODES)}")
    # Wrongly typed parts were reported by the schema layer; read them as empty here.
    predictor = _mapping(_mapping(doc.get("spec")).get("predictor"))
    legacy = [k for k in ("xgboost", "onnx", "sklearn", "triton") if k in predictor]
    if legacy and "model" not in predictor:
        problems.append(f"spec.predictor.{legacy[0]}: the per-framework form is deprecated; use "
                        "spec.predictor.model with modelFormat.name")
        return problems
    model = predictor.get("model")
    if not isinstance(model, dict):
        problems.append("spec.predictor.model: missing (modelFormat, storageUri, runtime)")
        return problems
    fmt = _mapping(model.get("modelFormat")).get("name")
    if fmt not in MODEL_FORMATS:
        problems.append(f"spec.predictor.model.modelFormat.name: {fmt!r}, expected one of "
                        f"{list(MODEL_FORMATS)}")
    protocol = model.get("protocolVersion", "v1")
    if protocol not in PROTOCOLS:
        problems.append(f"spec.predictor.model.protocolVersion: {protocol!r}, expected one of "
                        f"{list(PROTOCOLS)}")
    runtime = model.get("runtime")
    if runtime is not None:
        spec = RUNTIMES.get(runtime)
        if spec is None:
            problems.append(f"spec.predictor.model.runtime: {runtime!r} is not a runtime the kit "
                            f"knows ({', '.join(RUNTIMES)}); leave it out to let KServe choose")
        else:
            if fmt in MODEL_FORMATS and fmt not in spec["formats"]:
                problems.append(f"spec.predictor.model.runtime: {runtime} does not serve {fmt} "
                                f"(use {DEFAULT_RUNTIME[fmt]})")
            if protocol in PROTOCOLS and protocol not in spec["protocols"]:
                problems.append(f"spec.predictor.model.protocolVersion: {runtime} speaks "
                                f"{'/'.join(spec['protocols'])}, not {protocol}")
    uri = model.get("storageUri")
    if not uri:
        problems.append("spec.predictor.model.storageUri: missing, e.g. pvc://model-store/iris/")
    else:
        problems += [f"spec.predictor.model.storageUri: {p}" for p in _check_storage_uri(uri)]
    problems += _check_resources(_mapping(model.get("resources")), for_kind)
    return problems


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _check_storage_uri(uri: Any) -> list[str]:
    """Problems with a ``storageUri`` (empty list when it is well formed)."""
    if not isinstance(uri, str):
        return [f"{uri!r} must be a string"]
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme not in STORAGE_SCHEMES:
        return [f"{uri!r}: scheme {scheme or '(none)'!r} is not one KServe's storage initializer "
                f"reads ({', '.join(s + '://' for s in STORAGE_SCHEMES)})"]
    if scheme == "pvc":
        if not _DNS1123_LABEL.match(parsed.netloc or "") or len(parsed.netloc) > 63:
            return [f"{uri!r}: expected pvc://<pvc-name>/<path>/ with a DNS-1123 PVC name"]
        if ".." in parsed.path.split("/"):
            return [f"{uri!r}: '..' is not allowed in the path inside the PVC"]
    elif scheme in ("gs", "s3"):
        if not _BUCKET.match(parsed.netloc or ""):
            return [f"{uri!r}: expected {scheme}://<bucket>/<path> with a valid bucket name"]
    elif scheme in ("http", "https", "hdfs", "webhdfs"):
        if not parsed.netloc:
            return [f"{uri!r}: expected {scheme}://<host>/<path>"]
    elif scheme == "file":
        if parsed.netloc or not parsed.path.startswith("/"):
            return [f"{uri!r}: expected file:///absolute/path"]
    elif scheme in ("hf", "oci"):
        if not parsed.netloc or not parsed.path.strip("/"):
            example = "hf://<org>/<repo>" if scheme == "hf" else "oci://<registry>/<image>:<tag>"
            return [f"{uri!r}: expected {example}"]
    return []


def _check_resources(resources: Any, for_kind: bool) -> list[str]:
    from kubernetes.utils import parse_quantity

    if not isinstance(resources, dict):
        return []  # the schema layer reports the type
    problems: list[str] = []
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("requests", "limits"):
        for key, value in _mapping(resources.get(section)).items():
            try:
                parsed.setdefault(section, {})[key] = parse_quantity(value)
            except ValueError:
                problems.append(f"spec.predictor.model.resources.{section}.{key}: {value!r} is not "
                                "a Kubernetes quantity (e.g. 100m, 1, 256Mi)")
    requests, limits = parsed.get("requests", {}), parsed.get("limits", {})
    for key in set(requests) & set(limits):
        if requests[key] > limits[key]:
            problems.append(f"spec.predictor.model.resources: requests.{key} exceeds limits.{key}")
    if for_kind:
        for key, budget in KIND_BUDGET.items():
            asked = requests.get(key, limits.get(key))
            if asked is not None and asked > parse_quantity(budget):
                problems.append(f"spec.predictor.model.resources.requests.{key}: asks for more than "
                                f"a kind node can spare ({budget}); lower it, or pass "
                                "for_kind=False for a real cluster")
    return problems


# -- YAML -----------------------------------------------------------------------------

def render_yaml(doc: Mapping[str, Any]) -> str:
    """The manifest as YAML, with a header naming the KServe release it targets."""
    header = (f"# InferenceService rendered by helpers.serving.isvc for KServe "
              f"{versions.pin('kserve')}.\n# Apply with: kubectl apply -f <this file>\n")
    return header + yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)


def load_yaml(path: str | Path) -> dict:
    """Read one InferenceService manifest from a YAML file and validate it.

    Raises:
        ManifestError: the file is missing, not a single YAML document, or not valid.
    """
    target = paths.resolve(path)
    if not target.is_file():
        raise ManifestError(f"{target} does not exist: render it with "
                            "helpers.serving.isvc.write_manifest()")
    try:
        docs = [d for d in yaml.safe_load_all(target.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{target} is not valid YAML: {yaml_problem(exc)}") from None
    if len(docs) != 1:
        raise ManifestError(f"{target} holds {len(docs)} YAML documents: expected one "
                            "InferenceService")
    return validate(docs[0], for_kind=False)


def manifest_path(name: str = "iris") -> Path:
    """Where the kit keeps the rendered manifest: ``cluster/manifests/serving/<name>-isvc.yaml``."""
    return paths.manifests_dir("serving") / f"{name}-inferenceservice.yaml"


def default_manifest() -> dict:
    """The kit's InferenceService for the Iris model on the cluster's model-store PVC."""
    return inference_service("iris", pvc_uri("model-store", "iris"))


def write_manifest(doc: Mapping[str, Any], path: str | Path | None = None) -> Path:
    """Validate ``doc`` and write it as YAML (default :func:`manifest_path`)."""
    validate(doc, for_kind=False)
    meta = doc.get("metadata") or {}
    target = paths.resolve(path) if path else manifest_path(str(meta.get("name", "model")))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_yaml(doc))
    return target
