"""Static checks of every manifest and rendered object, with no cluster and no Docker.

* Core Kubernetes objects validate against the Kubernetes JSON schemas of the pinned minor
  (kubernetes-validate, strict: unknown fields are errors).
* Volcano, KServe, Training Operator, Trainer v2 and JobSet objects validate against the CRD
  schemas those projects publish, taken at test time from their Go modules at the pinned versions (the
  module proxy, through ``helpers.backend.kwok.nodes.module_dir``); nothing upstream is committed.
  Without Go (or the proxy) these tests skip and say why.
* The kind config is checked against the pins in ``cluster/versions.yaml``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from helpers import backend, paths, versions
from helpers.backend.kind import installs as kind_installs
from helpers.backend.kind import lifecycle as kind_lifecycle
from helpers.backend.kind import serving as kind_serving
from helpers.backend.kind import training as kind_training
from helpers.backend.kwok import nodes as kwok_nodes
from helpers.backend.kwok import supervisor as kwok_supervisor
from helpers.errors import BackendUnavailable
from helpers.kube import names as kube_names

KIND_CONFIG = paths.cluster_dir() / "kind" / "kind-config.yaml"
#: Tool configuration, not API objects (kind's config, kwok's stages, scheduler config).
TOOL_CONFIG_GROUPS = ("kind.x-k8s.io/", "config.kwok.x-k8s.io/", "kwok.x-k8s.io/")
#: Where each upstream project's CRDs live inside its Go module.
CRD_SOURCES = {
    "volcano": ("volcano.sh/volcano", "config/crd/volcano/bases"),
    "kserve": ("github.com/kserve/kserve", "config/crd/full"),
    "training_operator": ("github.com/kubeflow/training-operator", "manifests/base/crds"),
    "trainer": ("github.com/kubeflow/trainer/v2", "manifests/base/crds"),
    "jobset": ("sigs.k8s.io/jobset", "config/components/crd/bases"),
}


# --------------------------------------------------------------------------- the manifests
def manifest_documents() -> list[tuple[str, dict]]:
    """Every Kubernetes object under cluster/ (manifests, kind and control-plane configs)."""
    docs = []
    for path in sorted(paths.cluster_dir().rglob("*.y*ml")):
        rel = path.relative_to(paths.ROOT)
        if any(part.startswith(".") for part in rel.parts) or path.name == "versions.yaml":
            continue
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc and not str(
                    doc["apiVersion"]).startswith(TOOL_CONFIG_GROUPS):
                docs.append((f"{rel}#{i}", doc))
    return docs


def rendered_objects() -> list[tuple[str, dict]]:
    """Objects the helpers build at run time, as the cluster will receive them."""
    from helpers.serving import isvc

    job = kind_training.training_job_manifest("kflabs-train:0123456789ab", seed=7, fmt="ubj",
                                        model_name="iris", n_estimators=5)
    return [
        ("kind_training.training_job_manifest", job),
        ("kind_training.model_pvc_manifest", kind_training.model_pvc_manifest()),
        ("kind_serving.loader_pod_manifest", kind_serving.loader_pod_manifest("kflabs-train:0123456789ab")),
        ("cluster Volcano webhook probe", kind_installs._VOLCANO_PROBE),
        ("isvc.default_manifest", isvc.default_manifest()),
        ("isvc v1 manifest", isvc.inference_service("iris-v1", isvc.pvc_uri("model-store", "iris"),
                                                    protocol_version="v1")),
    ]


def is_core(doc: dict) -> bool:
    """Kinds served by Kubernetes itself (validated with its own schemas)."""
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def k8s_schema_version() -> str:
    """kubernetes-validate's schema set for the pinned Kubernetes minor (e.g. 1.35.0)."""
    v = Version(versions.pin("kubernetes"))
    return f"{v.major}.{v.minor}.0"


# --------------------------------------------------------------------------- CRD schemas
def _strict(schema: dict) -> dict:
    """Turn a CRD's structural schema into a strict one: unknown fields are errors.

    The API server prunes unknown fields silently (or rejects them with strict field
    validation, as helpers.kube.client.apply asks); a typo must fail here too.
    """
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is ObjectMeta, checked by the API server itself, not by the CRD schema.
    if "metadata" in schema.get("properties", {}):
        schema["properties"]["metadata"] = {"type": "object"}
    return schema


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict]:
    """``{(apiVersion, kind): strict openAPIV3Schema}`` from the pinned upstream modules."""

    schemas: dict[tuple[str, str], dict] = {}
    for pin_name, (module, folder) in CRD_SOURCES.items():
        try:
            root = kwok_nodes.module_dir(module, versions.pin(pin_name))
        except BackendUnavailable as exc:
            pytest.skip(f"upstream CRDs unavailable (needs Go and the module proxy): {exc}")
        files = sorted((root / folder).glob("*.yaml"))
        assert files, f"no CRDs in {module}@{versions.pin(pin_name)}/{folder}"
        for path in files:
            # libyaml: the CRDs are megabytes of YAML.
            for crd in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
                if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for ver in spec["versions"]:
                    schema = (ver.get("schema") or {}).get("openAPIV3Schema")
                    if schema:
                        schemas[(f"{spec['group']}/{ver['name']}", spec["names"]["kind"])] = \
                            _strict(schema)
    return schemas


def crd_errors(schemas: dict, doc: dict) -> list[str]:
    """Every schema violation of ``doc`` (empty when it is valid)."""
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no published CRD schema for {key}"
    validator = jsonschema.Draft7Validator(schemas[key])
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]


# --------------------------------------------------------------------------- tests: kind
def test_kind_config_is_one_control_plane_and_three_workers_on_the_pinned_image():
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == backend.KIND_CLUSTER_NAME
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    pin = versions.pin("kind_node_image")
    assert {n["image"] for n in config["nodes"]} == {pin}, "kind-config drifted from versions.yaml"
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    assert all(n["labels"][kind_lifecycle.FAKE_GPU_LABEL] == "true" for n in workers)


def test_node_image_is_pinned_by_digest_inside_volcano_and_kserve_ranges():
    image = versions.pin("kind_node_image")
    match = re.fullmatch(r"kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", image)
    assert match, f"node image {image!r} must be kindest/node:vX.Y.Z@sha256:<64 hex>"
    k8s = Version(match.group(1))
    # Volcano v1.15 supports Kubernetes 1.24-1.35; KServe's Standard mode needs >= 1.32.
    assert Version("1.32") <= k8s < Version("1.36"), k8s
    assert (k8s.major, k8s.minor) == (Version(versions.pin("kubernetes")).major,
                                      Version(versions.pin("kubernetes")).minor)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", versions.pin("kind"))


def test_training_namespace_and_pvc_match_the_serving_builder():
    from helpers.serving import isvc

    pvc = kind_training.model_pvc_manifest()
    assert pvc["metadata"]["namespace"] == isvc.DEFAULT_NAMESPACE == kube_names.MODEL_NAMESPACE
    uri = isvc.default_manifest()["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith(f"pvc://{pvc['metadata']['name']}/"), uri
    job = kind_training.training_job_manifest("img:1")
    assert job["metadata"]["namespace"] == kube_names.MODEL_NAMESPACE


def test_training_job_is_gang_scheduled_through_the_operator_not_the_manifest():
    job = kind_training.training_job_manifest("kflabs-train:abc", seed=3, fmt="json")
    specs = job["spec"]["xgbReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    total = sum(s["replicas"] for s in specs.values())
    assert job["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == total
    for role, spec in specs.items():
        pod = spec["template"]["spec"]
        # The operator (--gang-scheduler-name=volcano) sets schedulerName; the manifest must not.
        assert "schedulerName" not in pod, role
        (container,) = pod["containers"]
        assert container["name"] == "xgboost"
        assert container["image"] == "kflabs-train:abc"
        assert container["imagePullPolicy"] == "Never"
        assert container["command"] == ["python", "-m", "helpers.train"]
        assert container["args"][:4] == ["--output-dir", "/mnt/models", "--seed", "3"]
    master_volumes = specs["Master"]["template"]["spec"]["volumes"]
    assert master_volumes == [{"name": "model-store",
                               "persistentVolumeClaim": {"claimName": kube_names.MODEL_PVC}}]
    assert "emptyDir" in specs["Worker"]["template"]["spec"]["volumes"][0]


def test_training_job_arguments_are_what_helpers_train_accepts():
    from helpers import train

    job = kind_training.training_job_manifest("img:1", seed=11, fmt="ubj", model_name="iris",
                                        n_estimators=4)
    args = job["spec"]["xgbReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    parsed = train.build_parser().parse_args(args)
    assert (parsed.output_dir, parsed.seed, parsed.fmt, parsed.name, parsed.n_estimators) == (
        "/mnt/models", 11, "ubj", "iris", 4)


@pytest.mark.parametrize("kwargs, needle", [
    ({"fmt": "pickle"}, "format"),
    ({"model_name": "Iris_Model"}, "DNS-1123"),
    ({"seed": "42"}, "seed"),
])
def test_training_job_rejects_bad_parameters(kwargs, needle):
    from helpers.errors import ManifestError

    with pytest.raises(ManifestError, match=needle):
        kind_training.training_job_manifest("img:1", **kwargs)


def test_training_dockerfile_installs_from_the_lock_and_runs_the_kit_code():
    text = (paths.cluster_dir() / "kind" / "train.Dockerfile").read_text()
    assert "FROM ${PYTHON_IMAGE}" in text and "ARG PYTHON_IMAGE" in text
    assert "-c /tmp/requirements.lock" in text
    lock = (paths.ROOT / "requirements.lock").read_text()
    # pyyaml: helpers.versions (imported by helpers.model_store) reads the pins with it.
    for package in ("xgboost-cpu", "scikit-learn", "numpy", "matplotlib", "pyyaml"):
        assert package in text
        assert re.search(rf"^{re.escape(package)}==", lock, re.M), f"{package} not in the lock"
    assert "python -m helpers.train" in text


# --------------------------------------------------------------------------- tests: core schemas
def test_core_objects_validate_against_the_pinned_kubernetes_schemas():
    docs = [(s, d) for s, d in manifest_documents() + rendered_objects() if is_core(d)]
    assert any(d["kind"] == "PersistentVolumeClaim" for _, d in docs)
    failures = []
    for source, doc in docs:
        try:
            kubernetes_validate.validate(doc, k8s_schema_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{source}: {exc.message} at {'.'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{source}: no schema for {doc['apiVersion']} {doc['kind']}: {exc}")
    print(f"validated {len(docs)} core objects against Kubernetes {k8s_schema_version()}")
    assert not failures, "\n".join(failures)


def test_core_validation_catches_a_typo():
    pvc = kind_training.model_pvc_manifest()
    bad = copy.deepcopy(pvc)
    bad["spec"]["accesModes"] = bad["spec"].pop("accessModes")
    kubernetes_validate.validate(pvc, k8s_schema_version(), strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, k8s_schema_version(), strict=True)


# --------------------------------------------------------------------------- tests: CRD schemas
def test_custom_objects_validate_against_the_published_crds(crd_schemas):
    docs = [(s, d) for s, d in manifest_documents() + rendered_objects() if not is_core(d)]
    kinds = {d["kind"] for _, d in docs}
    assert {"XGBoostJob", "InferenceService", "TrainJob", "ClusterTrainingRuntime"} <= kinds, kinds
    failures = [f"{source}: {err}" for source, doc in docs for err in crd_errors(crd_schemas, doc)]
    print(f"validated {len(docs)} custom objects of kinds {sorted(kinds)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mutate, where", [
    (lambda j: j["spec"].update(xgbReplicaSpec=j["spec"].pop("xgbReplicaSpecs")), "spec"),
    (lambda j: j["spec"]["xgbReplicaSpecs"]["Worker"].update(replicas="three"), "replicas"),
    (lambda j: j["spec"]["xgbReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
     .update(imagePullPolicy=None, imagePulPolicy="Never"), "containers"),
])
def test_crd_validation_catches_broken_training_jobs(crd_schemas, mutate, where):
    job = kind_training.training_job_manifest("img:1")
    assert crd_errors(crd_schemas, job) == []
    mutate(job)
    errors = crd_errors(crd_schemas, job)
    assert errors and any(where in e for e in errors), errors


def test_volcano_probe_and_podgroups_validate(crd_schemas):
    assert crd_errors(crd_schemas, kind_installs._VOLCANO_PROBE) == []
    pg = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
          "metadata": {"name": "x"}, "spec": {"minMember": "four"}}
    assert any("minMember" in e for e in crd_errors(crd_schemas, pg))


def test_crd_schemas_come_from_the_pinned_modules_not_the_repo(crd_schemas):
    committed = [p for p in paths.cluster_dir().rglob("*.yaml")
                 if not any(part.startswith(".") for part in p.relative_to(paths.ROOT).parts)
                 and "CustomResourceDefinition" in p.read_text()]
    assert committed == [], f"upstream CRDs must not be committed: {committed}"
    assert ("kubeflow.org/v1", "XGBoostJob") in crd_schemas
    assert ("serving.kserve.io/v1beta1", "InferenceService") in crd_schemas
    assert ("batch.volcano.sh/v1alpha1", "Job") in crd_schemas
    assert ("trainer.kubeflow.org/v1alpha1", "TrainJob") in crd_schemas
    assert ("jobset.x-k8s.io/v1alpha2", "JobSet") in crd_schemas


# --------------------------------------------------------------------------- Trainer v2
TRAINING_MANIFESTS = paths.cluster_dir() / "manifests" / "training"


def _training_doc(name: str) -> dict:
    (doc,) = yaml.safe_load_all((TRAINING_MANIFESTS / name).read_text())
    return doc


@pytest.fixture(scope="module")
def trainer_module() -> Path:
    """Trainer v2's Go module at the pin (its source is the reference for the facts below)."""

    try:
        return kwok_nodes.module_dir("github.com/kubeflow/trainer/v2", versions.pin("trainer"))
    except BackendUnavailable as exc:
        pytest.skip(f"Trainer v2's module unavailable (needs Go and the module proxy): {exc}")


def test_trainer_pin_bundles_the_pinned_jobset(trainer_module):
    chart = yaml.safe_load((trainer_module / "charts/kubeflow-trainer/Chart.yaml").read_text())
    bundled = {d["name"]: d["version"] for d in chart["dependencies"]}
    assert "v" + bundled["jobset"] == versions.pin("jobset")
    assert f"sigs.k8s.io/jobset {versions.pin('jobset')}" in (trainer_module / "go.mod").read_text()
    assert chart["version"] == versions.pin("trainer").lstrip("v")


def test_runtime_keeps_what_the_xgboost_and_volcano_plugins_look_for(trainer_module):
    """The label, container name, env names and annotation keys match Trainer's source."""
    from helpers import distributed

    constants = (trainer_module / "pkg/constants/constants.go").read_text()
    for name in distributed.TRAINER_V2_ENV:
        assert f'"{name}"' in constants, name
    assert re.search(r"ContainerTrainerPort int32 = 29500", constants)
    volcano = (trainer_module / "pkg/runtime/framework/plugins/volcano/volcano.go").read_text()
    assert "PodAnnotations[volcanov1beta1.KubeGroupNameAnnotationKey] = trainJob.Name" in volcano
    assert "info.Annotations[volcanov1beta1.QueueNameAnnotationKey]" in volcano
    # v2.3.0 sets no schedulerName: the runtime's pod template must carry it.
    assert "SchedulerName" not in volcano

    runtime = _training_doc("30-trainingruntime-xgboost-volcano.yaml")
    assert runtime["spec"]["podGroupPolicy"] == {"volcano": {}}
    assert runtime["spec"]["mlPolicy"]["xgboost"] == {}
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    assert rjob["template"]["metadata"]["labels"][
        "trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    pod = rjob["template"]["spec"]["template"]["spec"]
    assert pod["schedulerName"] == "volcano"
    assert [c["name"] for c in pod["containers"]] == ["node"]
    assert runtime["spec"]["template"]["metadata"]["annotations"][
        "scheduling.volcano.sh/queue-name"] == "default"


def test_trainjob_runs_the_kit_code_as_the_xgboostjob_does():
    from helpers import train

    job = _training_doc("40-trainjob.yaml")
    runtime = _training_doc("30-trainingruntime-xgboost-volcano.yaml")
    v1 = _training_doc("20-xgboostjob.yaml")
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org",
                                         "kind": runtime["kind"],
                                         "name": runtime["metadata"]["name"]}
    assert job["metadata"]["namespace"] == kube_names.MODEL_NAMESPACE
    assert job["metadata"]["name"] != v1["metadata"]["name"]  # PodGroups are named after jobs
    master = v1["spec"]["xgbReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    trainer = job["spec"]["trainer"]
    total_v1 = sum(s["replicas"] for s in v1["spec"]["xgbReplicaSpecs"].values())
    assert trainer["numNodes"] == total_v1
    assert (trainer["image"], trainer["command"], trainer["args"]) == (
        master["image"], master["command"], master["args"])
    assert trainer["resourcesPerNode"] == master["resources"]
    parsed = train.build_parser().parse_args(trainer["args"])
    assert (parsed.output_dir, parsed.fmt) == ("/mnt/models", "json")
    (patch,) = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "model-store",
                               "persistentVolumeClaim": {"claimName": kube_names.MODEL_PVC}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == parsed.output_dir


def test_runtime_template_is_a_valid_jobset(crd_schemas):
    """The runtime's template is a JobSet spec: validate it against JobSet's own CRD."""
    runtime = _training_doc("30-trainingruntime-xgboost-volcano.yaml")
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
              "metadata": {"name": "iris-train-v2"}, "spec": runtime["spec"]["template"]["spec"]}
    assert crd_errors(crd_schemas, jobset) == []
    broken = copy.deepcopy(jobset)
    broken["spec"]["replicatedJobs"][0]["replicas"] = "four"
    assert any("replicas" in e for e in crd_errors(crd_schemas, broken))


#: Kubernetes' IsDomainPrefixedPath, which Trainer v2's TrainJob webhook applies to each
#: runtimePatches manager: an RFC 1123 subdomain, "/", then a non-empty HTTP path; <= 63 chars.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DOMAIN_PREFIXED = re.compile(rf"^{_LABEL}(\.{_LABEL})*/[-A-Za-z0-9/._~%!$&'()*+,;=:@]+$")


def test_runtime_patch_managers_pass_trainers_webhook():
    """The TrainJob's managers are domain-prefixed and unique, with the lab's queue patch too.

    The CRD's schema accepts any string; the webhook refused ``manager: kflabs`` on a real
    cluster ("must be a domain-prefixed path"), and the list is keyed by manager.
    """
    from helpers.scheduling import trainer_v2

    job = _training_doc("40-trainjob.yaml")
    job["spec"]["runtimePatches"].append(trainer_v2.queue_patch("team-a"))
    managers = [p["manager"] for p in job["spec"]["runtimePatches"]]
    assert len(set(managers)) == len(managers) == 2, managers
    for manager in managers:
        assert len(manager) <= 63 and _DOMAIN_PREFIXED.match(manager), manager
    assert not _DOMAIN_PREFIXED.match("kflabs") and not _DOMAIN_PREFIXED.match("Kflabs.io/x")


@pytest.mark.parametrize("mutate, where", [
    (lambda j: j["spec"]["trainer"].update(numNode=j["spec"]["trainer"].pop("numNodes")), "trainer"),
    (lambda j: j["spec"]["runtimePatches"][0].pop("manager"), "manager"),
    (lambda j: j["spec"].update(runtimeRef={"kind": "ClusterTrainingRuntime"}), "runtimeRef"),
])
def test_crd_validation_catches_broken_trainjobs(crd_schemas, mutate, where):
    job = _training_doc("40-trainjob.yaml")
    assert crd_errors(crd_schemas, job) == []
    mutate(job)
    errors = crd_errors(crd_schemas, job)
    assert errors and any(where in e for e in errors), errors


# --------------------------------------------------------------------------- kind's own parser
KIND_CHECK_GO = """package main

import (
\t"fmt"
\t"os"
\t"sort"

\t"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
\t"sigs.k8s.io/yaml"
)

// Parse a kind config strictly into kind's own v1alpha4 types: an unknown field fails.
func main() {
\tdata, err := os.ReadFile(os.Args[1])
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(2)
\t}
\tvar c v1alpha4.Cluster
\tif err := yaml.UnmarshalStrict(data, &c); err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\tfor _, n := range c.Nodes {
\t\tfmt.Printf("%s %s %d\\n", n.Role, n.Image, len(n.Labels))
\t}
\tvar extra []string
\tfor name, on := range c.FeatureGates {
\t\textra = append(extra, fmt.Sprintf("featureGate %s %t", name, on))
\t}
\tfor key, value := range c.RuntimeConfig {
\t\textra = append(extra, fmt.Sprintf("runtimeConfig %s %s", key, value))
\t}
\tsort.Strings(extra)
\tfor _, line := range extra {
\t\tfmt.Println(line)
\t}
}
"""


@pytest.fixture(scope="module")
def kind_parser(tmp_path_factory) -> Path:
    """A tiny program built at test time against the pinned kind module's config types."""
    import shutil
    import subprocess

    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: kind's own config types cannot be checked")
    src = tmp_path_factory.mktemp("kindcheck")
    (src / "main.go").write_text(KIND_CHECK_GO)
    (src / "go.mod").write_text(f"module kflabs.local/kindcheck\n\ngo 1.24\n\n"
                                f"require sigs.k8s.io/kind {versions.pin('kind')}\n")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    for args in ([go, "mod", "tidy"], [go, "build", "-o", "kindcheck", "."]):
        proc = subprocess.run(args, cwd=src, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        if proc.returncode != 0:
            pytest.skip(f"could not build against sigs.k8s.io/kind {versions.pin('kind')} "
                        f"(needs the Go module proxy): {proc.stderr.strip()[-300:]}")
    return src / "kindcheck"


def test_kind_config_parses_strictly_with_kinds_own_types(kind_parser, tmp_path):
    import subprocess

    proc = subprocess.run([str(kind_parser), str(KIND_CONFIG)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    pin = versions.pin("kind_node_image")

    gates = sorted({g for gs in kwok_supervisor.WORKLOAD_API_GATES.values() for g in gs})
    assert proc.stdout.splitlines() == [f"control-plane {pin} 0"] + [f"worker {pin} 1"] * 3 + [
        f"featureGate {g} true" for g in gates] + [
        f"runtimeConfig {kwok_supervisor.WORKLOAD_API_GROUP} true"]
    broken = tmp_path / "kind-config.yaml"
    broken.write_text(KIND_CONFIG.read_text().replace("labels:", "lables:", 1))
    proc = subprocess.run([str(kind_parser), str(broken)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1 and "lables" in proc.stderr
