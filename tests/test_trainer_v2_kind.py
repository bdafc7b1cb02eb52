"""Kubeflow Trainer v2 on kind, without a cluster: the install's command lines (fake kubectl and
git on PATH, as in tests/test_cluster_commands.py) and the objects the v2 training path
applies (a recording stand-in for the Kubernetes client)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import versions
from helpers.backend.kind import installs as kind_installs
from helpers.backend.kind import trainer_v2 as kind_trainer_v2
from helpers.errors import BackendUnavailable, LabError
from helpers.kube import client as k8s
from helpers.scheduling import trainer_v2
from tests.test_cluster_commands import CTX, fakes  # noqa: F401 - the fixture, shared

IMAGE = "kflabs-train:0123456789ab"


def test_install_applies_upstreams_overlays_at_the_pin_then_the_kits_runtime(fakes):  # noqa: F811
    kind_installs.install_trainer_v2(timeout=60)
    argvs = [a for a in fakes.argvs("kubectl") if "version" not in a]
    pin = versions.pin("trainer")
    base = "github.com/kubeflow/trainer.git/manifests/overlays"
    applies = [a for a in argvs if "apply" in a]
    assert [a[-2:] for a in applies] == [
        ["-k", f"{base}/manager?ref={pin}"], ["-k", f"{base}/runtimes?ref={pin}"],
        ["-f", str(kind_trainer_v2.runtime_file())]]
    for a in applies:
        assert a[:2] == CTX and "--server-side" in a
    rollouts = [a for a in argvs if "rollout" in a]
    assert [r[4] for r in rollouts] == ["deployment/jobset-controller-manager",
                                        "deployment/kubeflow-trainer-controller-manager"]
    assert all(r[r.index("-n") + 1] == "kubeflow-system" for r in rollouts)
    # the controllers are up before anything goes through their webhooks
    assert argvs.index(rollouts[-1]) < argvs.index(applies[1])


def test_install_needs_git_for_kustomize(fakes):  # noqa: F811
    (Path(os.environ["PATH"]) / "git").unlink()
    with pytest.raises(BackendUnavailable, match="git"):
        kind_installs.install_trainer_v2(timeout=60)
    assert not [a for a in fakes.argvs("kubectl") if "apply" in a]


def test_trainer_v2_is_one_of_cluster_ups_components():
    assert kind_installs.COMPONENTS[-1] == "trainer-v2"
    assert kind_installs.COMPONENTS.index("training-operator") < kind_installs.COMPONENTS.index("trainer-v2")


def test_trainjob_manifest_sets_the_image_and_the_same_arguments_as_v1():
    from helpers.backend.kind import training

    job = kind_trainer_v2.trainjob_manifest(IMAGE, seed=7, fmt="ubj", model_name="iris-seven",
                                            n_estimators=5)
    v1 = training.training_job_manifest(IMAGE, seed=7, fmt="ubj", model_name="iris-seven",
                                        n_estimators=5)
    v1_args = v1["spec"]["xgbReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    assert job["kind"] == "TrainJob" and job["spec"]["trainer"]["image"] == IMAGE
    assert job["spec"]["trainer"]["args"] == v1_args
    assert job["spec"]["runtimeRef"]["name"] == kind_trainer_v2.runtime_manifest()["metadata"]["name"]
    with pytest.raises(LabError, match="DNS-1123"):
        kind_trainer_v2.trainjob_manifest(IMAGE, model_name="Iris_2")


class RecordingClient:
    """Stands in for helpers.kube.client: records applies/deletes, answers with a finished TrainJob."""

    def __init__(self, outcome: str = "Complete", log: str = ""):
        self.applied: list[dict] = []
        self.deleted: list[dict] = []
        self.outcome = outcome
        self.log = log

    def apply(self, api, obj, *a, **k):
        self.applied.append(obj)

    def delete(self, api, obj, *a, **k):
        self.deleted.append(obj)
        return False

    def ensure_namespace(self, api, name, *a, **k):
        pass

    def podgroups(self, api, ns):
        name = self.applied[-1]["metadata"]["name"]
        return [{"metadata": {"name": name}, "spec": {"minMember": 4}, "status": {"phase": "Running"}}]

    def pods(self, api, ns, selector=None):
        name = selector.split("=")[1]
        return [SimpleNamespace(metadata=SimpleNamespace(name=f"{name}-node-0-{i}-abcde"),
                                spec=SimpleNamespace(scheduler_name="volcano", node_name="kflabs-worker"),
                                status=SimpleNamespace(phase="Succeeded")) for i in range(4)]

    def get_custom(self, api, ref):
        return {"status": {"conditions": [{"type": self.outcome, "status": "True",
                                           "reason": "JobFailed", "message": "node 2 exited 1"}]}}

    conditions = staticmethod(k8s.conditions)
    load_manifests = staticmethod(k8s.load_manifests)

    def wait_for(self, predicate, timeout, what, **k):
        assert predicate(), what

    def pod_log(self, api, ns, pod, lines=20):
        return self.log

    def diagnose(self, api, ns):
        return "(diagnostics)"


def _patch(monkeypatch, fake):
    from helpers.backend.kind import training

    monkeypatch.setattr(kind_trainer_v2, "k8s", fake)
    monkeypatch.setattr(training, "k8s", fake)


def test_run_trainjob_applies_the_runtime_then_the_trainjob_and_reads_rank_0(monkeypatch):
    fake = RecordingClient(log="trained iris classifier: seed 42, test accuracy 0.978 on 45 held-out rows\n")
    _patch(monkeypatch, fake)
    run = kind_trainer_v2.run_trainjob(api=object(), image=IMAGE, seed=42)
    kinds = [o["kind"] for o in fake.applied]
    assert kinds == ["PersistentVolumeClaim", "ClusterTrainingRuntime", "TrainJob"]
    job = fake.applied[-1]
    _, kit_trainjob, runtime = trainer_v2.course_jobs()
    assert fake.applied[1] == runtime
    assert job["metadata"] == kit_trainjob["metadata"]
    assert job["spec"]["trainer"]["image"] == IMAGE
    assert job["spec"]["runtimePatches"] == kit_trainjob["spec"]["runtimePatches"]  # the model PVC
    assert [d["kind"] for d in fake.deleted] == ["TrainJob"]  # a previous run is replaced
    assert run.succeeded and run.accuracy == 0.978
    assert run.podgroup_min_member == 4 and run.podgroup_phases == ["Running"]
    assert run.model_uri == "pvc://model-store/iris/"
    assert {p["scheduler"] for p in run.pods.values()} == {"volcano"}


def test_run_trainjob_failure_names_the_reason_and_rank_0s_log(monkeypatch):
    _patch(monkeypatch, RecordingClient(outcome="Failed", log="Traceback: boom"))
    with pytest.raises(LabError, match=r"TrainJob kflabs-serving/iris-train-v2 failed: JobFailed: "
                                       r"node 2 exited 1\nrank 0 log:\nTraceback: boom"):
        kind_trainer_v2.run_trainjob(api=object(), image=IMAGE)
