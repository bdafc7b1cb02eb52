"""The embedded default backend, ``sim``: no cluster, no Docker.

Scheduling runs on the model (:mod:`helpers.scheduling`); the model store is a local folder
standing in for the PVC; an InferenceService's model is served by KServe's own Python model
server on 127.0.0.1 (:class:`~helpers.serving.local.LocalServer`). The pipeline's steps, which
run as separate processes, share a file-backed stand-in for the cluster
(:class:`~helpers.backend.sim_cluster.SimCluster`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers.backend.base import Backend, register
from helpers.kube.names import MODEL_PVC


@register
class SimBackend(Backend):
    """Embedded default: scheduling model and local KServe server."""

    name = "sim"
    order = 0
    parallel_labs = True
    counts_permit_reservations = True

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> SimBackend:
        """Always usable: nothing to reach."""
        return cls("embedded default: scheduling model and local KServe server")

    def run_scheduling(self, manifest_paths: list[Path], nodes: list, scheduler: str, *,
                       seed: int = 0, config: Any = None) -> Any:
        """Simulate the manifests with the model (:func:`helpers.scheduling.simulate`)."""
        from helpers.scheduling.model import load_manifests
        from helpers.scheduling.simulate import simulate

        return simulate(load_manifests(manifest_paths), nodes, scheduler, seed=seed, config=config)

    def publish_model(self, folder: Path, name: str) -> str:
        """The local store *is* the stand-in for the PVC: nothing is copied."""
        from helpers.serving import isvc

        uri = isvc.pvc_uri(MODEL_PVC, name)
        print(f"{uri} is the local folder {folder} on the sim backend (nothing to copy)")
        return uri

    def serve(self, manifest: dict[str, Any], store_dir: str | os.PathLike[str], *,
              timeout: float = 60.0, **options: Any) -> Any:
        """Serve the folder the manifest's ``pvc://`` URI names in ``store_dir``, on 127.0.0.1."""
        from helpers.serving.deploy import local_model_dir
        from helpers.serving.local import LocalServer

        model = manifest["spec"]["predictor"]["model"]
        return LocalServer(local_model_dir(manifest, store_dir), manifest["metadata"]["name"],
                           model_format=model["modelFormat"]["name"], **options
                           ).start(timeout=timeout)

    def train(self, *, seed: int, model_name: str, claim: str,
              state_dir: str | os.PathLike[str], trainer: str = "v1") -> tuple[str, float | None]:
        """Train in this process and ``save_model`` onto the stand-in volume.

        No training controller runs here, v1 or v2: ``trainer`` is checked, then both train
        the same way (the same code the cluster's pods run, so the same model).
        """
        from helpers import training
        from helpers.backend.base import check_trainer

        check_trainer(trainer)
        from helpers.backend.sim_cluster import SimCluster
        from helpers.serving import isvc

        result = training.train(seed=seed)
        training.save_model(result.model, store_dir=SimCluster(state_dir).volume_path(claim),
                            name=model_name)
        return isvc.pvc_uri(claim, model_name), result.accuracy

    def provision_volume(self, claim: str, state_dir: str | os.PathLike[str]) -> str:
        """A folder of the stand-in cluster's state."""
        from helpers.backend.sim_cluster import SimCluster

        SimCluster(state_dir).create_pvc(claim)
        return claim

    def deploy(self, manifest: dict[str, Any], state_dir: str | os.PathLike[str],
               timeout: float) -> str:
        """Record the InferenceService; the stand-in's controller starts its server."""
        from helpers.backend.sim_cluster import SimCluster

        sim = SimCluster(state_dir)
        sim.apply_isvc(manifest)
        return sim.wait_ready(manifest["metadata"]["name"], timeout)

    def controller(self, state_dir: str | os.PathLike[str]) -> Any:
        """The stand-in cluster's controller for ``state_dir``, started (owns the model servers)."""
        from helpers.backend.sim_cluster import sim_controller

        return sim_controller(state_dir)
