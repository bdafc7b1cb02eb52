"""Put a model where its InferenceService reads it, and submit the InferenceService.

The labs call one function whatever the backend; each calls a verb of the backend object it
is given (:mod:`helpers.backend.base`) and never tests its name:

* :func:`publish_model` (lab 03) -> ``backend.publish_model``: on ``sim`` the model store is a
  local folder standing in for the PVC, so the model is already in place; on ``kind`` the
  folder is copied onto the cluster's model PVC. Either way the answer is the ``storageUri``
  an InferenceService names: ``pvc://model-store/<name>/``.
* :func:`submit` (lab 05) -> ``backend.serve``: on ``sim`` the folder the manifest's
  ``pvc://<pvc>/<path>/`` points to in the local store is read the way KServe's storage
  initializer would read it, and served by KServe's Python model server on 127.0.0.1
  (:class:`~helpers.serving.local.LocalServer`); on ``kind`` the folder is copied onto the
  PVC, the manifest applied and awaited, and the predictor reached through ``kubectl
  port-forward`` (:class:`helpers.backend.kind.serving.ClusterDeployment`). Both handles offer
  what the lab uses: ``host``, ``port``, ``url``, ``endpoint()``, ``logs()``,
  ``listening_addresses()``, ``startup_seconds``, ``validates_input`` and ``cleanup()``.
* :func:`withdraw` (the lab's Cleanup) -> ``backend.withdraw``: stop the server and, on a
  cluster, delete the InferenceService even when ``submit`` failed half-way. Safe twice.

A backend that cannot hold a model (``kwok``: fake nodes run no containers) refuses with one
message naming the backends that can.

One difference is the runtime's, not the kit's: on ``sim`` the model class is the kit's
(:mod:`helpers.serving.models`, which checks every input and answers 4xx), on ``kind`` it is
the stock ``kserve-xgbserver``, which checks nothing (bad rows reach XGBoost and come back
as 5xx, NaN is read as a missing value). :func:`validates_input` tells the lab which.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from helpers import paths
from helpers.kube.names import ISVC_READY_TIMEOUT
from helpers.serving import isvc

#: The least a cluster gets to make an InferenceService Ready (see helpers.kube.names).
CLUSTER_READY_TIMEOUT = ISVC_READY_TIMEOUT


class ServingBackend(Protocol):
    """What this module needs of a backend (:class:`helpers.backend.base.Backend` has it)."""

    name: str
    checks_cluster_rules: bool

    def require(self, verb: str, doing: str) -> Any: ...
    def publish_model(self, folder: Path, name: str) -> str: ...
    def serve(self, manifest: dict[str, Any], store_dir: str | os.PathLike[str], *,
              timeout: float = 60.0, **options: Any) -> Any: ...
    def withdraw(self, manifest: dict[str, Any], server: Any = None) -> None: ...


def require_model_backend(backend: ServingBackend) -> ServingBackend:
    """Return ``backend`` if the model labs can use it (``sim`` or ``kind``); fail early if not.

    Raises:
        BackendUnavailable: a backend that cannot hold a model (``kwok``, whose fake nodes
            run no containers); the message names the backends that can.
    """
    backend.require("publish_model", "hold a model or serve one")
    return backend.require("serve", "serve a model")


def local_model_dir(manifest: dict[str, Any], store_dir: str | os.PathLike[str]) -> Path:
    """Where a ``pvc://<pvc>/<path>/`` storageUri points inside the local stand-in store.

    Raises:
        ManifestError: the storageUri is not a ``pvc://`` URI (nothing local stands in for
            a bucket or a registry).
    """
    _, path = isvc.parse_pvc_uri(isvc.storage_uri_of(manifest))
    return Path(store_dir) / path


def publish_model(model_dir: str | os.PathLike[str], backend: ServingBackend,
                  name: str | None = None) -> str:
    """Make a saved model readable by an InferenceService; return its ``storageUri``.

    On ``sim`` the local store *is* the stand-in for the PVC: nothing is copied, the folder
    is only checked. On ``kind`` the folder is copied onto the cluster's model PVC.

    Args:
        model_dir: a folder holding exactly one model file (``training.save_model``'s parent).
        backend: the resolved backend.
        name: the model's folder on the volume (default: ``model_dir``'s name).

    Returns:
        ``pvc://model-store/<name>/``, the ``storageUri`` for the InferenceService.

    Raises:
        ModelStoreError: the folder holds no model file, or more than one, or the model
            was saved by a newer XGBoost than KServe's xgbserver reads with
            (:func:`helpers.model_store.check_runtime_can_read`; the message names both).
        BackendUnavailable: ``kwok`` (see :func:`require_model_backend`).
    """
    from helpers.model_store import check_runtime_can_read, find_model_file

    require_model_backend(backend)
    folder = paths.resolve(model_dir)
    model_file = find_model_file(folder)  # KServe's one-model-file rule, before anything moves
    if model_file.suffix != ".bst":  # the legacy binary format records no version
        check_runtime_can_read(model_file)  # a newer XGBoost's model is refused, not uploaded
    return backend.publish_model(folder, name or folder.name)


def validates_input(server: Any) -> bool:
    """Whether the served model checks its input (4xx) or leaves it to XGBoost (5xx).

    The local server runs the kit's model class, which validates shape, type, NaN and batch
    size; the stock ``kserve-xgbserver`` on a cluster does not.
    """
    return bool(getattr(server, "validates_input", True))


def submit(manifest: dict[str, Any], backend: ServingBackend, store_dir: str | os.PathLike[str],
           timeout: float = 60.0, **server_options: Any) -> Any:
    """Validate ``manifest`` and bring its model up; return the running server's handle.

    Args:
        manifest: an InferenceService from :func:`helpers.serving.isvc.inference_service`.
        backend: the resolved backend (:func:`helpers.backend.resolve`).
        store_dir: the local model store standing in for the manifest's PVC (on ``kind`` the
            folder it names is copied onto the PVC first).
        timeout: seconds to wait for the server to be ready (on ``kind`` at least
            :data:`CLUSTER_READY_TIMEOUT`).
        **server_options: passed to :class:`~helpers.serving.local.LocalServer` (``sim``).

    Returns:
        The ready :class:`~helpers.serving.local.LocalServer` on ``sim``, or the
        ``ClusterDeployment`` on ``kind``; stop either with ``cleanup()``.

    Raises:
        ManifestError: the manifest is not valid, or not a ``pvc://`` one.
        BackendUnavailable: ``kwok`` (no containers run there).
        helpers.serving.local.ServerError: the local server failed to start.
        helpers.kube.client.WaitTimeout: the InferenceService was not Ready in time.
    """
    isvc.validate(manifest, for_kind=backend.checks_cluster_rules)
    require_model_backend(backend)
    return backend.serve(manifest, store_dir, timeout=timeout, **server_options)


def withdraw(manifest: dict[str, Any], backend: ServingBackend,
             server: Any | None = None) -> None:
    """Undo :func:`submit`: stop ``server`` and, on a cluster, delete the InferenceService.

    Deleting by the manifest's name also removes an InferenceService whose ``submit`` failed
    half-way (no handle came back). Ignore-not-found throughout: safe to run twice.
    """
    backend.withdraw(manifest, server)
