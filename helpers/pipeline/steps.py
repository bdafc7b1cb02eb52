"""The pipeline's steps: what each component does, on the backend whose name it is given.

Each step resolves the backend and calls its verbs (:mod:`helpers.backend`); it never tests a
backend's name.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import paths
from helpers.backend.base import Backend

PIPELINE_NAME = "iris-end-to-end"
#: The claim (PVC) name of the model store, as on the cluster (cluster/manifests/training).
MODEL_CLAIM = "model-store"
#: Where lab 06 keeps the compiled YAML, the sim "cluster" state and kfp's local outputs.
DEFAULT_WORK_DIR = "build/pipeline"
#: Component names in flow order (the task names in the compiled DAG).
STEPS = ("volume", "train", "serve", "predict")
#: The parameter of every component: the name of the backend the step runs on (kfp passes
#: strings between steps; each step resolves it into a backend object and calls its verbs).


def _target(backend_name: str) -> Backend:
    """The backend the steps run on, refused at once if it cannot run the pipeline."""
    from helpers import backend

    backend.make(backend_name).require("deploy", "run the pipeline (it trains, stores and serves a model)")
    return backend.resolve(backend_name, announce=False)


def _isvc_manifest(name: str, storage_uri: str) -> dict:
    """The kit's InferenceService (cluster/manifests/serving) with this name and storageUri."""
    import yaml

    doc = yaml.safe_load((paths.manifests_dir("serving") / "iris-inferenceservice.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    return doc


def step_volume(backend_name: str, state_dir: str, claim: str = MODEL_CLAIM) -> str:
    """Provision the model volume; return the claim name.

    Args:
        backend_name: ``sim`` or ``kind``.
        state_dir: the sim state folder (unused on a cluster).
        claim: the PersistentVolumeClaim name.
    """
    return _target(backend_name).provision_volume(claim, state_dir)


def step_train(backend_name: str, state_dir: str, claim: str, *, seed: int, model_name: str,
               test_csv: str, trainer: str = "v1") -> tuple[str, float]:
    """Train the Iris model, ``save_model`` it onto the volume, write the held-out rows.

    On a cluster the training runs gang-scheduled by Volcano, as the chapter's XGBoostJob
    (``trainer="v1"``) or as the kit's TrainJob on Kubeflow Trainer (``"v2"``); its accuracy
    is measured by the predict step through the served model.

    Returns:
        ``(storage_uri, accuracy)``: the model's ``pvc://`` URI and the held-out accuracy
        (on a cluster, as the job's master printed it; ``-1.0`` if it printed none).
    """
    from helpers import training

    X, y, _, _ = training.load_iris()
    _, X_test, _, y_test = training.split(X, y, seed=seed)
    lines = [",".join(f"{v:g}" for v in row) + f",{int(label)}"
             for row, label in zip(X_test, y_test, strict=True)]
    Path(test_csv).write_text("\n".join(lines) + "\n")
    uri, accuracy = _target(backend_name).train(seed=seed, model_name=model_name, claim=claim,
                                                state_dir=state_dir, trainer=trainer)
    return uri, accuracy if accuracy is not None else -1.0


def step_serve(backend_name: str, state_dir: str, storage_uri: str, model_name: str,
               timeout: float = 120.0) -> str:
    """Declare the InferenceService for ``storage_uri`` and wait until it is ready.

    Returns:
        Where to reach it: ``http://127.0.0.1:<port>`` on sim; ``service://<ns>/<svc>`` (the
        predictor Service, reached through a port-forward) on a cluster.
    """
    manifest = _isvc_manifest(model_name, storage_uri)
    return _target(backend_name).deploy(manifest, state_dir, timeout)


class Connection:
    """A client for what :func:`step_serve` returned, plus whatever keeps it reachable.

    ``http://...`` (sim) needs nothing else; ``service://<ns>/<svc>`` (a cluster) holds a
    port-forward to the predictor Service open until :meth:`close`. Use it as a context
    manager, or keep it across notebook cells and close it in the cleanup (safe twice).

    Attributes:
        endpoint: the :class:`~helpers.serving.client.Endpoint` (V1 and V2 requests).
    """

    def __init__(self, backend_name: str, where: str, model_name: str = "iris"):
        from helpers.serving.client import Endpoint

        base_url, self._close = _target(backend_name).reach(where)
        self.endpoint = Endpoint(base_url, model_name)

    def close(self) -> None:
        """Close the client and any port-forward. Safe to call twice."""
        self.endpoint.close()
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(backend_name: str, where: str, model_name: str = "iris") -> Connection:
    """Open a :class:`Connection` to the served model (``where``: the serve step's output)."""
    return Connection(backend_name, where, model_name)


def read_rows(test_csv: str | os.PathLike[str]) -> tuple[list[list[float]], list[int]]:
    """Read the held-out rows the train step wrote: four measurements, then the label."""
    rows, labels = [], []
    for line in Path(test_csv).read_text().splitlines():
        *values, label = line.split(",")
        rows.append([float(v) for v in values])
        labels.append(int(label))
    return rows, labels


def step_predict(backend_name: str, where: str, model_name: str, test_csv: str) -> tuple[float, int]:
    """Send the held-out rows to the served model (V2 protocol); return (accuracy, rows sent)."""
    rows, labels = read_rows(test_csv)
    with connect(backend_name, where, model_name) as conn:
        predicted = conn.endpoint.labels(rows, protocol="v2")
    correct = sum(int(p) == t for p, t in zip(predicted, labels, strict=True))
    return correct / len(labels), len(labels)


