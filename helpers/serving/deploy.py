"""Submit an InferenceService: on ``sim``, start the same model on the local model server.

The lab calls one function whatever the backend. On ``sim`` there is no cluster: the local
folder that stands in for the PVC (``build/model-store`` or the lab's own store) is read
the way KServe's storage initializer would read ``pvc://<pvc>/<path>/``, and the model is
served by KServe's Python model server on 127.0.0.1 under the InferenceService's name.
On a cluster backend :func:`submit` raises a clear error naming the manual route through
:mod:`helpers.cluster` (upload the model, deploy the InferenceService, port-forward the
predictor): wiring the lab's cluster run is left to the kind integration, because the
stock ``kserve-xgbserver`` answers bad input differently from the local server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from helpers.backend import Backend
from helpers.errors import BackendUnavailable, ManifestError
from helpers.serving import isvc
from helpers.serving.local import LocalServer


def local_model_dir(manifest: dict[str, Any], store_dir: str | os.PathLike[str]) -> Path:
    """Where a ``pvc://<pvc>/<path>/`` storageUri points inside the local stand-in store.

    Raises:
        ManifestError: the storageUri is not a ``pvc://`` URI (nothing local stands in for
            a bucket or a registry).
    """
    uri = manifest["spec"]["predictor"]["model"]["storageUri"]
    parsed = urlparse(uri)
    if parsed.scheme != "pvc":
        raise ManifestError(f"storageUri {uri!r}: on the sim backend only pvc:// URIs map to "
                            "the local model store; use isvc.pvc_uri(<pvc>, <path>)")
    return Path(store_dir) / parsed.path.strip("/")


def submit(manifest: dict[str, Any], backend: Backend, store_dir: str | os.PathLike[str],
           timeout: float = 60.0, **server_options: Any) -> LocalServer:
    """Validate ``manifest`` and bring its model up; return the running server's handle.

    Args:
        manifest: an InferenceService from :func:`helpers.serving.isvc.inference_service`.
        backend: the resolved backend (:func:`helpers.backend.resolve`).
        store_dir: the local model store standing in for the manifest's PVC.
        timeout: seconds to wait for the server to be ready.
        **server_options: passed to :class:`~helpers.serving.local.LocalServer`.

    Returns:
        The ready :class:`~helpers.serving.local.LocalServer` (stop it with ``cleanup()``).

    Raises:
        ManifestError: the manifest is not valid.
        BackendUnavailable: a cluster backend (the message names the manual route).
        helpers.serving.local.ServerError: the server failed to start.
    """
    isvc.validate(manifest, for_kind=backend.name == "kind")
    if backend.is_cluster:
        name = manifest["metadata"]["name"]
        raise BackendUnavailable(
            f"lab 05 does not submit to the {backend.name} cluster itself yet: run it with "
            "BACKEND='sim'. On kind, do it by hand with the kit's cluster layer: "
            "helpers.cluster.upload_model(<model folder>), "
            "helpers.cluster.deploy_inference_service(manifest, backend), then "
            f"helpers.cluster.port_forward('{name}-predictor') and "
            "Endpoint(<forward>.url, model_name). Note that the stock kserve-xgbserver does "
            "not validate input the way the local server does (bad rows give 500s).")
    model = manifest["spec"]["predictor"]["model"]
    return LocalServer(local_model_dir(manifest, store_dir), manifest["metadata"]["name"],
                       model_format=model["modelFormat"]["name"], **server_options
                       ).start(timeout=timeout)
