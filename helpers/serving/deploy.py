"""Put a model where its InferenceService reads it, and submit the InferenceService.

The labs call one function whatever the backend:

* :func:`publish_model` (lab 03) - the model store of the ``sim`` backend is a local folder
  standing in for the PVC, so the model is already in place; on ``kind`` the folder is
  copied onto the cluster's model PVC (:func:`helpers.cluster.upload_model`). Either way the
  answer is the ``storageUri`` an InferenceService names: ``pvc://model-store/<name>/``.
* :func:`submit` (lab 05) - on ``sim`` the folder the manifest's ``pvc://<pvc>/<path>/``
  points to in the local store is read the way KServe's storage initializer would read it,
  and the model is served by KServe's Python model server on 127.0.0.1 under the
  InferenceService's name (:class:`~helpers.serving.local.LocalServer`). On ``kind`` the
  same folder is copied onto the PVC, the manifest is applied and awaited
  (:func:`helpers.cluster.deploy_inference_service`), and the predictor is reached through
  ``kubectl port-forward`` (:class:`ClusterDeployment`). Both handles offer what the lab
  uses: ``host``, ``port``, ``url``, ``endpoint()``, ``logs()``, ``listening_addresses()``,
  ``startup_seconds`` and ``cleanup()``.
* :func:`withdraw` (the lab's Cleanup) - stop the server and, on a cluster, delete the
  InferenceService even when ``submit`` failed half-way. Safe to run twice.

``kwok`` (fake nodes that run no containers) cannot hold a model or run a model server, so
the model labs refuse it with a message naming ``sim`` and ``kind``.

One difference is the runtime's, not the kit's: on ``sim`` the model class is the kit's
(:mod:`helpers.serving.models`, which checks every input and answers 4xx), on ``kind`` it is
the stock ``kserve-xgbserver``, which checks nothing (bad rows reach XGBoost and come back
as 5xx, NaN is read as a missing value). :func:`validates_input` tells the lab which.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from helpers import cluster, paths
from helpers.backend import Backend
from helpers.errors import BackendUnavailable, LabError, ManifestError
from helpers.serving import isvc

if TYPE_CHECKING:  # imported where used: lab 03 publishes a model and needs neither
    from helpers.serving.client import Endpoint
    from helpers.serving.local import LocalServer

#: The least a cluster gets to make an InferenceService Ready: the first run pulls the
#: kserve-xgbserver image (about 1 GB) onto a laptop, which takes minutes, not seconds.
CLUSTER_READY_TIMEOUT = 300.0
#: The predictor Service's port in Standard mode (the container listens on 8080 behind it).
PREDICTOR_PORT = 80


def require_model_backend(backend: Backend) -> Backend:
    """Return ``backend`` if the model labs can use it (``sim`` or ``kind``); fail early if not.

    Raises:
        BackendUnavailable: ``kwok``, whose fake nodes run no containers: nothing could copy a
            model onto a volume or serve it there.
    """
    if backend.is_cluster and backend.name != "kind":
        raise BackendUnavailable(
            f"BACKEND={backend.name!r} runs no containers (its nodes are fake), so it can hold "
            "no model and serve none: the model labs run with BACKEND='sim' (a local folder and "
            "a local model server) or BACKEND='kind' (a PVC and an InferenceService)")
    return backend


def _pvc_and_path(uri: str) -> tuple[str, str]:
    """``pvc://<pvc>/<path>/`` -> (pvc, path); any other scheme is refused."""
    parsed = urlparse(uri)
    if parsed.scheme != "pvc":
        raise ManifestError(f"storageUri {uri!r}: only pvc:// URIs map to the kit's model store "
                            "(a local folder on sim, the PVC on kind); use "
                            "isvc.pvc_uri(<pvc>, <path>)")
    return parsed.netloc, parsed.path.strip("/")


def local_model_dir(manifest: dict[str, Any], store_dir: str | os.PathLike[str]) -> Path:
    """Where a ``pvc://<pvc>/<path>/`` storageUri points inside the local stand-in store.

    Raises:
        ManifestError: the storageUri is not a ``pvc://`` URI (nothing local stands in for
            a bucket or a registry).
    """
    _, path = _pvc_and_path(manifest["spec"]["predictor"]["model"]["storageUri"])
    return Path(store_dir) / path


def publish_model(model_dir: str | os.PathLike[str], backend: Backend,
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
    name = name or folder.name
    model_file = find_model_file(folder)  # KServe's one-model-file rule, before anything moves
    if model_file.suffix != ".bst":  # the legacy binary format records no version
        check_runtime_can_read(model_file)  # a newer XGBoost's model is refused, not uploaded
    if backend.is_cluster:
        return cluster.upload_model(folder, name=name, target=backend)
    uri = isvc.pvc_uri(cluster.MODEL_PVC, name)
    print(f"{uri} is the local folder {folder} on the sim backend (nothing to copy)")
    return uri


def validates_input(server: LocalServer | ClusterDeployment) -> bool:
    """Whether the served model checks its input (4xx) or leaves it to XGBoost (5xx).

    The local server runs the kit's model class, which validates shape, type, NaN and batch
    size; the stock ``kserve-xgbserver`` on a cluster does not.
    """
    return not isinstance(server, ClusterDeployment)


class ClusterDeployment:
    """An InferenceService on the kind cluster, reached from this machine by port-forward.

    Made by :func:`submit`; offers the same handle as the local server, so the lab's cells
    do not branch. ``cleanup()`` stops the port-forward and deletes the InferenceService
    (ignore-not-found); it is safe to call twice. The model stays on the PVC, as the local
    store's folder stays on ``sim``.
    """

    def __init__(self, manifest: dict[str, Any], target: Backend):
        self.manifest = manifest
        self.target = target
        self.model_name: str = manifest["metadata"]["name"]
        self.namespace: str = manifest["metadata"].get("namespace") or isvc.DEFAULT_NAMESPACE
        self.host = "127.0.0.1"  # kubectl port-forward --address 127.0.0.1
        self.storage_uri: str | None = None
        self.info: dict[str, str] = {}
        self.forward: cluster.PortForward | None = None
        self.startup_seconds: float | None = None

    def start(self, store_dir: str | os.PathLike[str], timeout: float = 60.0) -> ClusterDeployment:
        """Copy the model onto the PVC, apply the InferenceService, wait, port-forward.

        Args:
            store_dir: the local store holding the folder the storageUri names.
            timeout: seconds to wait for Ready (at least :data:`CLUSTER_READY_TIMEOUT`).

        Raises:
            ManifestError: the storageUri names another PVC than the cluster's model PVC.
            helpers.k8s.WaitTimeout: not Ready in time (the message holds its conditions,
                the storage initializer's log, pods and events).
        """
        uri = self.manifest["spec"]["predictor"]["model"]["storageUri"]
        pvc, path = _pvc_and_path(uri)
        if pvc != cluster.MODEL_PVC:
            raise ManifestError(
                f"storageUri {uri!r} names PVC {pvc!r}, but the kit's kind cluster keeps models "
                f"on PVC {cluster.MODEL_PVC!r} (namespace {cluster.MODEL_NAMESPACE!r}): set "
                f"PVC_NAME = {cluster.MODEL_PVC!r}")
        started = time.perf_counter()
        self.storage_uri = publish_model(local_model_dir(self.manifest, store_dir), self.target,
                                         name=path)
        self.info = cluster.deploy_inference_service(
            self.manifest, self.target, timeout=max(timeout, CLUSTER_READY_TIMEOUT))
        self.forward = cluster.port_forward(self.info["predictor_service"],
                                            self.info["namespace"], PREDICTOR_PORT,
                                            target=self.target)
        self.startup_seconds = time.perf_counter() - started
        return self

    @property
    def port(self) -> int:
        """The local end of the port-forward."""
        if self.forward is None or self.forward.local_port is None:
            raise LabError(f"InferenceService {self.model_name!r} is not reachable yet: "
                           "deploy.submit() starts it and its port-forward")
        return int(self.forward.local_port)

    @property
    def url(self) -> str:
        """Base URL of the predictor through the port-forward, ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def endpoint(self, **kwargs: Any) -> Endpoint:
        """An :class:`Endpoint` client for the predictor (kwargs go to ``Endpoint``)."""
        from helpers.serving.client import Endpoint

        return Endpoint(self.url, self.model_name, **kwargs)

    def logs(self, tail: int | None = 40) -> str:
        """The predictor container's log (``kubectl logs``; last ``tail`` lines, None for all)."""
        args = ["logs", "-n", self.namespace, "-l",
                f"serving.kserve.io/inferenceservice={self.model_name}", "-c", "kserve-container",
                "--tail", str(-1 if tail is None else tail)]
        return cluster.kubectl(*args, timeout=30).stdout.rstrip()

    def listening_addresses(self) -> list[tuple[str, int]]:
        """The (address, port) pairs the port-forward process listens on, read from the OS.

        kubectl is told ``--address 127.0.0.1``; this shows it kept to loopback. The process
        is found among this kernel's children by its command line, and asked for its own
        sockets (a system-wide listing needs root on macOS).

        Raises:
            LabError: the port-forward process is not running any more.
        """
        import psutil

        args = [str(a) for a in getattr(self.forward, "args", [])]
        for child in psutil.Process().children():
            try:
                if child.cmdline() == args:
                    conns = child.connections(kind="inet")
                    return sorted({(c.laddr.ip, c.laddr.port) for c in conns
                                   if c.status == psutil.CONN_LISTEN})
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # a child that ended while we looked is not the forward
        raise LabError(f"the port-forward to {self.model_name}-predictor is not running "
                       f"(`{' '.join(args) or 'kubectl port-forward'}` ended): run the lab's "
                       "submit cell again")

    def cleanup(self) -> None:
        """Stop the port-forward and delete the InferenceService. Safe to call twice."""
        if self.forward is not None:
            self.forward.close()
        cluster.delete_inference_service(self.model_name, self.namespace, target=self.target)

    def __repr__(self) -> str:
        where = self.url if self.forward is not None else "not forwarded"
        return (f"ClusterDeployment({self.model_name!r}, {self.namespace}, "
                f"{self.storage_uri or '-'}, {where})")


def submit(manifest: dict[str, Any], backend: Backend, store_dir: str | os.PathLike[str],
           timeout: float = 60.0, **server_options: Any) -> LocalServer | ClusterDeployment:
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
        :class:`ClusterDeployment` on ``kind``; stop either with ``cleanup()``.

    Raises:
        ManifestError: the manifest is not valid, or not a ``pvc://`` one.
        BackendUnavailable: ``kwok`` (no containers run there).
        helpers.serving.local.ServerError: the local server failed to start.
        helpers.k8s.WaitTimeout: the InferenceService was not Ready in time.
    """
    isvc.validate(manifest, for_kind=backend.name == "kind")
    require_model_backend(backend)
    if backend.is_cluster:
        return ClusterDeployment(manifest, backend).start(store_dir, timeout=timeout)
    from helpers.serving.local import LocalServer

    model = manifest["spec"]["predictor"]["model"]
    return LocalServer(local_model_dir(manifest, store_dir), manifest["metadata"]["name"],
                       model_format=model["modelFormat"]["name"], **server_options
                       ).start(timeout=timeout)


def withdraw(manifest: dict[str, Any], backend: Backend,
             server: LocalServer | ClusterDeployment | None = None) -> None:
    """Undo :func:`submit`: stop ``server`` and, on a cluster, delete the InferenceService.

    Deleting by the manifest's name also removes an InferenceService whose ``submit`` failed
    half-way (no handle came back). Ignore-not-found throughout: safe to run twice.
    """
    if server is not None:
        server.cleanup()  # a ClusterDeployment deletes its InferenceService itself
    if backend.name == "kind" and not isinstance(server, ClusterDeployment):
        meta = manifest["metadata"]
        cluster.delete_inference_service(meta["name"], meta.get("namespace")
                                         or isvc.DEFAULT_NAMESPACE, target=backend)
