"""The add-on images and the installers from source (helpers.backend.kind.image_build, .sources),
without Docker or a cluster: image definitions, caching inputs, pip/CA staging, and that the
installers rendered from the modules start only images the build produces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import versions
from helpers.backend.kind import image_build, sources
from helpers.errors import BackendUnavailable, LabError


def _module_cache_or_skip() -> None:
    try:
        image_build.volcano_dir()
        image_build.kserve_dir()
        image_build.training_operator_dir()
        image_build.trainer_dir()
        image_build.jobset_dir()
    except (BackendUnavailable, LabError) as exc:
        pytest.skip(f"the upstream modules are not reachable here: {exc}")


@pytest.fixture(scope="module")
def images() -> list[image_build.AddonImage]:
    _module_cache_or_skip()
    return image_build.addon_images()


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    _module_cache_or_skip()
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the installers are rendered with `kubectl kustomize`")
    # cert-manager's chart is rendered by a Helm built from source: only where it was built.
    skip = set() if image_build.binary_path("helm").is_file() else {"cert-manager"}
    return {name: sources.render(name) for name in sources.RENDERED if name not in skip}


def test_images_are_tagged_at_the_pins(images):
    refs = {i.key: i.ref for i in images}
    volcano, kserve = versions.pin("volcano"), versions.pin("kserve")
    for name in ("vc-scheduler", "vc-controller-manager", "vc-webhook-manager"):
        assert refs[name] == f"docker.io/volcanosh/{name}:{volcano}"
    assert refs["kserve-controller"] == f"kserve/kserve-controller:{kserve}"
    assert refs["xgbserver"] == f"kserve/xgbserver:{kserve}"
    assert refs["trainer-controller-manager"] == \
        f"ghcr.io/kubeflow/trainer/trainer-controller-manager:{versions.pin('trainer')}"
    assert refs["jobset"] == f"registry.k8s.io/jobset/jobset:{versions.pin('jobset')}"
    assert refs["python"] == versions.pin("training_python_image")
    assert refs["busybox"].startswith("busybox:") and refs["busybox"] != "busybox:latest"
    assert len(set(refs.values())) == len(refs), "two images share a tag"
    keys = [i.key for i in images]
    for image in images:  # build order: what an image is built FROM comes first
        assert all(keys.index(n) < keys.index(image.key) for n in image.needs)


def test_go_images_hold_only_binaries_the_build_makes(images):
    known = {*image_build.gobuild.BINARIES, *image_build.gobuild.OPTIONAL_BINARIES,
             *(b.name for b in image_build.GO_BINARIES)}
    for image in images:
        assert set(image.binaries) <= known, image.key
        if not image.dockerfile:
            assert image.entrypoint and image.files, image.key
        else:
            assert (image_build.definitions_dir() / image.dockerfile).is_file()


def test_trainer_v2_images_reuse_the_control_planes_binaries(images):
    """The controller manager and JobSet images hold the kwok control plane's binaries, laid
    out as upstream's Dockerfiles do (distroless nonroot: /manager, user 65532)."""
    by_key = {i.key: i for i in images}
    for key, binary in (("trainer-controller-manager", "trainer-controller-manager"),
                        ("jobset", "jobset-controller-manager")):
        image = by_key[key]
        assert image.files == {"/manager": binary}, key
        assert binary in image_build.gobuild.OPTIONAL_BINARIES, key
        assert image_build.binary_path(binary).parent == image_build.bin_dir(), key
        assert image.entrypoint == ("/manager",) and image.user == "65532:65532", key
        assert key in image_build.smoke_checks(), key
        text = image_build.generated_dockerfile(image, "b")
        assert "USER 65532:65532" in text and text.splitlines()[-1] == 'ENTRYPOINT ["/manager"]'


def test_generated_dockerfile_copies_the_files_onto_the_base(images):
    webhook = next(i for i in images if i.key == "vc-webhook-manager")
    text = image_build.generated_dockerfile(webhook, "example/base:1")
    lines = text.splitlines()
    assert "FROM example/base:1" in lines
    assert "COPY rootfs/ /" in lines
    assert lines[-1] == 'ENTRYPOINT ["/vc-webhook-manager"]'
    assert "openssl" in text and "bash" in text  # gen-admission-secret.sh needs them
    assert "#!/bin/bash" in text  # the Alpine-sh script is run by bash on Debian
    proxy = next(i for i in images if i.key == "kube-rbac-proxy")
    assert "USER 65532:65532" in image_build.generated_dockerfile(proxy, "b")


def test_the_webhook_image_has_what_its_init_job_runs(images, rendered):
    webhook = next(i for i in images if i.key == "vc-webhook-manager")
    jobs = [o for o in sources.load_all(rendered["volcano"])
            if isinstance(o, dict) and o.get("kind") == "Job"]
    commands = [c.get("command", []) for j in jobs for c in j["spec"]["template"]["spec"]["containers"]]
    assert ["./gen-admission-secret.sh"] == [c[0] for c in commands if c]
    assert "/gen-admission-secret.sh" in webhook.files  # WORKDIR is /
    assert "/usr/local/bin/kubectl" in webhook.files


def test_stage_context_refuses_a_missing_binary(tmp_path, monkeypatch):
    image = image_build.AddonImage("x", "example/x:1", files={"/x": "no-such-binary"},
                                   entrypoint=("/x",))
    monkeypatch.setattr(image_build, "images_dir", lambda: tmp_path / "images")
    with pytest.raises(LabError, match="no-such-binary"):
        image_build.stage_context(image, "b", tmp_path / "ctx")


def test_context_hash_follows_content_and_parents(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM a\n")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "bin").write_bytes(b"1")
    first = image_build.context_hash(tmp_path, ["sha256:base"])
    assert image_build.context_hash(tmp_path, ["sha256:base"]) == first
    assert image_build.context_hash(tmp_path, ["sha256:other"]) != first
    (tmp_path / "rootfs" / "bin").write_bytes(b"2")
    second = image_build.context_hash(tmp_path, ["sha256:base"])
    assert second != first
    (tmp_path / "rootfs" / "bin").chmod(0o700)
    assert image_build.context_hash(tmp_path, ["sha256:base"]) != second


def test_pip_conf_takes_the_machines_files_and_index_settings(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    monkeypatch.setattr(image_build, "PIP_CONF_FILES", (conf, tmp_path / "missing.conf"))
    text = image_build.pip_conf_text({"PIP_INDEX_URL": "https://index.example.invalid/simple",
                                      "PIP_CERT": "/ignored"})
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in text
    assert "index-url = https://index.example.invalid/simple" in text
    assert "ignored" not in text
    monkeypatch.setattr(image_build, "PIP_CONF_FILES", ())
    assert image_build.pip_conf_text({}) == ""


def test_uv_lock_constraints(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text(
        'version = 1\n'
        '[[package]]\nname = "kserve"\nversion = "0.20.0"\nsource = { directory = "../kserve" }\n'
        '[[package]]\nname = "numpy"\nversion = "2.0.1"\nsource = { registry = "r" }\n'
        '[[package]]\nname = "xgboost"\nversion = "2.1.1"\nsource = { registry = "r" }\n'
        '[[package]]\nname = "fork"\nversion = "1.0"\nsource = { registry = "r" }\n'
        '[[package]]\nname = "fork"\nversion = "2.0"\nsource = { registry = "r" }\n')
    assert image_build.uv_lock_constraints(lock, skip=("xgboost",)) == "numpy==2.0.1\n"


def test_xgbserver_constraints_leave_xgboost_to_the_pin(images):
    lock = image_build.kserve_dir() / "python/xgbserver/uv.lock"
    text = image_build.uv_lock_constraints(lock, skip=("xgboost", "nvidia-nccl-cu12"))
    names = {line.split("==")[0] for line in text.splitlines()}
    assert "xgboost" not in names and "fastapi" in names
    dockerfile = (image_build.definitions_dir() / "xgbserver.Dockerfile").read_text()
    assert "xgboost-cpu==${XGBOOST_VERSION}" in dockerfile


def test_no_registry_switch(monkeypatch):
    monkeypatch.delenv(sources.NO_REGISTRY_ENV, raising=False)
    assert not sources.no_registry()
    assert sources.installer_source("volcano", "https://example.invalid/v.yaml") == \
        "https://example.invalid/v.yaml"
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(sources.NO_REGISTRY_ENV, value)
        assert sources.no_registry() is expected


def test_no_registry_installer_loads_the_images_it_starts_first(monkeypatch, tmp_path, capsys):
    """Under the switch the nodes get each installer's images by `kind load`; without it, nothing."""
    installer = tmp_path / "x.yaml"
    installer.write_text(yaml.safe_dump_all([
        {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "example/controller:v1"}]}}}},
        {"kind": "ClusterServingRuntime", "metadata": {"name": "kserve-xgbserver"},
         "spec": {"containers": [{"name": "k", "image": "kserve/xgbserver:v0.20.0"}]}},
        {"kind": "ClusterServingRuntime", "metadata": {"name": "kserve-other"},
         "spec": {"containers": [{"name": "k", "image": "kserve/other:v0.20.0"}]}}]))
    loaded = []
    monkeypatch.setattr(sources, "rendered_installer", lambda component: installer)
    monkeypatch.setattr(image_build, "load_into_kind", lambda refs, cluster: loaded.append((refs, cluster)))
    monkeypatch.delenv(sources.NO_REGISTRY_ENV, raising=False)
    assert sources.installer_source("kserve", "https://release/x.yaml") == "https://release/x.yaml"
    assert loaded == []
    monkeypatch.setenv(sources.NO_REGISTRY_ENV, "1")
    assert sources.installer_source("kserve", "https://release/x.yaml") == str(installer)
    assert loaded == [(["example/controller:v1", "kserve/xgbserver:v0.20.0"], "kflabs")]
    assert "loading the 2 image(s) kserve starts" in capsys.readouterr().out


def test_no_registry_cluster_up_loads_the_kits_own_images(monkeypatch, capsys):
    """busybox (the scheduling labs' pods) is loaded under the switch, and only then."""
    loaded = []
    monkeypatch.setattr(image_build, "load_into_kind", lambda refs, cluster: loaded.append((refs, cluster)))
    monkeypatch.delenv(sources.NO_REGISTRY_ENV, raising=False)
    assert sources.load_kit_images() == [] and loaded == []
    monkeypatch.setenv(sources.NO_REGISTRY_ENV, "1")
    assert sources.load_kit_images() == [image_build.busybox_ref()]
    assert loaded == [([image_build.busybox_ref()], "kflabs")]
    assert image_build.busybox_ref() in capsys.readouterr().out


def test_rendered_installers_parse_and_pull_nothing(rendered):
    for name, text in rendered.items():
        objects = sources.load_all(text)
        assert objects and all("kind" in o and "apiVersion" in o for o in objects), name
        assert "imagePullPolicy: Always" not in text, name
        assert not any(i.endswith(":latest") for i in sources.started_images(text)), name
    kinds = {o["kind"] for o in sources.load_all(rendered["kserve"])}
    assert {"Deployment", "Certificate", "CustomResourceDefinition"} <= kinds
    runtimes = {o["metadata"]["name"] for o in sources.load_all(rendered["kserve-runtimes"])
                if o["kind"] == "ClusterServingRuntime"}
    assert "kserve-xgbserver" in runtimes
    # Every kind in the runtimes file is defined by the KServe install (its CRDs).
    crds = {o["spec"]["names"]["kind"] for o in sources.load_all(rendered["kserve"])
            if o["kind"] == "CustomResourceDefinition"}
    assert {o["kind"] for o in sources.load_all(rendered["kserve-runtimes"])} <= crds


def test_rendered_installers_start_only_images_the_build_produces(images, rendered):
    """Both ways: every image an installer starts is built, and every built image is started
    by an installer, the kit's manifests (busybox) or the training image (its base)."""
    started = set()
    for text in rendered.values():
        started |= sources.started_images(text, runtimes=("kserve-xgbserver",))
    built = {i.ref for i in images}
    assert started, "no workload images found: the parser is broken"
    assert started - built == set(), f"started but not built: {sorted(started - built)}"
    kit = {image_build.busybox_ref(), versions.pin("training_python_image")}
    if "cert-manager" not in rendered:
        kit |= {i.ref for i in images if i.key.startswith("cert-manager-")}
    assert built - started == kit


def test_trainer_v2_installer_bundles_jobset_from_its_module(rendered):
    """Trainer's manager overlay with JobSet rendered from sigs.k8s.io/jobset, not from the
    GitHub release URL: both Deployments at the pins, in kubeflow-system, nothing pulled."""
    text = rendered["trainer-v2"]
    objects = sources.load_all(text)
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == {"jobset-controller-manager", "kubeflow-trainer-controller-manager"}
    images = {name: [c["image"] for c in sources._containers(d)] for name, d in deployments.items()}
    assert images == {
        "jobset-controller-manager": [f"registry.k8s.io/jobset/jobset:{versions.pin('jobset')}"],
        "kubeflow-trainer-controller-manager":
            [f"ghcr.io/kubeflow/trainer/trainer-controller-manager:{versions.pin('trainer')}"]}
    assert {d["metadata"]["namespace"] for d in deployments.values()} == {"kubeflow-system"}
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert namespaces == ["kubeflow-system"]  # JobSet's own is removed, as upstream's patch does
    assert "releases/download" not in text and "k8s-staging-images" not in text
    assert "imagePullPolicy: Always" not in text
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"jobsets.jobset.x-k8s.io", "trainjobs.trainer.kubeflow.org",
            "clustertrainingruntimes.trainer.kubeflow.org"} <= crds
    runtimes = sources.load_all(rendered["trainer-v2-runtimes"])
    assert {o["kind"] for o in runtimes} == {"ClusterTrainingRuntime"}
    assert "xgboost-distributed" in {o["metadata"]["name"] for o in runtimes}
    assert sources.started_images(rendered["trainer-v2-runtimes"]) == set()  # templates only


def test_trainer_v2_render_refuses_a_jobset_release_other_than_the_pin(monkeypatch, tmp_path):
    """The bundled JobSet release must be the ``jobset`` pin (versions.yaml says so)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the installers are rendered with `kubectl kustomize`")
    _module_cache_or_skip()
    monkeypatch.setattr(sources, "installers_dir", lambda: tmp_path)
    real_pin = versions.pin
    monkeypatch.setattr(versions, "pin", lambda name: "v9.9.9" if name == "jobset" else real_pin(name))
    with pytest.raises(LabError, match="jobset pins"):
        sources.render("trainer-v2")


def test_cert_manager_installer_is_the_static_manifest(rendered):
    if "cert-manager" not in rendered:
        pytest.skip("Helm is not built here (`python -m helpers.cluster images "
                    "--only cert-manager-controller` builds it)")
    objects = sources.load_all(rendered["cert-manager"])
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == "cert-manager"
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert deployments == {"cert-manager", "cert-manager-cainjector", "cert-manager-webhook"}
    assert not [o for o in objects if o["kind"] == "Job"]  # startupapicheck is off
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert "certificates.cert-manager.io" in crds and len(crds) == 6


def test_started_images_reads_workloads_and_named_runtimes():
    text = yaml.safe_dump_all([
        {"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"image": "a:1"}], "containers": [{"image": "b:1"}]}}}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"image": "c:1"}]}}}}}},
        {"kind": "ClusterServingRuntime", "metadata": {"name": "used"},
         "spec": {"containers": [{"image": "d:1"}]}},
        {"kind": "ClusterServingRuntime", "metadata": {"name": "unused"},
         "spec": {"containers": [{"image": "e:1"}]}},
        {"kind": "ConfigMap", "data": {"x": "image: f:1"}},
    ])
    assert sources.started_images(text, runtimes=("used",)) == {"a:1", "b:1", "c:1", "d:1"}


def test_docker_builds_are_skipped_without_docker(monkeypatch):
    monkeypatch.setattr(subprocess, "run", _raise_file_not_found)
    with pytest.raises(BackendUnavailable, match="docker is not installed"):
        image_build.image_label("x:1")


def _raise_file_not_found(*args, **kwargs):
    raise FileNotFoundError(args[0][0])


def test_machine_ca_files_are_crt_files(tmp_path, monkeypatch):
    (tmp_path / "a.crt").write_text("x")
    (tmp_path / "b.pem").write_text("x")
    monkeypatch.setattr(image_build, "CA_DIRS", (tmp_path, Path("/nonexistent")))
    assert image_build.machine_ca_files() == [tmp_path / "a.crt"]


# --------------------------------------------------------------------------- built images run
def _docker_images_or_skip(images, keys=None) -> list[image_build.AddonImage]:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed: the add-on images are not built here")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        pytest.skip("no Docker daemon answers: the add-on images are not built here")
    present = [i for i in images if (keys is None or i.key in keys)
               and image_build.image_label(i.ref) is not None]
    if not present:
        pytest.skip("no add-on image is built here (`python -m helpers.cluster images`)")
    return present


def test_built_images_run(images):
    results = [image_build.smoke_check(i) for i in _docker_images_or_skip(images)]
    assert [r for r in results if not r["ok"]] == []


def test_xgbserver_image_serves_a_model_the_kit_trained(images, tmp_path):
    import json
    import socket
    import time
    import urllib.request

    import numpy as np
    import xgboost as xgb

    (image,) = _docker_images_or_skip(images, keys={"xgbserver"})
    subprocess.run([sys.executable, "-m", "helpers.train", "--output-dir", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    model_dir = tmp_path / "iris"
    model_dir.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"kflabs-test-xgbserver-{port}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                    "-v", f"{model_dir}:/mnt/models:ro", image.ref, "--model_name=iris",
                    "--model_dir=/mnt/models", "--http_port=8080", "--nthread=1"],
                   check=True, capture_output=True, timeout=120)
    rows = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
    try:
        deadline, ready = time.monotonic() + 90, False
        while not ready and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/iris", timeout=5) as r:
                    ready = json.load(r).get("ready") is True
            except OSError:
                time.sleep(1)
        assert ready, subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/iris:predict", method="POST",
            data=json.dumps({"instances": rows}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            served = np.array(json.load(r)["predictions"])
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
    booster = xgb.Booster()
    booster.load_model(str(model_dir / "model.json"))
    np.testing.assert_allclose(served, booster.predict(xgb.DMatrix(np.array(rows))), rtol=1e-5)
