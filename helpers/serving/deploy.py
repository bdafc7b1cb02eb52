"""Submit an InferenceService: on ``sim``, start the same model on the local model server.

The lab calls one function whatever the backend. On ``sim`` there is no cluster: the local
folder that stands in for the PVC (``build/model-store`` or the lab's own store) is read
the way KServe's storage initializer would read ``pvc://<pvc>/<path>/``, and the model is
served by KServe's Python model server on 127.0.0.1 under the InferenceService's name.
On a cluster backend the manifest would be applied with the Kubernetes API and the
predictor reached through a port-forward; that path belongs to the kind integration and
is not in the kit yet, so it raises a clear error instead of pretending.
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
        BackendUnavailable: a cluster backend (not supported by this helper yet).
        helpers.serving.local.ServerError: the server failed to start.
    """
    isvc.validate(manifest, for_kind=backend.name == "kind")
    if backend.is_cluster:
        raise BackendUnavailable(
            f"submitting the InferenceService to the {backend.name} cluster needs the kit's "
            "Kubernetes layer, which is not part of this kit yet: run this lab with "
            "BACKEND='sim', or apply the rendered manifest yourself "
            f"(kubectl apply -f {isvc.manifest_path(manifest['metadata']['name'])}) and point "
            "an Endpoint at a port-forward of the predictor Service")
    model = manifest["spec"]["predictor"]["model"]
    return LocalServer(local_model_dir(manifest, store_dir), manifest["metadata"]["name"],
                       model_format=model["modelFormat"]["name"], **server_options
                       ).start(timeout=timeout)
