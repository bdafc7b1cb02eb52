"""The ``kind`` backend: a kind cluster with Volcano, KServe and the Training Operator.

* :mod:`~helpers.backend.kind.lifecycle` - create or reuse the cluster, fake GPUs, status;
* :mod:`~helpers.backend.kind.installs` - Volcano, cert-manager, KServe, the Training
  Operator at the pins in ``cluster/versions.yaml``; ``up`` / ``down``;
* :mod:`~helpers.backend.kind.images` - the kit's training image, built and loaded;
* :mod:`~helpers.backend.kind.training` - the model PVC and the gang-scheduled XGBoostJob;
* :mod:`~helpers.backend.kind.serving` - the model onto the PVC, the InferenceService, the
  port-forwarded handle (:class:`~helpers.backend.kind.serving.ClusterDeployment`).

kind cannot run where the kit is developed (no privileged containers); the command lines are
exercised by ``tests/test_cluster_commands.py`` and the manifests by
``tests/test_manifests_static.py``; ``tests/test_cluster_kind.py`` runs on a real cluster.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.backend.base import Backend, register
from helpers.errors import BackendUnavailable
from helpers.kube.names import KIND_CONTEXT, MODEL_NAMESPACE

#: The commands a kind cluster needs on this machine.
KIND_TOOLS = ("docker", "kind", "kubectl")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _kind_message(problem: str) -> str:
    """One sentence: what is wrong, which tools (only those) are missing, and what to do."""
    from helpers.kube.kubectl import tool_fix

    missing = [tool for tool in KIND_TOOLS if shutil.which(tool) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return (f'BACKEND="kind": {problem}, and {_join(missing)} {verb} not on PATH: '
                f"{'; '.join(tool_fix(t) for t in missing)}; then run `make cluster-up`, "
                'or run the lab with BACKEND="sim".')
    return (f'BACKEND="kind": {problem}: run `make cluster-up` to create the cluster, '
            'or run the lab with BACKEND="sim".')


@register
class KindBackend(Backend):
    """A kind cluster reached through its kubeconfig context."""

    name = "kind"
    order = 1
    is_cluster = True
    checks_cluster_rules = True

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KindBackend:
        """Probe the kind cluster's API server (context ``kind-kflabs`` by default)."""
        from helpers.kube import client

        cfg = Path(kubeconfig).expanduser() if kubeconfig else client.default_kubeconfig()
        ctx = context or KIND_CONTEXT
        problem = client.probe(cfg, ctx)
        if problem:
            raise BackendUnavailable(_kind_message(problem))
        return cls(f"kind cluster reachable through context {ctx}", str(cfg), ctx)

    def run_scheduling(self, manifest_paths: list[Path], nodes: list, scheduler: str, *,
                       seed: int = 0, config: Any = None) -> Any:
        """Apply the manifests to the cluster and watch them (its real nodes, fake GPUs)."""
        from helpers.backend import scheduling_run

        return scheduling_run.run(manifest_paths, nodes, scheduler=scheduler, backend=self, seed=seed)

    def prepare_nodes(self, api: Any, nodes: list) -> None:
        """kind's nodes are real: their fake GPUs become the scenario's, node by node.

        The two-jobs scenario needs exactly 6 GPUs on 3 nodes to gridlock; the cluster's own
        8 (``make cluster-up``) would fit both gangs. :meth:`release_nodes` puts the 8 back.
        """
        from helpers.backend.kind import lifecycle
        from helpers.scheduling.model import GPU

        lifecycle.patch_fake_gpus(layout=lifecycle.scenario_layout(
            lifecycle.worker_nodes(), [n.allocatable.get(GPU, 0) for n in nodes]))

    def adapt_manifests(self, docs: list[dict], time_scale: float) -> list[dict]:
        """The containers really run here: their ``WORK_SECONDS`` is scaled by ``time_scale``."""
        from helpers.backend.kind.workload import scale_work_seconds

        return [scale_work_seconds(d, time_scale) for d in docs]

    def release_nodes(self, api: Any) -> None:
        """Give the workers back ``make cluster-up``'s fake GPUs after a scheduling run."""
        from helpers.backend.kind import lifecycle

        lifecycle.patch_fake_gpus()

    def publish_model(self, folder: Path, name: str) -> str:
        """Copy the folder onto the cluster's model PVC."""
        from helpers.backend.kind import serving

        return serving.upload_model(folder, name=name, target=self)

    def serve(self, manifest: dict[str, Any], store_dir: str | os.PathLike[str], *,
              timeout: float = 60.0, **options: Any) -> Any:
        """Copy the model onto the PVC, apply the InferenceService, wait, port-forward."""
        from helpers.backend.kind import serving

        return serving.ClusterDeployment(manifest, self).start(store_dir, timeout=timeout)

    def withdraw(self, manifest: dict[str, Any], server: Any = None) -> None:
        """Stop the port-forward and delete the InferenceService, even without a handle."""
        from helpers.backend.kind import serving

        if server is not None:
            server.cleanup()  # a ClusterDeployment deletes its InferenceService itself
        if not isinstance(server, serving.ClusterDeployment):
            meta = manifest["metadata"]
            serving.delete_inference_service(meta["name"], meta.get("namespace") or MODEL_NAMESPACE,
                                             target=self)

    def train(self, *, seed: int, model_name: str, claim: str,
              state_dir: str | os.PathLike[str], trainer: str = "v1") -> tuple[str, float | None]:
        """Gang-scheduled by Volcano, saving onto the PVC: the chapter's XGBoostJob (``v1``)
        or the kit's TrainJob on Kubeflow Trainer (``v2``)."""
        from helpers.backend.base import check_trainer

        if check_trainer(trainer) == "v2":
            from helpers.backend.kind import trainer_v2

            run = trainer_v2.run_trainjob(self, seed=seed, model_name=model_name)
        else:
            from helpers.backend.kind import training

            run = training.run_training_job(self, seed=seed, model_name=model_name)
        return run.model_uri, run.accuracy

    def provision_volume(self, claim: str, state_dir: str | os.PathLike[str]) -> str:
        """The model namespace and PVC (idempotent)."""
        from helpers.backend.kind import training

        return training.ensure_model_pvc(self)

    def deploy(self, manifest: dict[str, Any], state_dir: str | os.PathLike[str],
               timeout: float) -> str:
        """Apply the InferenceService and await it; ``service://<ns>/<predictor service>``."""
        from helpers.backend.kind import serving
        from helpers.kube.names import ISVC_READY_TIMEOUT

        info = serving.deploy_inference_service(manifest, self, timeout=max(timeout, ISVC_READY_TIMEOUT))
        return f"service://{info['namespace']}/{info['predictor_service']}"

    def reach(self, where: str) -> tuple[str, Callable[[], None] | None]:
        """A port-forward to ``service://<ns>/<svc>``; ``http://`` needs none."""
        if not where.startswith("service://"):
            return super().reach(where)
        from helpers.kube import kubectl

        namespace, _, service = where[len("service://"):].partition("/")
        forward = kubectl.port_forward(service, namespace, target=self)
        return forward.url, forward.close

    def clean_pipeline(self, model_name: str) -> list[str]:
        """The InferenceService, the XGBoostJob and the TrainJob, ignore-not-found (the PVC stays)."""
        from helpers.backend.kind import serving, training

        serving.delete_inference_service(model_name, target=self)
        training.delete_training_job(self)
        from helpers.backend.kind import trainer_v2

        trainer_v2.delete_trainjob(self)
        return ["cluster objects"]
