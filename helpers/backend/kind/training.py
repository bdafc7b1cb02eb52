"""Training on kind: the model PVC and the chapter's gang-scheduled XGBoostJob running
``python -m helpers.train``, each safe to run twice.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.backend.base import Backend
from helpers.backend.kind import images
from helpers.errors import BackendUnavailable, LabError, ManifestError
from helpers.kube import client as k8s
from helpers.kube.names import KIND_CONTEXT as CONTEXT
from helpers.kube.names import MODEL_NAMESPACE, is_dns1123_label
from helpers.serving.isvc import pvc_uri

TRAINING_JOB = "iris-train"
def api_client(target: Backend | None = None):
    """A kubernetes ``ApiClient`` for the kind cluster (or the resolved ``target`` backend)."""
    if target is not None and target.is_cluster:
        return k8s.connect(target.kubeconfig, target.context)
    kubeconfig = k8s.default_kubeconfig()
    problem = k8s.probe(kubeconfig, CONTEXT)
    if problem:
        raise BackendUnavailable(f"the kind cluster is not reachable: {problem}. Fix: "
                                 '`make cluster-up`, or run the lab with BACKEND="sim"')
    return k8s.connect(kubeconfig, CONTEXT)


def _training_dir() -> Path:
    return paths.manifests_dir("training")


def _one(path: Path, kind: str) -> dict:
    docs = [d for d in k8s.load_manifests(path) if d.get("kind") == kind]
    if len(docs) != 1:
        raise ManifestError(f"{path} should hold exactly one {kind}, found {len(docs)}")
    return docs[0]


def model_pvc_manifest() -> dict:
    """The model volume's PersistentVolumeClaim (``cluster/manifests/training/10-model-pvc.yaml``)."""
    return _one(_training_dir() / "10-model-pvc.yaml", "PersistentVolumeClaim")


def ensure_model_pvc(target: Backend | None = None, *, api=None) -> str:
    """Create the model namespace and PVC if missing (idempotent); return the PVC name.

    kind's default StorageClass binds the volume when its first pod starts, so the PVC stays
    Pending until the training job runs: that is expected, not an error.
    """
    api = api or api_client(target)
    pvc = model_pvc_manifest()
    k8s.ensure_namespace(api, pvc["metadata"]["namespace"])
    k8s.apply(api, pvc)
    return pvc["metadata"]["name"]


def delete_model_pvc(target: Backend | None = None, *, api=None) -> bool:
    """Delete the model PVC (ignore-not-found; the model on it goes too). Safe twice."""
    return k8s.delete(api or api_client(target), model_pvc_manifest())


def training_job_manifest(image: str, *, seed: int = 42, fmt: str = "json",
                          model_name: str = "iris", n_estimators: int | None = None) -> dict:
    """The XGBoostJob of ``20-xgboostjob.yaml`` with the image and training arguments set.

    Args:
        image: the loaded training image (:func:`ensure_training_image`).
        seed: seed of the split and of XGBoost (as ``python -m helpers.train --seed``).
        fmt: ``json`` or ``ubj``: XGBoost's own format (``save_model``).
        model_name: the model folder on the PVC, and the name KServe serves it under.
        n_estimators: boosting rounds; None keeps helpers.training's default.
    """
    from helpers import training

    if fmt not in training.FORMATS:
        raise ManifestError(f"format {fmt!r}: choose one of {', '.join(training.FORMATS)}")
    if not is_dns1123_label(model_name):
        raise ManifestError(f"model name {model_name!r} must be a DNS-1123 label (it becomes a "
                            "folder on the PVC and part of KServe's URLs)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ManifestError(f"seed must be an integer, got {seed!r}")
    job = copy.deepcopy(_one(_training_dir() / "20-xgboostjob.yaml", "XGBoostJob"))
    args = ["--output-dir", "/mnt/models", "--seed", str(seed), "--format", fmt,
            "--name", model_name]
    if n_estimators is not None:
        args += ["--n-estimators", str(int(n_estimators))]
    for spec in job["spec"]["xgbReplicaSpecs"].values():
        container = spec["template"]["spec"]["containers"][0]
        container["image"] = image
        container["args"] = list(args)
    return job


def _job_ref(job: dict) -> tuple[str, str, str, str, str]:
    group, version = job["apiVersion"].split("/")
    return group, version, job["metadata"]["namespace"], "xgboostjobs", job["metadata"]["name"]




def delete_training_job(target: Backend | None = None, *, api=None,
                        name: str = TRAINING_JOB, wait: float = 60.0) -> bool:
    """Delete the XGBoostJob and its pods (ignore-not-found), waiting until it is gone."""
    api = api or api_client(target)
    ref = {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob",
           "metadata": {"name": name, "namespace": MODEL_NAMESPACE}}
    deleted = k8s.delete(api, ref, propagation="Foreground")
    if deleted and wait:
        group, version = ref["apiVersion"].split("/")
        k8s.wait_for(lambda: k8s.get_custom(api, (group, version, MODEL_NAMESPACE, "xgboostjobs",
                                          name)) is None,
                     wait, f"XGBoostJob {MODEL_NAMESPACE}/{name} to be deleted", interval=1.0,
                     diagnostics=lambda: k8s.diagnose(api, MODEL_NAMESPACE))
    return deleted



@dataclass
class TrainingRun:
    """What a cluster training run showed: the gang, where it ran, where the model went."""

    job: str
    namespace: str
    succeeded: bool
    model_uri: str
    model_file: str
    pods: dict[str, dict[str, str]] = field(default_factory=dict)
    podgroup_phases: list[str] = field(default_factory=list)
    podgroup_min_member: int | None = None
    master_log: str = ""

    @property
    def accuracy(self) -> float | None:
        """Held-out accuracy the master printed (``python -m helpers.train``), if it did."""
        match = re.search(r"test accuracy ([0-9.]+)", self.master_log)
        return float(match.group(1)) if match else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for ``results.write_results``."""
        return {
            "job": self.job, "namespace": self.namespace, "succeeded": self.succeeded,
            "model_uri": self.model_uri, "model_file": self.model_file, "pods": self.pods,
            "schedulers": sorted({p["scheduler"] for p in self.pods.values()}),
            "podgroup_phases": self.podgroup_phases,
            "podgroup_min_member": self.podgroup_min_member, "accuracy": self.accuracy,
        }


def observe_gang(api, run_: TrainingRun, podgroup: str, pod_selector: str) -> None:
    """Record, in ``run_``, the PodGroup's phase changes and minMember and each pod's placement.

    One pass of the wait of :func:`run_training_job` (XGBoostJob) and of
    :func:`helpers.backend.kind.trainer_v2.run_trainjob` (TrainJob): both gang-schedule
    through a Volcano PodGroup named after the job.
    """
    for pg in k8s.podgroups(api, run_.namespace):
        if pg["metadata"]["name"] == podgroup:
            phase = (pg.get("status") or {}).get("phase", "Pending")
            if not run_.podgroup_phases or run_.podgroup_phases[-1] != phase:
                run_.podgroup_phases.append(phase)
            run_.podgroup_min_member = pg.get("spec", {}).get("minMember")
    for pod in k8s.pods(api, run_.namespace, pod_selector):
        run_.pods[pod.metadata.name] = {"scheduler": pod.spec.scheduler_name or "",
                                        "node": pod.spec.node_name or "",
                                        "phase": pod.status.phase or ""}


def run_training_job(target: Backend | None = None, *, seed: int = 42,
                     fmt: str = "json", model_name: str = "iris",
                     n_estimators: int | None = None, image: str | None = None,
                     timeout: float = 600.0, api=None) -> TrainingRun:
    """Train the Iris model on the cluster as a gang-scheduled XGBoostJob, onto the PVC.

    Builds/loads the training image (unless ``image`` is given), makes sure the model PVC
    exists, replaces any previous run of the job, and watches it to the end, recording what
    shows the gang scheduling: the PodGroup the operator made (its phases and minMember)
    and every pod's scheduler and node. The operator deletes the PodGroup when the job ends,
    so it is observed while the job runs.

    Args:
        target: the resolved backend (default: the kind context).
        seed, fmt, model_name, n_estimators: as ``python -m helpers.train``.
        image: an already loaded image reference.
        timeout: seconds to wait for the job to finish.

    Returns:
        A :class:`TrainingRun`; ``model_uri`` is the ``storageUri`` for the InferenceService.

    Raises:
        WaitTimeout: the job did not finish; the message holds pods, events and PodGroups.
        LabError: the job failed; the message holds the master's log and the diagnostics.
    """
    api = api or api_client(target)
    image = image or images.ensure_training_image()
    pvc = ensure_model_pvc(api=api)
    job = training_job_manifest(image, seed=seed, fmt=fmt, model_name=model_name,
                                n_estimators=n_estimators)
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    delete_training_job(api=api, name=name)
    k8s.apply(api, job)
    run_ = TrainingRun(job=name, namespace=ns, succeeded=False,
                       model_uri=pvc_uri(pvc, model_name),
                       model_file=f"{model_name}/model.{fmt}")
    group, version, _, plural, _ = _job_ref(job)

    def observe() -> bool:
        observe_gang(api, run_, name, f"training.kubeflow.org/job-name={name}")
        conds = k8s.conditions(k8s.get_custom(api, (group, version, ns, plural, name)))
        return any(conds.get(t, {}).get("status") == "True" for t in ("Succeeded", "Failed"))

    k8s.wait_for(observe, timeout, f"XGBoostJob {ns}/{name} to finish", interval=2.0,
                 diagnostics=lambda: k8s.diagnose(api, ns))
    conds = k8s.conditions(k8s.get_custom(api, (group, version, ns, plural, name)))
    master = next((p for p in run_.pods if "-master-" in p), None)
    run_.master_log = k8s.pod_log(api, ns, master) if master else ""
    run_.succeeded = conds.get("Succeeded", {}).get("status") == "True"
    if not run_.succeeded:
        failed = conds.get("Failed", {})
        raise LabError(f"XGBoostJob {ns}/{name} failed: {failed.get('reason', '?')}: "
                       f"{failed.get('message', '')}\nmaster log:\n{run_.master_log}\n"
                       f"{k8s.diagnose(api, ns)}")
    return run_


