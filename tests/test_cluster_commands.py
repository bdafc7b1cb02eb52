"""helpers.cluster's kind/kubectl/docker command lines, against fake executables on PATH.

kind cannot run here, so each fake records its argument list (and standard input) and
answers from a small rule table: first matching rule wins; a rule with ``times`` answers
that many calls, then lets later rules answer. The tests assert the exact commands a
learner's laptop would run, and the failure paths: missing tools, a stopped Docker daemon,
webhooks refusing connections right after an install, waits that run out.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import cluster as kind_cli
from helpers import versions
from helpers.backend.kind import images as kind_images
from helpers.backend.kind import installs as kind_installs
from helpers.backend.kind import lifecycle as kind_lifecycle
from helpers.backend.kind import serving as kind_serving
from helpers.backend.kind import training as kind_training
from helpers.errors import BackendUnavailable, LabError
from helpers.kube import kubectl as kubectl_run
from helpers.kube import names as kube_names

CTX = ["--context", kube_names.KIND_CONTEXT]

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    tool = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    state = os.environ["FAKE_STATE"]
    with open(os.path.join(state, "calls.jsonl"), "a") as fh:
        fh.write(json.dumps({{"tool": tool, "argv": argv, "stdin": stdin}}) + "\\n")
    rules = json.load(open(os.path.join(state, "rules.json")))
    used_path = os.path.join(state, "used.json")
    used = json.load(open(used_path)) if os.path.exists(used_path) else {{}}
    line = " ".join(argv)
    for i, rule in enumerate(rules):
        if rule["tool"] != tool or not all(m in line for m in rule.get("match", [])):
            continue
        if "times" in rule and used.get(str(i), 0) >= rule["times"]:
            continue
        used[str(i)] = used.get(str(i), 0) + 1
        json.dump(used, open(used_path, "w"))
        sys.stdout.write(rule.get("stdout", ""))
        sys.stdout.flush()
        sys.stderr.write(rule.get("stderr", ""))
        time.sleep(rule.get("sleep", 0))
        sys.exit(rule.get("rc", 0))
    sys.exit(0)
""")


class Fakes:
    """The fake tools' rule table and call log."""

    def __init__(self, state: Path):
        self.state = state
        self.rules: list[dict] = []
        self._save()

    def _save(self) -> None:
        (self.state / "rules.json").write_text(json.dumps(self.rules))

    def on(self, tool: str, *match: str, stdout: str = "", stderr: str = "", rc: int = 0,
           times: int | None = None, sleep: float = 0) -> Fakes:
        """Answer calls of ``tool`` whose command line contains every ``match`` string."""
        rule = {"tool": tool, "match": list(match), "stdout": stdout, "stderr": stderr,
                "rc": rc, "sleep": sleep}
        if times is not None:
            rule["times"] = times
        self.rules.append(rule)
        self._save()
        return self

    def calls(self, tool: str | None = None) -> list[dict]:
        """Every recorded call, in order (optionally of one tool)."""
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        out = [json.loads(line) for line in path.read_text().splitlines()]
        return [c for c in out if tool is None or c["tool"] == tool]

    def argvs(self, tool: str) -> list[list[str]]:
        """The argument lists of ``tool``'s calls."""
        return [c["argv"] for c in self.calls(tool)]


@pytest.fixture
def fakes(tmp_path, monkeypatch) -> Fakes:
    """Fake docker, kind, kubectl and git, alone on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    for tool in ("docker", "kind", "kubectl", "git"):
        exe = bin_dir / tool
        exe.write_text(FAKE.format(python=sys.executable))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.setenv("KFLABS_ROOT", str(tmp_path / "root"))  # build/ goes under tmp
    return Fakes(state)


def no_sleep(_seconds: float) -> None:
    """Stand-in for time.sleep in retry loops."""


def nodes_json(gpus: dict[str, int] | None = None) -> str:
    """``kubectl get nodes -o json`` for kind-config.yaml's cluster."""
    gpus = gpus or {}
    items = [{"metadata": {"name": "kflabs-control-plane",
                           "labels": {"node-role.kubernetes.io/control-plane": ""}},
              "status": {"allocatable": {"cpu": "8"}}}]
    for name in ("kflabs-worker", "kflabs-worker2", "kflabs-worker3"):
        alloc = {"cpu": "8"}
        if name in gpus:
            alloc[kube_names.GPU_RESOURCE] = str(gpus[name])
        items.append({"metadata": {"name": name, "labels": {kind_lifecycle.FAKE_GPU_LABEL: "true"}},
                      "status": {"allocatable": alloc}})
    return json.dumps({"items": items})


# --------------------------------------------------------------------------- missing tools
def test_missing_tools_are_named_with_their_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(BackendUnavailable) as err:
        kubectl_run.require_tools("docker", "kind", "kubectl")
    msg = str(err.value)
    for tool in ("docker", "kind", "kubectl"):
        assert f"{tool}:" in msg
    assert "docs.docker.com" in msg and versions.pin("kind") in msg
    assert 'BACKEND="sim"' in msg


def test_up_stops_before_doing_anything_when_kind_is_missing(fakes, monkeypatch, tmp_path):
    (Path(os.environ["PATH"]) / "kind").unlink()
    with pytest.raises(BackendUnavailable, match="kind"):
        kind_installs.up(build_image=False)
    assert fakes.calls() == []


def test_cli_prints_the_fix_and_exits_2(fakes, capsys):
    (Path(os.environ["PATH"]) / "kubectl").unlink()
    with pytest.raises(SystemExit) as exit_:
        kind_cli.main(["status"])
    assert exit_.value.code == 2
    assert "kubectl not found on PATH" in capsys.readouterr().err


def test_stopped_docker_daemon_is_a_clear_error(fakes):
    fakes.on("docker", "info", rc=1, stderr="Cannot connect to the Docker daemon at "
             "unix:///var/run/docker.sock. Is the docker daemon running?\n")
    with pytest.raises(BackendUnavailable) as err:
        kind_lifecycle.check_docker()
    assert "Cannot connect to the Docker daemon" in str(err.value)
    assert "start Docker" in str(err.value)


# --------------------------------------------------------------------------- kind lifecycle
def test_existing_cluster_is_reused(fakes):
    fakes.on("kind", "get clusters", stdout="other\nkflabs\n")
    assert kind_lifecycle.create_cluster() is False
    assert fakes.argvs("kind") == [["get", "clusters"]]


def test_new_cluster_uses_the_pinned_image_and_keeps_the_current_context(fakes):
    fakes.on("kind", "get clusters", stdout="other\n")
    fakes.on("kubectl", "config current-context", stdout="work-cluster\n")
    assert kind_lifecycle.create_cluster() is True
    config = str(Path(kind_serving.paths.cluster_dir()) / "kind" / "kind-config.yaml")
    assert fakes.argvs("kind")[1] == ["create", "cluster", "--name", "kflabs", "--config", config,
                                      "--image", versions.pin("kind_node_image"), "--wait", "300s"]
    assert fakes.argvs("kubectl") == [["config", "current-context"],
                                      ["config", "use-context", "work-cluster"]]


def test_failed_create_reports_kinds_error(fakes):
    fakes.on("kind", "get clusters", stdout="")
    fakes.on("kind", "create cluster", rc=1,
             stderr="ERROR: failed to create cluster: running kind with rootless provider "
                    "requires cgroup v2\n")
    with pytest.raises(kubectl_run.CommandFailed) as err:
        kind_lifecycle.create_cluster()
    assert "requires cgroup v2" in str(err.value) and "exit 1" in str(err.value)


def test_delete_is_safe_twice(fakes):
    fakes.on("kind", "get clusters", stdout="kflabs\n", times=1)
    fakes.on("kind", "get clusters", stdout="")
    assert kind_lifecycle.delete_cluster() is True
    assert kind_lifecycle.delete_cluster() is False
    deletes = [a for a in fakes.argvs("kind") if a[0] == "delete"]
    assert deletes == [["delete", "cluster", "--name", "kflabs"]]


def test_kind_version_other_than_the_pin_warns(fakes, capsys):
    fakes.on("kind", "version", stdout="kind v0.20.0 go1.20 linux/amd64\n")
    kind_lifecycle.check_kind_version()
    assert "not the pinned kind" in capsys.readouterr().out


# --------------------------------------------------------------------------- fake GPUs
def test_fake_gpus_are_json_patched_onto_worker_status_only(fakes):
    layout = {"kflabs-worker": 3, "kflabs-worker2": 3, "kflabs-worker3": 2}
    fakes.on("kubectl", "get nodes", stdout=nodes_json(layout))
    assert kind_lifecycle.patch_fake_gpus(8, sleep=no_sleep) == layout
    patches = [a for a in fakes.argvs("kubectl") if "patch" in a]
    assert len(patches) == 3
    assert patches[0] == [*CTX, "patch", "node", "kflabs-worker", "--subresource=status",
                          "--type=json", "-p",
                          '[{"op": "add", "path": "/status/capacity/example.com~1gpu", '
                          '"value": "3"}]']
    assert not any("kflabs-control-plane" in a for a in patches)


def test_fake_gpus_not_allocatable_in_time_is_an_error(fakes):
    fakes.on("kubectl", "get nodes", stdout=nodes_json({}))
    with pytest.raises(LabError, match="allocatable"):
        kind_lifecycle.patch_fake_gpus(8, timeout=0, sleep=no_sleep)


def test_cluster_not_from_the_kit_config_has_no_gpu_workers(fakes):
    fakes.on("kubectl", "get nodes", stdout=json.dumps({"items": [
        {"metadata": {"name": "kind-control-plane", "labels": {}}}]}))
    with pytest.raises(LabError, match="kind-config.yaml"):
        kind_lifecycle.worker_nodes()


@pytest.mark.parametrize("total, expected", [(8, [3, 3, 2]), (6, [2, 2, 2]), (0, [0, 0, 0])])
def test_gpu_layout_spreads_the_total(total, expected):
    assert list(kind_lifecycle.gpu_layout(["a", "b", "c"], total).values()) == expected


@pytest.mark.parametrize("node_gpus, expected", [([2, 2, 2], [2, 2, 2]), ([2, 2], [2, 2, 0]),
                                                 ([2, 2, 2, 2], [3, 3, 2]), ([], [0, 0, 0])])
def test_a_scenario_s_nodes_map_onto_the_three_workers(node_gpus, expected):
    layout = kind_lifecycle.scenario_layout(["a", "b", "c"], node_gpus)
    assert list(layout.values()) == expected and sum(expected) == sum(node_gpus)


def test_kind_gives_the_workers_a_scenario_s_gpus_then_the_cluster_s_back(fakes):
    """Lab 01's two-jobs case needs 6 GPUs on 3 nodes; kind's cluster-up gives 8."""
    from helpers import backend
    from helpers.scheduling import make_nodes

    kind = backend.make("kind", "test")
    fakes.on("kubectl", "get nodes", times=2, stdout=nodes_json(  # the workers, then the check
        {"kflabs-worker": 2, "kflabs-worker2": 2, "kflabs-worker3": 2}))
    kind.prepare_nodes(None, make_nodes(3, 2))
    values = [json.loads(a[-1])[0]["value"] for a in fakes.argvs("kubectl") if "patch" in a]
    assert values == ["2", "2", "2"]
    fakes.on("kubectl", "get nodes", stdout=nodes_json(
        {"kflabs-worker": 3, "kflabs-worker2": 3, "kflabs-worker3": 2}))
    kind.release_nodes(None)
    values = [json.loads(a[-1])[0]["value"] for a in fakes.argvs("kubectl") if "patch" in a]
    assert values[3:] == ["3", "3", "2"]


# --------------------------------------------------------------------------- webhook retries
def test_webhook_connection_refused_is_retried_then_succeeds(fakes, capsys):
    refused = ('Error from server (InternalError): Internal error occurred: failed calling '
               'webhook "mutatejob.volcano.sh": dial tcp 10.96.1.2:443: connect: connection '
               'refused\n')
    fakes.on("kubectl", "apply", rc=1, stderr=refused, times=2)
    fakes.on("kubectl", "apply", stdout="job.batch.volcano.sh/x created\n")
    slept = []
    kubectl_run.retry_transient(["kubectl", *CTX, "apply", "-f", "x.yaml"], what="apply x",
                            timeout=60, sleep=slept.append)
    assert len(fakes.calls("kubectl")) == 3 and len(slept) == 2
    assert "webhook not ready yet" in capsys.readouterr().out


def test_x509_is_retried_but_a_real_rejection_is_not(fakes):
    fakes.on("kubectl", "first", rc=1, stderr="tls: failed to verify certificate: x509: "
             "certificate signed by unknown authority\n", times=1)
    kubectl_run.retry_transient(["kubectl", "first"], what="t", timeout=60, sleep=no_sleep)
    fakes.on("kubectl", "second", rc=1, stderr='The Job "x" is invalid: spec.minAvailable: '
             "Invalid value: 5: must be <= total replicas\n")
    with pytest.raises(kubectl_run.CommandFailed, match="minAvailable"):
        kubectl_run.retry_transient(["kubectl", "second"], what="t", timeout=60, sleep=no_sleep)
    assert len([c for c in fakes.argvs("kubectl") if c == ["second"]]) == 1


def test_webhook_that_never_comes_up_gives_up_with_advice(fakes):
    fakes.on("kubectl", rc=1, stderr="no endpoints available for service "
             '"kserve-webhook-server-service"\n')
    with pytest.raises(kubectl_run.CommandFailed) as err:
        kubectl_run.retry_transient(["kubectl", "apply"], what="apply KServe", timeout=0,
                                sleep=no_sleep)
    assert "webhook start-up error" in str(err.value) and "no endpoints" in str(err.value)


# --------------------------------------------------------------------------- installs
def test_volcano_install_applies_the_pinned_manifest_waits_and_probes_admission(fakes):
    fakes.on("kubectl", "create --dry-run=server", rc=1, times=1,
             stderr='failed calling webhook "mutatejob.volcano.sh": connect: connection refused')
    kind_installs.install_volcano(timeout=120)
    argvs = fakes.argvs("kubectl")
    assert argvs[0] == [*CTX, "apply", "--server-side", "--force-conflicts", "-f",
                        "https://raw.githubusercontent.com/volcano-sh/volcano/"
                        f"{versions.pin('volcano')}/installer/volcano-development.yaml"]
    rollouts = [a[a.index("status") + 1] for a in argvs if "rollout" in a]
    assert rollouts == ["deployment/volcano-admission", "deployment/volcano-controllers",
                        "deployment/volcano-scheduler"]
    assert all("--timeout=120s" in a for a in argvs if "rollout" in a)
    probes = [c for c in fakes.calls("kubectl") if "--dry-run=server" in c["argv"]]
    assert len(probes) == 2  # refused once, then admitted
    assert json.loads(probes[-1]["stdin"])["apiVersion"] == "batch.volcano.sh/v1alpha1"


def test_rollout_timeout_prints_pods_events_and_podgroups(fakes):
    fakes.on("kubectl", "rollout status", rc=1,
             stderr="error: timed out waiting for the condition\n")
    fakes.on("kubectl", "get pods", stdout="NAME READY STATUS\nvolcano-scheduler-x 0/1 "
             "ImagePullBackOff\n")
    fakes.on("kubectl", "get events", stdout="LAST SEEN TYPE REASON\n1m Warning Failed "
             "pull access denied\n")
    fakes.on("kubectl", "get podgroups", rc=1, stderr='error: the server doesn\'t have a '
             'resource type "podgroups"\n')
    with pytest.raises(kubectl_run.CommandFailed) as err:
        kubectl_run.rollout("volcano-system", "volcano-scheduler", 5)
    msg = str(err.value)
    assert "did not become available within 5 s" in msg
    assert "ImagePullBackOff" in msg and "pull access denied" in msg
    assert "podgroups:" in msg and "could not read" in msg


def test_cert_manager_install_waits_for_its_three_deployments(fakes):
    kind_installs.install_cert_manager(timeout=60)
    argvs = fakes.argvs("kubectl")
    assert argvs[0][-1].endswith(f"/{versions.pin('cert_manager')}/cert-manager.yaml")
    assert [a[a.index("status") + 1] for a in argvs if "rollout" in a] == [
        "deployment/cert-manager", "deployment/cert-manager-cainjector",
        "deployment/cert-manager-webhook"]
    probe = [c for c in fakes.calls("kubectl") if "--dry-run=server" in c["argv"]][0]
    assert json.loads(probe["stdin"])["kind"] == "Issuer"


def _inferenceservice_config(mode: str, disable_ingress: bool) -> str:
    return json.dumps({"data": {
        "deploy": json.dumps({"defaultDeploymentMode": mode}),
        "ingress": json.dumps({"ingressClassName": "istio",
                               "disableIngressCreation": disable_ingress}),
    }})


def test_kserve_install_order_and_standard_mode(fakes):
    fakes.on("kubectl", "get configmap inferenceservice-config",
             stdout=_inferenceservice_config("Serverless", False))
    kind_installs.install_kserve(timeout=60)
    calls = fakes.calls("kubectl")
    argvs = [c["argv"] for c in calls]
    assert json.loads(calls[0]["stdin"]) == {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": "kserve"}}
    applied = [a[-1] for a in argvs if "--server-side" in a]
    base = f"https://github.com/kserve/kserve/releases/download/{versions.pin('kserve')}"
    assert applied == [f"{base}/kserve.yaml", f"{base}/kserve-cluster-resources.yaml"]
    (patch,) = [a for a in argvs if a[2] == "patch"]
    data = json.loads(patch[patch.index("-p") + 1])["data"]
    assert json.loads(data["deploy"])["defaultDeploymentMode"] == "Standard"
    ingress = json.loads(data["ingress"])
    assert ingress["disableIngressCreation"] is True and ingress["ingressClassName"] == "istio"
    assert [*CTX, "rollout", "restart", "deployment/kserve-controller-manager", "-n",
            "kserve"] in argvs


def test_kserve_already_standard_is_left_alone(fakes):
    fakes.on("kubectl", "get configmap", stdout=_inferenceservice_config("Standard", True))
    assert kind_installs.configure_kserve_standard(timeout=60) is False
    assert not any("patch" in a or "restart" in a for a in fakes.argvs("kubectl"))


def _operator(command: list[str]) -> str:
    return json.dumps({"spec": {"template": {"spec": {"containers": [
        {"name": "training-operator", "command": command}]}}}})


def test_training_operator_is_installed_then_its_deployment_patched(fakes):
    fakes.on("kubectl", "get deployment training-operator", rc=1, times=1,
             stderr='Error from server (NotFound): deployments.apps "training-operator" '
                    "not found\n")
    fakes.on("kubectl", "get deployment training-operator", stdout=_operator(["/manager"]))
    kind_installs.install_training_operator(timeout=60)
    argvs = fakes.argvs("kubectl")
    apply = [a for a in argvs if "apply" in a][0]
    assert apply[-2:] == ["-k", "github.com/kubeflow/trainer.git/manifests/overlays/standalone"
                          f"?ref={versions.pin('training_operator')}"]
    (patch,) = [a for a in argvs if "patch" in a]
    assert patch[:7] == [*CTX, "patch", "deployment", "training-operator", "-n", "kubeflow"]
    assert json.loads(patch[-1]) == [{"op": "add",
                                      "path": "/spec/template/spec/containers/0/command/1",
                                      "value": "--gang-scheduler-name=volcano"}]
    assert not any("pod" in a for a in patch), "the Deployment is patched, never a pod"
    assert "rollout" in argvs[-1]


def test_training_operator_already_patched_is_not_reapplied(fakes):
    fakes.on("kubectl", "get deployment training-operator",
             stdout=_operator(["/manager", "--gang-scheduler-name=volcano"]))
    kind_installs.install_training_operator(timeout=60)
    argvs = fakes.argvs("kubectl")
    assert not any("apply" in a or "patch" in a for a in argvs)
    assert fakes.calls("git") == []


def test_other_gang_scheduler_value_is_replaced(fakes):
    fakes.on("kubectl", "get deployment training-operator",
             stdout=_operator(["/manager", "--gang-scheduler-name=scheduler-plugins"]))
    assert kind_installs.patch_training_operator() is True
    patch = [a for a in fakes.argvs("kubectl") if "patch" in a][0]
    assert json.loads(patch[-1])[0]["op"] == "replace"
    assert json.loads(patch[-1])[0]["path"].endswith("/command/1")


def test_training_operator_install_needs_git(fakes):
    (Path(os.environ["PATH"]) / "git").unlink()
    fakes.on("kubectl", "get deployment", rc=1, stderr="NotFound")
    with pytest.raises(BackendUnavailable, match="git"):
        kind_installs.install_training_operator(timeout=60)


def test_up_runs_every_step_in_order(fakes):
    fakes.on("kind", "version", stdout=f"kind {versions.pin('kind')} go1.24 linux/amd64\n")
    fakes.on("kind", "get clusters", stdout="")
    fakes.on("kubectl", "get nodes", stdout=nodes_json(
        {"kflabs-worker": 3, "kflabs-worker2": 3, "kflabs-worker3": 2}))
    fakes.on("kubectl", "get configmap", stdout=_inferenceservice_config("Standard", True))
    fakes.on("kubectl", "get deployment training-operator",
             stdout=_operator(["/manager", "--gang-scheduler-name=volcano"]))
    summary = kind_installs.up(build_image=False, timeout=30)
    assert summary["installed"] == list(kind_installs.COMPONENTS)
    assert sum(summary["gpus"].values()) == kind_lifecycle.TOTAL_FAKE_GPUS
    order = [(c["tool"], " ".join(c["argv"])) for c in fakes.calls()]
    firsts = {}
    for i, (tool, line) in enumerate(order):
        for key in ("docker info", "kind create cluster", "wait --for=condition=Ready nodes",
                    "patch node", "volcano-development.yaml", "cert-manager.yaml",
                    "kserve.yaml", "trainer.git"):
            if key in f"{tool} {line}" and key not in firsts:
                firsts[key] = i
    # (the Training Operator is already patched, so the first trainer.git apply is Trainer v2's)
    assert list(firsts) == ["docker info", "kind create cluster",
                            "wait --for=condition=Ready nodes", "patch node",
                            "volcano-development.yaml", "cert-manager.yaml", "kserve.yaml",
                            "trainer.git"]
    # Every kubectl call names the kit's context, except kubeconfig bookkeeping.
    for argv in fakes.argvs("kubectl"):
        assert argv[:2] == CTX or argv[0] == "config", argv


def test_no_registry_trainer_v2_applies_the_rendered_installers(fakes, monkeypatch, tmp_path, capsys):
    """No registry: Trainer v2 is installed from the installers rendered from the modules (as
    files, not kustomize URLs; no git needed), after the images they start are kind-loaded."""
    from helpers.backend.kind import image_build, sources
    from helpers.backend.kind import trainer_v2 as kind_trainer_v2

    monkeypatch.setenv(sources.NO_REGISTRY_ENV, "1")
    (Path(os.environ["PATH"]) / "git").unlink()
    manager_image = f"ghcr.io/kubeflow/trainer/trainer-controller-manager:{versions.pin('trainer')}"
    jobset_image = f"registry.k8s.io/jobset/jobset:{versions.pin('jobset')}"
    files = {"trainer-v2": tmp_path / "trainer-v2.yaml",
             "trainer-v2-runtimes": tmp_path / "trainer-v2-runtimes.yaml"}
    files["trainer-v2"].write_text("\n---\n".join(
        json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                    "spec": {"template": {"spec": {"containers": [{"name": "m", "image": image}]}}}})
        for name, image in (("jobset-controller-manager", jobset_image),
                            ("kubeflow-trainer-controller-manager", manager_image))))
    files["trainer-v2-runtimes"].write_text(json.dumps(
        {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
         "metadata": {"name": "torch-distributed"}}))
    rendered, loaded = [], []
    monkeypatch.setattr(sources, "rendered_installer",
                        lambda component: rendered.append(component) or files[component])
    monkeypatch.setattr(image_build, "load_into_kind", lambda refs, cluster: loaded.append((refs, cluster)))
    kind_installs.install_trainer_v2(timeout=60)
    assert rendered == ["trainer-v2", "trainer-v2-runtimes"]
    assert loaded == [(sorted([jobset_image, manager_image]), kube_names.KIND_CLUSTER_NAME)]
    argvs = fakes.argvs("kubectl")
    applies = [a for a in argvs if "apply" in a]
    assert [a[-2:] for a in applies] == [
        ["-f", str(files["trainer-v2"])], ["-f", str(files["trainer-v2-runtimes"])],
        ["-f", str(kind_trainer_v2.runtime_file())]]
    for a in applies:
        assert a[:2] == CTX and "--server-side" in a and "--force-conflicts" in a
    rollouts = [a for a in argvs if "rollout" in a]
    assert [r[4] for r in rollouts] == ["deployment/jobset-controller-manager",
                                        "deployment/kubeflow-trainer-controller-manager"]
    assert argvs.index(rollouts[-1]) < argvs.index(applies[1])
    out = capsys.readouterr().out
    assert "skipping" not in out and "loading the 2 image(s) trainer-v2 starts" in out


def test_up_rejects_unknown_components(fakes):
    with pytest.raises(LabError, match="unknown component"):
        kind_installs.up(components=["istio"], build_image=False)


# --------------------------------------------------------------------------- training image
def test_training_image_is_built_once_then_loaded_into_kind(fakes):
    tag = kind_images.training_image_tag()
    fakes.on("docker", "image inspect", rc=1, stderr=f"Error: No such image: {tag}\n", times=1)
    assert kind_images.ensure_training_image() == tag
    assert kind_images.ensure_training_image() == tag
    docker = fakes.argvs("docker")
    builds = [a for a in docker if a[0] == "build"]
    assert len(builds) == 1
    build = builds[0]
    context = Path(build[-1])
    assert build[:2] == ["build", "-f"] and build[2] == str(context / "train.Dockerfile")
    assert f"PYTHON_IMAGE={versions.pin('training_python_image')}" in build
    assert build[build.index("-t") + 1] == tag
    assert (context / "helpers" / "train.py").is_file() and (context / "data" / "iris.csv").is_file()
    assert not list(context.rglob("__pycache__"))
    assert fakes.argvs("kind") == [["load", "docker-image", tag, "--name", "kflabs"]] * 2


def test_image_tag_follows_the_content(monkeypatch, tmp_path):
    src = tmp_path / "train.py"
    src.write_text("print('v1')\n")
    monkeypatch.setattr(kind_images, "_image_sources", lambda: [("helpers/train.py", src)])
    first = kind_images.training_image_tag()
    assert first == kind_images.training_image_tag()
    src.write_text("print('v2')\n")
    assert kind_images.training_image_tag() != first
    assert first.startswith(f"{kind_images.TRAINING_IMAGE_REPO}:") and ":latest" not in first


# --------------------------------------------------------------------------- port-forward
def test_port_forward_reports_the_local_url_and_stops(fakes):
    fakes.on("kubectl", "port-forward",
             stdout="Forwarding from 127.0.0.1:43210 -> 8080\n", sleep=30)
    with kubectl_run.port_forward("iris-predictor", "kflabs-serving", 80) as fwd:
        assert fwd.url == "http://127.0.0.1:43210"
        assert fwd._proc.poll() is None
    assert fwd._proc.poll() is not None
    fwd.close()  # safe twice
    (argv,) = fakes.argvs("kubectl")
    assert argv == [*CTX, "port-forward", "-n", "kflabs-serving", "svc/iris-predictor", ":80",
                    "--address", "127.0.0.1"]


def test_port_forward_comes_back_on_the_same_port_when_kubectl_ends(fakes, monkeypatch):
    """kubectl ends when the forwarded pod goes away: the forward starts it again on the same
    local port (so the URL stays valid), retrying while it fails, until close()."""
    monkeypatch.setattr(kubectl_run.PortForward, "RESTART_DELAY", 0.1)
    fakes.on("kubectl", "port-forward", stdout="Forwarding from 127.0.0.1:43210 -> 8080\n",
             stderr="lost connection to pod\n", times=1)  # the pod is deleted
    fakes.on("kubectl", "port-forward", rc=1, stderr="error: no ready pod\n", times=2)
    fakes.on("kubectl", "port-forward", stdout="Forwarding from 127.0.0.1:43210 -> 8080\n",
             sleep=30)  # the Deployment's new pod
    with kubectl_run.port_forward("iris-predictor", "kflabs-serving", 80) as fwd:
        deadline = time.monotonic() + 20
        while fwd.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fwd.restarts == 1 and fwd.url == "http://127.0.0.1:43210"
        assert "no ready pod" in fwd.last_error
    argvs = fakes.argvs("kubectl")
    assert [a[a.index("svc/iris-predictor") + 1] for a in argvs] == [":80"] + ["43210:80"] * 3
    time.sleep(0.3)
    assert len(fakes.argvs("kubectl")) == 4  # closed: no more restarts


def test_port_forward_failure_says_what_kubectl_said(fakes):
    fakes.on("kubectl", "port-forward", rc=1,
             stderr='Error from server (NotFound): services "iris-predictor" not found\n')
    with pytest.raises(kubectl_run.CommandFailed) as err:
        kubectl_run.port_forward("iris-predictor", "kflabs-serving", timeout=10)
    assert 'services "iris-predictor" not found' in str(err.value)
    assert "get pods -n kflabs-serving" in str(err.value)


# --------------------------------------------------------------------------- status / down
def test_status_of_a_missing_cluster(fakes):
    fakes.on("kind", "get clusters", stdout="")
    assert kind_lifecycle.status() == {"cluster": "kflabs", "exists": False}


def test_cli_down_twice(fakes, capsys):
    fakes.on("kind", "get clusters", stdout="")
    assert kind_cli.main(["down"]) == 0
    assert kind_cli.main(["down"]) == 0
    assert "nothing to delete" in capsys.readouterr().out


# --------------------------------------------------------------------------- model upload
def _model_folder(tmp_path: Path, *files: str) -> Path:
    folder = tmp_path / "store" / "iris"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text('{"learner": {}}')
    return folder


def test_model_payload_is_the_one_model_file_under_its_name(tmp_path):
    import base64
    import io
    import tarfile

    folder = _model_folder(tmp_path, "model.json")
    payload = kind_serving.model_payload(folder, "iris-v2")
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(payload)), mode="r:gz") as tar:
        assert tar.getnames() == ["iris-v2/model.json"]


def _run_extract(payload: str, name: str, root: Path) -> subprocess.CompletedProcess:
    """The loader pod's unpack script, run here by this Python on a local folder."""
    return subprocess.run([sys.executable, "-c", kind_serving._EXTRACT, name, str(root)],
                          input=payload, capture_output=True, text=True, check=False)


def test_the_loader_script_unpacks_a_payload_and_replaces_the_old_model(tmp_path):
    """The script the loader pod runs (any Python 3: no tarfile filter needed)."""
    root = tmp_path / "mnt"
    (root / "iris").mkdir(parents=True)
    (root / "iris" / "model.ubj").write_text("old")
    (root / "other").mkdir()
    payload = kind_serving.model_payload(_model_folder(tmp_path, "model.json"), "iris")
    proc = _run_extract(payload, "iris", root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(root / "iris" / "model.json")]
    assert (root / "iris" / "model.json").read_text() == '{"learner": {}}'
    assert (root / "other").is_dir(), "another model's folder is left alone"


@pytest.mark.parametrize("member", ["../evil.json", "iris/../../evil.json", "/abs.json",
                                    "iris/sub/model.json", "iris/link"])
def test_the_loader_script_refuses_anything_but_files_under_the_name(tmp_path, member):
    import base64
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member.endswith("link"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    root = tmp_path / "mnt"
    root.mkdir()
    proc = _run_extract(base64.b64encode(buf.getvalue()).decode(), "iris", root)
    assert proc.returncode == 1 and "refused" in proc.stderr, (proc.returncode, proc.stderr)
    assert list(root.iterdir()) == [] and not (tmp_path / "evil.json").exists()
    assert _run_extract("", "..", root).returncode == 1


def test_model_payload_refuses_an_ambiguous_folder(tmp_path):
    from helpers.errors import ModelStoreError

    folder = _model_folder(tmp_path, "model.json", "model.ubj")
    with pytest.raises(ModelStoreError):
        kind_serving.model_payload(folder, "iris")


def test_extract_on_loader_streams_the_payload_through_kubectl_exec(fakes):
    fakes.on("kubectl", "exec", stdout="/mnt/models/iris\n/mnt/models/iris/model.json\n")
    files = kind_serving.extract_on_loader("UEsFBg==", "iris")
    assert files == ["/mnt/models/iris", "/mnt/models/iris/model.json"]
    (call,) = fakes.calls("kubectl")
    argv = call["argv"]
    assert argv[:8] == [*CTX, "exec", "-i", "-n", kube_names.MODEL_NAMESPACE, kind_serving.LOADER_POD,
                        "--"]
    assert argv[8:10] == ["python", "-c"] and argv[-1] == "iris"
    assert argv[10] == kind_serving._EXTRACT  # the script the two tests above run
    assert call["stdin"] == "UEsFBg=="


def test_upload_refuses_a_bad_model_name_before_touching_the_cluster(fakes, tmp_path):
    folder = _model_folder(tmp_path, "model.json")
    with pytest.raises(LabError, match="DNS-1123"):
        kind_serving.upload_model(folder, name="Iris_Model")
    assert fakes.calls() == []


@pytest.mark.parametrize("stderr", [
    'admission webhook "validatejob.volcano.sh" denied the request: unable to find job queue: '
    'queue.scheduling.volcano.sh "default" not found;',
    "Internal error occurred: failed calling webhook \"validation.webhook.serving.kserve.io\": "
    "tls: failed to verify certificate: x509: certificate signed by unknown authority",
])
def test_start_up_errors_are_recognised(stderr):
    assert kubectl_run.is_transient(stderr)


@pytest.mark.parametrize("stderr", [
    'The XGBoostJob "iris-train" is invalid: spec.xgbReplicaSpecs: Required value',
    'Error from server (Forbidden): pods is forbidden: User "x" cannot create resource',
])
def test_real_rejections_are_not_retried(stderr):
    assert not kubectl_run.is_transient(stderr)


def test_lab_functions_without_a_cluster_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with pytest.raises(BackendUnavailable, match="make cluster-up"):
        kind_training.ensure_model_pvc()
    with pytest.raises(BackendUnavailable, match="make cluster-up"):
        kind_serving.delete_inference_service()


def test_training_run_reads_the_accuracy_the_master_printed():
    from helpers import train

    run = kind_training.TrainingRun(job="iris-train", namespace="kflabs-serving", succeeded=True,
                              model_uri="pvc://model-store/iris/", model_file="iris/model.json",
                              pods={"iris-train-master-0": {"scheduler": "volcano", "node": "w",
                                                            "phase": "Succeeded"}})
    assert run.accuracy is None
    run.master_log = ("trained iris classifier: seed 42, test accuracy 0.978 on 45 held-out rows\n"
                      "saved model to /mnt/models/iris/model.json\n")
    assert run.accuracy == 0.978
    assert run.as_dict()["schedulers"] == ["volcano"]
    # The line parsed is the one helpers.train prints.
    assert "test accuracy {result.accuracy:.3f}" in Path(train.__file__).read_text()


def test_the_staged_image_context_alone_can_train(tmp_path):
    """What goes into the image (helpers/, data/) is enough for `python -m helpers.train`."""
    import subprocess

    context = kind_images.stage_training_context(tmp_path / "ctx")
    env = {k: v for k, v in os.environ.items() if k not in ("KFLABS_ROOT", "PYTHONPATH")}
    env.update(MPLBACKEND="Agg", MPLCONFIGDIR=str(tmp_path / "mpl"))
    # With -m, the working directory comes first on sys.path: the staged copy, not the repo.
    proc = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.__file__)"],
                          cwd=context, env=env, capture_output=True, text=True, check=True)
    assert Path(proc.stdout.strip()).parent == context / "helpers"
    proc = subprocess.run([sys.executable, "-m", "helpers.train", "--output-dir",
                           str(tmp_path / "store"), "--seed", "3"], cwd=context, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "store" / "iris" / "model.json").is_file()
    assert "test accuracy" in proc.stdout
