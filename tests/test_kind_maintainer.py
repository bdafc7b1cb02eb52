"""Unit tests for the maintainer's no-registry kind path (helpers.backend.kind.maintainer).

Pure logic only: no Docker, no Go, no root. The real builds run behind ``make cluster-images``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.backend.kind.maintainer import base, docker, gobuild, kindconfig, nodeimage, runc_wrap


def _spec(*lists: str) -> dict:
    caps = {name: ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"] for name in lists}
    return {"ociVersion": "1.0.2", "process": {"args": ["sh"], "capabilities": caps}}


# ------------------------------------------------------------------ runc wrapper
def test_drop_capability_removes_it_from_every_list_and_keeps_the_rest():
    spec = _spec("bounding", "effective", "inheritable", "permitted", "ambient")
    assert runc_wrap.drop_capability(spec) is True
    for values in spec["process"]["capabilities"].values():
        assert values == ["CAP_CHOWN", "CAP_NET_ADMIN"]
    assert runc_wrap.drop_capability(spec) is False  # nothing left to drop


def test_drop_capability_handles_an_exec_process_file():
    process = {"args": ["ls"], "capabilities": {"bounding": ["CAP_SYS_RESOURCE", "CAP_KILL"]}}
    assert runc_wrap.drop_capability(process) is True
    assert process["capabilities"]["bounding"] == ["CAP_KILL"]


def test_drop_capability_leaves_a_spec_without_capabilities_alone():
    spec = {"process": {"args": ["sh"]}}
    assert runc_wrap.drop_capability(spec) is False
    assert spec == {"process": {"args": ["sh"]}}


@pytest.mark.parametrize(("argv", "expected"), [
    (["create", "--bundle", "/b", "id"], "/b/config.json"),
    (["--root", "/run/r", "--log", "/l", "create", "--bundle=/b2", "id"], "/b2/config.json"),
    (["run", "-b", "/b3", "id"], "/b3/config.json"),
    (["--systemd-cgroup", "create", "id"], "/cwd/config.json"),
    (["exec", "--process", "/tmp/p.json", "id"], "/tmp/p.json"),
    (["--root=/r", "exec", "-p", "/tmp/q.json", "id"], "/tmp/q.json"),
])
def test_spec_files_finds_the_bundle_or_process_file(argv, expected):
    assert runc_wrap.spec_files(argv, "/cwd") == [Path(expected)]


@pytest.mark.parametrize("argv", [["exec", "id", "ls"], ["start", "id"], ["--version"], []])
def test_spec_files_is_empty_for_commands_without_a_spec(argv):
    assert runc_wrap.spec_files(argv, "/cwd") == []


def test_wrapper_edits_the_bundle_then_execs_the_real_runc(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(_spec("bounding", "permitted")))
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\necho real runc got: \"$@\"\n")
    fake.chmod(0o755)
    proc = subprocess.run([sys.executable, runc_wrap.__file__, "--root", "/x", "create",
                           "--bundle", str(bundle), "cid"], capture_output=True, text=True,
                          env={**os.environ, runc_wrap.REAL_RUNC_ENV: str(fake)}, check=True)
    assert proc.stdout.strip() == f"real runc got: --root /x create --bundle {bundle} cid"
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert all("CAP_SYS_RESOURCE" not in v for v in caps.values())
    assert caps["bounding"] == ["CAP_CHOWN", "CAP_NET_ADMIN"]


# ------------------------------------------------------------------ docker set-up
def test_daemon_config_adds_the_runtime_and_keeps_other_settings():
    existing = {"log-driver": "json-file", "runtimes": {"other": {"path": "/o"}}}
    config = docker.daemon_config(existing, Path("/w/runc"), "wrap")
    assert config == {"log-driver": "json-file", "default-runtime": "wrap",
                      "runtimes": {"other": {"path": "/o"}, "wrap": {"path": "/w/runc"}}}
    assert existing == {"log-driver": "json-file", "runtimes": {"other": {"path": "/o"}}}
    assert docker.daemon_config(config, Path("/w/runc"), "wrap") == config  # idempotent


def test_configure_daemon_writes_once(tmp_path):
    path = tmp_path / "daemon.json"
    assert docker.configure_daemon(path) is True
    assert json.loads(path.read_text())["default-runtime"] == docker.RUNTIME_NAME
    assert docker.configure_daemon(path) is False


def test_installed_wrapper_names_the_given_python_and_is_current_once(tmp_path):
    target = tmp_path / "libexec" / "runc-wrap"
    assert docker.install_wrapper(target, python="/usr/bin/python3") is True
    text = target.read_text()
    assert text.startswith("#!/usr/bin/python3\n") and "def drop_capability" in text
    assert text.count("#!") == 1
    assert os.access(target, os.X_OK)
    assert docker.install_wrapper(target, python="/usr/bin/python3") is False


# ------------------------------------------------------------------ base image
DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_and_one_line_sources():
    assert base.mirror_from_sources([DEB822]) == "http://mirror.example/debian"
    one_line = "# comment\ndeb [arch=amd64] http://m2.example/debian bookworm main contrib\n"
    assert base.mirror_from_sources(["deb http://x.example/apt other main\n", one_line]) \
        == "http://m2.example/debian"
    assert base.mirror_from_sources(["deb http://x.example/apt bookworm-security main\n"]) is None


def test_base_recipe_hash_changes_with_the_packages():
    assert base.recipe_hash(("ca-certificates",)) == base.recipe_hash(("ca-certificates",))
    assert base.recipe_hash(("ca-certificates",)) != base.recipe_hash(("ca-certificates", "curl"))


# ------------------------------------------------------------------ kind config
def test_maintainer_config_derives_from_the_learners_one():
    learner = yaml.safe_load(kindconfig.learner_config_path().read_text())
    derived = kindconfig.derive_config(learner, "kindest/node:v9.9.9")
    assert derived["featureGates"] == learner["featureGates"]
    assert derived["runtimeConfig"] == learner["runtimeConfig"]
    assert [n["role"] for n in derived["nodes"]] == [n["role"] for n in learner["nodes"]]
    assert all(n["image"] == "kindest/node:v9.9.9" for n in derived["nodes"])
    assert [n.get("labels") for n in derived["nodes"]] == [n.get("labels") for n in learner["nodes"]]
    assert derived["kubeadmConfigPatches"] == [kindconfig.KUBELET_PATCH]
    assert yaml.safe_load(kindconfig.KUBELET_PATCH) == {"kind": "KubeletConfiguration",
                                                        "failCgroupV1": False}
    assert "kubeadmConfigPatches" not in learner  # the learners' file never gets it
    assert kindconfig.derive_config(derived, "kindest/node:v9.9.9") == derived


def test_learner_config_never_sets_fail_cgroup_v1():
    assert "failCgroupV1" not in kindconfig.learner_config_path().read_text()


# ------------------------------------------------------------------ node image
KUBEADM_LIST = ["registry.k8s.io/kube-apiserver:v1.35.4",
                "registry.k8s.io/kube-controller-manager:v1.35.4",
                "registry.k8s.io/kube-scheduler:v1.35.4", "registry.k8s.io/kube-proxy:v1.35.4",
                "registry.k8s.io/coredns/coredns:v1.13.1", "registry.k8s.io/pause:3.10.1",
                "registry.k8s.io/etcd:3.6.6-0"]


def test_component_images_keep_kubeadms_tags_exactly():
    images = nodeimage.component_images(KUBEADM_LIST)
    assert [i.tag for i in images] == KUBEADM_LIST
    by_name = {i.tag.split("/")[-1].split(":")[0]: i for i in images}
    assert by_name["kube-apiserver"].binaries == {"kube-apiserver": "/usr/local/bin/kube-apiserver"}
    assert by_name["coredns"].entrypoint == ("/coredns",)
    assert by_name["pause"].static_from_scratch and by_name["pause"].entrypoint == ("/pause",)
    assert "iptables" in by_name["kube-proxy"].packages
    with pytest.raises(ValueError, match="cannot make"):
        nodeimage.component_images(["registry.k8s.io/something-new:v1"])


def test_split_image_and_node_tag():
    assert nodeimage.split_image("registry.k8s.io/coredns/coredns:v1.13.1") == (
        "registry.k8s.io/coredns/coredns", "v1.13.1")
    with pytest.raises(ValueError):
        nodeimage.split_image("localhost:5000/x")
    assert nodeimage.node_image_tag("1.35.4") == "kindest/node:v1.35.4"


def test_dockerfiles():
    images = {i.tag: i for i in nodeimage.component_images(KUBEADM_LIST)}
    proxy = nodeimage.dockerfile(images["registry.k8s.io/kube-proxy:v1.35.4"], base="B")
    assert proxy.startswith("FROM B\n") and "COPY kube-proxy /usr/local/bin/kube-proxy" in proxy
    assert "ln -sf iptables-wrapper /usr/sbin/iptables-restore" in proxy
    dns = nodeimage.dockerfile(images["registry.k8s.io/coredns/coredns:v1.13.1"], base="B")
    assert dns.endswith('ENTRYPOINT ["/coredns"]\n')
    pause = nodeimage.dockerfile(images["registry.k8s.io/pause:3.10.1"], base="B")
    assert "FROM scratch" in pause and "-static" in pause and "COPY pause.c" in pause


KIND_CONTAINERD = '''version = 2

[proxy_plugins]
# fuse-overlayfs is used for rootless
[proxy_plugins."fuse-overlayfs"]
  type = "snapshot"
  address = "/run/containerd-fuse-overlayfs.sock"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = false
'''


def test_containerd_config_uses_kubeadms_pause_and_drops_fuse_overlayfs():
    text = nodeimage.containerd_config(KIND_CONTAINERD, "registry.k8s.io/pause:3.10.1")
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in text
    assert "fuse-overlayfs" not in text and "version = 2" in text
    assert "restrict_oom_score_adj = true" in text and "= false" not in text
    assert '    SystemdCgroup = true\n    BinaryName = "/usr/local/sbin/kflabs-runc-wrap"\n' in text
    with pytest.raises(ValueError):
        nodeimage.containerd_config("version = 2\n", "p")


STORAGE = """apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-path}
provisioner: rancher.io/local-path
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata: {name: helper-pod}
    spec:
      containers:
      - name: helper-pod
        image: busybox
"""


def test_storage_manifest_makes_standard_the_default_class_with_a_local_helper():
    docs = list(yaml.safe_load_all(nodeimage.storage_manifest(STORAGE, helper_image="H:1")))
    sc = next(d for d in docs if d["kind"] == "StorageClass")
    assert sc["metadata"]["name"] == "standard"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    helper = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["helperPod.yaml"])
    assert helper["spec"]["containers"][0]["image"] == "H:1"
    with pytest.raises(ValueError):
        nodeimage.storage_manifest("kind: Namespace\n")


def test_podnet_manifest_keeps_kinds_template_markers():
    template = (nodeimage.recipe_dir() / "podnet.yaml").read_text()
    text = nodeimage.podnet_manifest(template, "kflabs/podnet:abc")
    assert "would you kindly template this file" in text
    assert "would you kindly patch this file" in text
    assert "{{ .PodSubnet }}" in text and "PODNET_IMAGE" not in text
    rendered = text.replace("{{ .PodSubnet }}", "10.244.0.0/16")
    assert len(list(yaml.safe_load_all(text))) == 4  # parseable before kind templates it, too
    ds = next(d for d in yaml.safe_load_all(rendered) if d["kind"] == "DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "kflabs/podnet:abc"
    assert [e["name"] for e in container["env"]] == ["NODE_NAME", "POD_SUBNET"]  # kind appends


def test_gobuild_tools_follow_the_pins():
    from helpers import versions
    tools = {t.name: t for t in gobuild.module_tools("v1.13.1")}
    assert tools["kind"].version == versions.pin("kind")
    assert tools["crictl"].version == versions.pin("crictl")
    assert tools["local-path-provisioner"].version == versions.pin("local_path_provisioner")
    assert tools["coredns"].version == "v1.13.1"
    assert "coredns" not in {t.name for t in gobuild.module_tools()}
    assert any("gitVersion=v" + versions.pin("kubernetes") in f for f in gobuild.kube_ldflags())


def test_local_cluster_only_when_the_node_image_was_built_here(monkeypatch, tmp_path):
    from helpers.backend.kind.maintainer import base as base_mod
    monkeypatch.setenv("KFLABS_ROOT", str(tmp_path))
    seen = []
    monkeypatch.setattr(base_mod, "image_label", lambda image, label: seen.append((image, label)))
    assert kindconfig.local_cluster() is None  # a learner's Docker: no such image
    assert seen == [(nodeimage.node_image_tag(), nodeimage.HASH_LABEL)]
    monkeypatch.setattr(base_mod, "image_label", lambda image, label: "abc123")
    config, image = kindconfig.local_cluster()
    assert image == nodeimage.node_image_tag()
    assert yaml.safe_load(config.read_text())["nodes"][0]["image"] == image


# ------------------------------------------------------------------ make test-cluster
def test_test_cluster_steps_in_order_and_nothing_from_make_test():
    from helpers.backend.kind.maintainer import testrun
    names = [name for name, _ in testrun.steps("py")]
    assert names == ["cluster-images", "cluster-up-interrupted", "cluster-up", "cluster-up-again",
                     "pytest-cluster", "cluster-down", "cluster-down-again"]
    argvs = dict(testrun.steps("py"))
    # the same set-up, Ctrl-C'd part-way, then run to the end, then run again
    assert argvs["cluster-up-interrupted"] == argvs["cluster-up"] == argvs["cluster-up-again"]
    assert set(testrun.INTERRUPT_AFTER) == {"cluster-up-interrupted"}
    assert argvs["cluster-down"] == argvs["cluster-down-again"]
    assert argvs["pytest-cluster"][:5] == ["py", "-m", "pytest", "-m", "cluster"]
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "cluster-images" not in test_recipe and "test-cluster" not in test_recipe


_SLEEPER = ("import sys, time\n"
            "from helpers.errors import cli_errors\n"
            "cli_errors(lambda: time.sleep(float(sys.argv[1])))()\n")


def test_an_interrupted_step_must_stop_by_itself_with_130_and_no_traceback(tmp_path, monkeypatch):
    from helpers.backend.kind.maintainer import testrun
    # Generous times: on a busy 2-core machine the child can take seconds just to import.
    monkeypatch.setattr(testrun, "INTERRUPT_GRACE", 20.0)
    with (tmp_path / "a.log").open("w") as log:  # Ctrl-C'd mid-sleep: exit 130, one line
        out = testrun.run_step([sys.executable, "-c", _SLEEPER, "60"], log, interrupt_after=4.0)
    assert out["interrupted"] and out["returncode"] == 130 and out["ok"], out
    assert out["stopped_seconds"] < 20
    assert (tmp_path / "a.log").read_text().startswith("interrupted:")
    with (tmp_path / "b.log").open("w") as log:  # done before the Ctrl-C: nothing to interrupt
        out = testrun.run_step([sys.executable, "-c", _SLEEPER, "0"], log, interrupt_after=20.0)
    assert out == {"returncode": 0, "interrupted": False, "ok": True}
    monkeypatch.setattr(testrun, "INTERRUPT_GRACE", 1.0)
    ignores = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(30)"
    with (tmp_path / "c.log").open("w") as log:  # ignores Ctrl-C: killed, and not ok
        out = testrun.run_step([sys.executable, "-c", ignores], log, interrupt_after=4.0)
    assert out["interrupted"] and out["returncode"] == -9 and out["ok"] is False, out
    with (tmp_path / "d.log").open("w") as log:  # a traceback on Ctrl-C is not ok either
        out = testrun.run_step([sys.executable, "-c", "import time; time.sleep(30)"], log,
                               interrupt_after=1.0)
    assert out["interrupted"] and out["ok"] is False, out


def test_the_interrupt_reaches_a_step_even_where_sigint_was_ignored(tmp_path):
    """Started in the background (`make test-cluster &`), a process inherits SIGINT ignored: the
    step must still get a terminal's Ctrl-C, and exit 130."""
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as `cmd &` leaves it
              "from helpers.backend.kind.maintainer import testrun\n"
              "testrun.INTERRUPT_GRACE = 20.0\n"
              "with open(sys.argv[1], 'w') as log:\n"
              "    out = testrun.run_step([sys.executable, '-c', sys.argv[2], '60'], log,\n"
              "                           interrupt_after=4.0)\n"
              "print(out['returncode'], out['ok'])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.log"), _SLEEPER],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.split() == ["130", "True"], proc.stdout + proc.stderr


def test_run_all_records_each_step_and_goes_on_after_a_failure(monkeypatch, tmp_path):
    from helpers.backend.kind.maintainer import testrun
    monkeypatch.setattr(testrun.paths, "ROOT", tmp_path)
    monkeypatch.setattr(testrun, "steps", lambda python=sys.executable: [
        ("ok", [sys.executable, "-c", "print('fine')"]),
        ("bad", [sys.executable, "-c", "raise SystemExit(3)"]),
        ("down", [sys.executable, "-c", "import pathlib; pathlib.Path('build/labs.json')"
                                        ".write_text('{\"03\": {\"seconds\": 2}}')"])])
    monkeypatch.setattr(testrun, "labs_file", lambda: tmp_path / "build" / "labs.json")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "labs.json").write_text('{"00_setup": {"seconds": 1.5}}')
    record = testrun.run_all(results=tmp_path / "build" / "r.json")
    # the labs file is this run's (an earlier run's is removed first), copied into the record
    assert record["labs"] == {"03": {"seconds": 2}}
    assert {k: v["returncode"] for k, v in record["steps"].items()} == {"ok": 0, "bad": 3, "down": 0}
    assert record["ok"] is False
    assert json.loads((tmp_path / "build" / "r.json").read_text())["steps"]["bad"]["returncode"] == 3
    assert (tmp_path / "build" / "cluster-logs" / "ok.log").read_text().strip() == "fine"
    assert record["memory_mib"]["peak"] >= record["memory_mib"]["baseline"] >= 0
