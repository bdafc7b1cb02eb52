"""Training on kind through Kubeflow Trainer v2: the kit's Iris TrainJob
(``cluster/manifests/training/40-trainjob.yaml`` on the ClusterTrainingRuntime
``30-trainingruntime-xgboost-volcano.yaml``) onto the model PVC, each step safe to run twice.

The install (:func:`helpers.backend.kind.installs.install_trainer_v2`, part of
``make cluster-up``) is upstream's, at the pin ``trainer``, beside the Training Operator v1.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.backend.base import Backend
from helpers.backend.kind import images
from helpers.backend.kind.training import TrainingRun, _one, api_client, ensure_model_pvc, observe_gang
from helpers.errors import LabError, ManifestError
from helpers.kube import client as k8s
from helpers.kube.names import MODEL_NAMESPACE
from helpers.serving.isvc import pvc_uri

RUNTIME_FILE = "30-trainingruntime-xgboost-volcano.yaml"
TRAINJOB_FILE = "40-trainjob.yaml"
TRAINJOB_REF = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
#: The label JobSet puts on every pod of a JobSet (named after the TrainJob).
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"


def runtime_file() -> Path:
    """The kit's ClusterTrainingRuntime file (Volcano gang scheduling, the kit's training image)."""
    return paths.manifests_dir("training") / RUNTIME_FILE


def runtime_manifest() -> dict[str, Any]:
    """The kit's ClusterTrainingRuntime, as applied."""
    return _one(runtime_file(), "ClusterTrainingRuntime")


def trainjob_manifest(image: str, *, seed: int = 42, fmt: str = "json", model_name: str = "iris",
                      n_estimators: int | None = None) -> dict[str, Any]:
    """The TrainJob of ``40-trainjob.yaml`` with the image and training arguments set.

    The arguments are v1's, checked the same way
    (:func:`helpers.backend.kind.training.training_job_manifest`).
    """
    from helpers.backend.kind.training import training_job_manifest

    v1 = training_job_manifest(image, seed=seed, fmt=fmt, model_name=model_name,
                               n_estimators=n_estimators)
    v1_pod = next(iter(v1["spec"]["xgbReplicaSpecs"].values()))["template"]["spec"]
    args = v1_pod["containers"][0]["args"]
    job = copy.deepcopy(_one(paths.manifests_dir("training") / TRAINJOB_FILE, "TrainJob"))
    job["spec"]["trainer"]["image"] = image
    job["spec"]["trainer"]["args"] = list(args)
    return job


def delete_trainjob(target: Backend | None = None, *, api=None, name: str | None = None,
                    wait: float = 60.0) -> bool:
    """Delete the TrainJob (and, through its owner references, its JobSet, pods and PodGroup),
    ignore-not-found, waiting until it is gone."""
    api = api or api_client(target)
    name = name or _one(paths.manifests_dir("training") / TRAINJOB_FILE, "TrainJob")["metadata"]["name"]
    ref = {"apiVersion": "/".join(TRAINJOB_REF[:2]), "kind": "TrainJob",
           "metadata": {"name": name, "namespace": MODEL_NAMESPACE}}
    deleted = k8s.delete(api, ref, propagation="Foreground")
    if deleted and wait:
        group, version, plural = TRAINJOB_REF
        k8s.wait_for(lambda: k8s.get_custom(api, (group, version, MODEL_NAMESPACE, plural, name)) is None,
                     wait, f"TrainJob {MODEL_NAMESPACE}/{name} to be deleted", interval=1.0,
                     diagnostics=lambda: k8s.diagnose(api, MODEL_NAMESPACE))
    return deleted


def run_trainjob(target: Backend | None = None, *, seed: int = 42, fmt: str = "json",
                 model_name: str = "iris", n_estimators: int | None = None,
                 image: str | None = None, timeout: float = 600.0, api=None) -> TrainingRun:
    """Train the Iris model on the cluster as the kit's TrainJob (Trainer v2), onto the PVC.

    The v2 counterpart of :func:`helpers.backend.kind.training.run_training_job`: applies the
    kit's runtime (idempotent), replaces any previous run, and watches the TrainJob to
    ``Complete`` or ``Failed``, recording its PodGroup (named after the TrainJob) and every
    pod's scheduler and node. Rank 0 (node 0) saves the model and prints the accuracy.

    Raises:
        WaitTimeout: the TrainJob did not finish; the message holds pods, events, PodGroups.
        LabError: it failed; the message holds rank 0's log and the diagnostics.
    """
    api = api or api_client(target)
    image = image or images.ensure_training_image()
    pvc = ensure_model_pvc(api=api)
    k8s.apply(api, runtime_manifest())
    job = trainjob_manifest(image, seed=seed, fmt=fmt, model_name=model_name,
                            n_estimators=n_estimators)
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    if ns != MODEL_NAMESPACE:
        raise ManifestError(f"{TRAINJOB_FILE} must stay in namespace {MODEL_NAMESPACE}, "
                            f"where the model PVC is (it says {ns})")
    delete_trainjob(api=api, name=name)
    k8s.apply(api, job)
    run_ = TrainingRun(job=name, namespace=ns, succeeded=False, model_uri=pvc_uri(pvc, model_name),
                       model_file=f"{model_name}/model.{fmt}")
    group, version, plural = TRAINJOB_REF

    def observe() -> bool:
        observe_gang(api, run_, name, f"{JOBSET_LABEL}={name}")
        conds = k8s.conditions(k8s.get_custom(api, (group, version, ns, plural, name)))
        return any(conds.get(t, {}).get("status") == "True" for t in ("Complete", "Failed"))

    k8s.wait_for(observe, timeout, f"TrainJob {ns}/{name} to finish", interval=2.0,
                 diagnostics=lambda: k8s.diagnose(api, ns))
    conds = k8s.conditions(k8s.get_custom(api, (group, version, ns, plural, name)))
    rank0 = next((p for p in sorted(run_.pods) if f"{name}-node-0-0-" in p), None)
    run_.master_log = k8s.pod_log(api, ns, rank0) if rank0 else ""
    run_.succeeded = conds.get("Complete", {}).get("status") == "True"
    if not run_.succeeded:
        failed = conds.get("Failed", {})
        raise LabError(f"TrainJob {ns}/{name} failed: {failed.get('reason', '?')}: "
                       f"{failed.get('message', '')}\nrank 0 log:\n{run_.master_log}\n"
                       f"{k8s.diagnose(api, ns)}")
    return run_
