"""Serving on kind: copy a model onto the PVC, apply an InferenceService and wait for it, and
the clean-ups (ignore-not-found, safe twice).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.backend.base import Backend
from helpers.backend.kind import images, training
from helpers.errors import LabError, ManifestError
from helpers.kube import client as k8s
from helpers.kube.kubectl import PortForward, kubectl, port_forward
from helpers.kube.names import ISVC_READY_TIMEOUT, MODEL_NAMESPACE, MODEL_PVC, is_dns1123_label
from helpers.serving import isvc
from helpers.serving.client import Endpoint
from helpers.serving.isvc import pvc_uri

# --------------------------------------------------------------------------- labs: model volume
LOADER_POD = "model-store-loader"
#: Run by the loader pod's Python: unpack the payload (stdin) into ``<root>/<name>``, list it.
#: Only regular files at ``<name>/<file>`` (the shape :func:`model_payload` writes) are
#: written, each by name: no links, no paths that climb out, on any Python 3 (the stand-in
#: image's Debian 3.11.2 predates ``extractall(filter=...)``).
_EXTRACT = """
import base64, io, pathlib, shutil, sys, tarfile
name = sys.argv[1]
if not name or '/' in name or name in ('.', '..'):
    sys.exit(f'refused model name {name!r}')
root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else '/mnt/models')
data = io.BytesIO(base64.b64decode(sys.stdin.read()))
with tarfile.open(fileobj=data, mode='r:gz') as tar:
    members = tar.getmembers()
    for m in members:
        top, _, base = m.name.partition('/')
        if not m.isfile() or top != name or not base or '/' in base or base in ('.', '..'):
            sys.exit(f'refused {m.name!r}: only regular files directly under {name}/')
    shutil.rmtree(root / name, ignore_errors=True)
    (root / name).mkdir(parents=True)
    for m in members:
        (root / m.name).write_bytes(tar.extractfile(m).read())
print('\\n'.join(sorted(str(p) for p in (root / name).rglob('*'))))
"""


def loader_pod_manifest(image: str) -> dict:
    """A short-lived pod that mounts the model PVC, for copying a model onto it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": LOADER_POD, "namespace": MODEL_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "kflabs"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "loader", "image": image, "imagePullPolicy": "Never",
                "command": ["sleep", "600"],  # deleted as soon as the copy is done
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "model-store", "mountPath": "/mnt/models"}],
            }],
            "volumes": [{"name": "model-store",
                         "persistentVolumeClaim": {"claimName": MODEL_PVC}}],
        },
    }


def model_payload(local_dir: str | Path, name: str) -> str:
    """The model folder as base64 text of a tar.gz whose top folder is ``name``.

    Raises:
        ModelStoreError: ``local_dir`` is not a folder holding exactly one model file.
    """
    import base64
    import io
    import tarfile

    from helpers.model_store import find_model_file

    folder = paths.resolve(local_dir)
    find_model_file(folder)  # the one-model-file rule KServe's xgbserver applies
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                tar.add(path, arcname=f"{name}/{path.name}")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def extract_on_loader(payload: str, name: str, timeout: float = 120.0) -> list[str]:
    """Unpack ``payload`` into ``/mnt/models/<name>`` through the loader pod; list the files."""
    out = kubectl("exec", "-i", "-n", MODEL_NAMESPACE, LOADER_POD, "--", "python", "-c",
                  _EXTRACT, name, input_text=payload, timeout=timeout).stdout
    return [line for line in out.splitlines() if line.strip()]


def _loader_phase(api) -> str | None:
    """The loader pod's phase, or None when there is no such pod."""

    try:
        pod = k8s.core(api).read_namespaced_pod(LOADER_POD, MODEL_NAMESPACE)
    except k8s.ApiException as exc:
        if k8s.status_is(exc, 404):
            return None
        raise
    return pod.status.phase


def upload_model(local_dir: str | Path, *, name: str | None = None,
                 target: Backend | None = None, timeout: float = 180.0,
                 api=None) -> str:
    """Copy a model folder from the laptop onto the model PVC (``/mnt/models/<name>``).

    For labs that train in the notebook (lab 03, lab 04's formats) and then serve on the
    cluster: a short-lived pod mounts the PVC, the folder is streamed in, the pod is deleted.

    Args:
        local_dir: a model folder holding exactly one model file (e.g. ``build/model-store/iris``).
        name: the folder name on the PVC (default: ``local_dir``'s name).
        target: the resolved kind backend.
        timeout: seconds to wait for the loader pod to start.

    Returns:
        The ``storageUri`` for an InferenceService: ``pvc://model-store/<name>/``.
    """
    folder = paths.resolve(local_dir)
    name = name or folder.name
    if not is_dns1123_label(name):
        raise ManifestError(f"model name {name!r} must be a DNS-1123 label (lowercase letters, "
                            "digits and '-')")
    payload = model_payload(folder, name)
    api = api or training.api_client(target)
    training.ensure_model_pvc(api=api)
    pod = loader_pod_manifest(images.ensure_training_image())
    if k8s.delete(api, pod):  # a leftover from an interrupted copy: a pod spec is immutable
        k8s.wait_for(lambda: _loader_phase(api) is None, 60, f"the old {LOADER_POD} to go",
                     interval=1.0)
    k8s.apply(api, pod)
    try:
        k8s.wait_for(lambda: _loader_phase(api) == "Running", timeout,
                     f"pod {MODEL_NAMESPACE}/{LOADER_POD} to run", interval=1.0,
                     diagnostics=lambda: k8s.diagnose(api, MODEL_NAMESPACE))
        files = extract_on_loader(payload, name)
    finally:
        k8s.delete(api, pod)
    print(f"copied {folder} onto PVC {MODEL_PVC}: {', '.join(files)}")
    return pvc_uri(MODEL_PVC, name)


def _pvc_exists(api, namespace: str, name: str) -> bool:

    try:
        k8s.core(api).read_namespaced_persistent_volume_claim(name, namespace)
    except k8s.ApiException as exc:
        if k8s.status_is(exc, 404):
            return False
        raise
    return True


def _isvc_diagnostics(api, namespace: str, name: str) -> str:
    isvc = k8s.get_custom(api, ("serving.kserve.io", "v1beta1", namespace, "inferenceservices", name))
    lines = [f"-- InferenceService {namespace}/{name} conditions:"]
    for ctype, c in k8s.conditions(isvc).items():
        lines.append(f"  {ctype}={c.get('status')} {c.get('reason', '')}: "
                     f"{(c.get('message') or '')[:200]}")
    for pod in k8s.pods(api, namespace, f"serving.kserve.io/inferenceservice={name}"):
        for status in (pod.status.init_container_statuses or []):
            if status.name == "storage-initializer" and not (
                    status.state and status.state.terminated
                    and status.state.terminated.exit_code == 0):
                lines.append(f"  storage-initializer of {pod.metadata.name}:\n"
                             + k8s.pod_log(api, namespace, pod.metadata.name, 10))
    return "\n".join(lines) + "\n" + k8s.diagnose(api, namespace)


def deploy_inference_service(isvc: dict, target: Backend | None = None, *,
                             timeout: float = ISVC_READY_TIMEOUT, api=None) -> dict[str, str]:
    """Apply an InferenceService (from :mod:`helpers.serving.isvc`) and wait until it is Ready.

    Checks first what newcomers trip on: the manifest is validated, it gets Standard mode if
    it names none, and a ``pvc://`` storageUri must name a PVC that exists in the same
    namespace (KServe would otherwise leave the predictor without ``/mnt/models``).

    Returns:
        ``{"name", "namespace", "url", "predictor_service"}``; port-forward to
        ``predictor_service`` port 80 to reach it from the laptop.

    Raises:
        ManifestError: the manifest is invalid, or its PVC is missing.
        WaitTimeout: not Ready in time; the message holds its conditions, the
            storage-initializer's log, pods and events.
    """
    from helpers.serving import isvc as isvc_mod

    doc = copy.deepcopy(isvc_mod.validate(isvc, for_kind=True))
    meta = doc["metadata"]
    annotations = meta.setdefault("annotations", {}) or {}
    annotations.setdefault(isvc_mod.DEPLOYMENT_MODE_ANNOTATION, "Standard")
    meta["annotations"] = annotations
    name, ns = meta["name"], meta["namespace"]
    api = api or training.api_client(target)
    uri = doc["spec"]["predictor"]["model"].get("storageUri", "")
    if uri.startswith("pvc://"):
        pvc, _ = isvc_mod.parse_pvc_uri(uri)
        if not _pvc_exists(api, ns, pvc):
            raise ManifestError(
                f"storageUri {uri!r} names PVC {pvc!r}, which does not exist in namespace "
                f"{ns!r}: a PVC is only mountable in its own namespace. Create it and put the "
                "model on it first: helpers.backend.kind.training.run_training_job()")
    k8s.ensure_namespace(api, ns)
    k8s.apply(api, doc)

    def ready() -> bool:
        obj = k8s.get_custom(api, ("serving.kserve.io", "v1beta1", ns, "inferenceservices", name))
        return k8s.conditions(obj).get("Ready", {}).get("status") == "True"

    k8s.wait_for(ready, timeout, f"InferenceService {ns}/{name} to be Ready", interval=2.0,
                 diagnostics=lambda: _isvc_diagnostics(api, ns, name))
    obj = k8s.get_custom(api, ("serving.kserve.io", "v1beta1", ns, "inferenceservices", name)) or {}
    return {"name": name, "namespace": ns, "url": (obj.get("status") or {}).get("url", ""),
            "predictor_service": f"{name}-predictor"}


def delete_inference_service(name: str = "iris", namespace: str = MODEL_NAMESPACE,
                             target: Backend | None = None, *, api=None) -> bool:
    """Delete an InferenceService (ignore-not-found). Safe to run twice."""
    ref = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "namespace": namespace}}
    return k8s.delete(api or training.api_client(target), ref)


def cleanup(target: Backend | None = None, *, keep_pvc: bool = True) -> None:
    """The labs' clean-up on kind: InferenceService and training job, optionally the PVC."""
    api = training.api_client(target)
    delete_inference_service(api=api)
    training.delete_training_job(api=api)
    if not keep_pvc:
        training.delete_model_pvc(api=api)


#: The predictor Service's port in Standard mode (the container listens on 8080 behind it).
PREDICTOR_PORT = 80


class ClusterDeployment:
    """An InferenceService on the kind cluster, reached from this machine by port-forward.

    Made by :func:`submit`; offers the same handle as the local server, so the lab's cells
    do not branch. ``cleanup()`` stops the port-forward and deletes the InferenceService
    (ignore-not-found); it is safe to call twice. The model stays on the PVC, as the local
    store's folder stays on ``sim``.
    """

    #: The stock kserve-xgbserver checks no input (bad rows come back as 5xx).
    validates_input = False

    def __init__(self, manifest: dict[str, Any], target: Backend):
        self.manifest = manifest
        self.target = target
        self.model_name: str = manifest["metadata"]["name"]
        self.namespace: str = manifest["metadata"].get("namespace") or isvc.DEFAULT_NAMESPACE
        self.host = "127.0.0.1"  # kubectl port-forward --address 127.0.0.1
        self.storage_uri: str | None = None
        self.info: dict[str, str] = {}
        self.forward: PortForward | None = None
        self.startup_seconds: float | None = None

    def start(self, store_dir: str | os.PathLike[str], timeout: float = 60.0) -> ClusterDeployment:
        """Copy the model onto the PVC, apply the InferenceService, wait, port-forward.

        Args:
            store_dir: the local store holding the folder the storageUri names.
            timeout: seconds to wait for Ready (at least :data:`helpers.kube.names.ISVC_READY_TIMEOUT`).

        Raises:
            ManifestError: the storageUri names another PVC than the cluster's model PVC.
            helpers.kube.client.WaitTimeout: not Ready in time (the message holds its conditions,
                the storage initializer's log, pods and events).
        """
        from helpers.serving.deploy import local_model_dir, publish_model

        uri = isvc.storage_uri_of(self.manifest)
        pvc, path = isvc.parse_pvc_uri(uri)
        if pvc != MODEL_PVC:
            raise ManifestError(
                f"storageUri {uri!r} names PVC {pvc!r}, but the kit's kind cluster keeps models "
                f"on PVC {MODEL_PVC!r} (namespace {MODEL_NAMESPACE!r}): set "
                f"PVC_NAME = {MODEL_PVC!r}")
        started = time.perf_counter()
        self.storage_uri = publish_model(local_model_dir(self.manifest, store_dir), self.target,
                                         name=path)
        self.info = deploy_inference_service(
            self.manifest, self.target, timeout=max(timeout, ISVC_READY_TIMEOUT))
        self.forward = port_forward(self.info["predictor_service"],
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

    #: Retries of the cluster's Endpoint: a replaced predictor pod takes some seconds to be
    #: Ready, and the port-forward comes back on its own (:class:`helpers.kube.kubectl.PortForward`).
    ENDPOINT_RETRIES = 6

    def endpoint(self, **kwargs: Any) -> Endpoint:
        """An :class:`Endpoint` client for the predictor (kwargs go to ``Endpoint``), which
        retries refused connections and 503s :data:`ENDPOINT_RETRIES` times unless told."""
        kwargs.setdefault("retries", self.ENDPOINT_RETRIES)
        return Endpoint(self.url, self.model_name, **kwargs)

    def logs(self, tail: int | None = 40) -> str:
        """The predictor container's log (``kubectl logs``; last ``tail`` lines, None for all)."""
        args = ["logs", "-n", self.namespace, "-l",
                f"serving.kserve.io/inferenceservice={self.model_name}", "-c", "kserve-container",
                "--tail", str(-1 if tail is None else tail)]
        return kubectl(*args, timeout=30).stdout.rstrip()

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
        delete_inference_service(self.model_name, self.namespace, target=self.target)

    def __repr__(self) -> str:
        where = self.url if self.forward is not None else "not forwarded"
        return (f"ClusterDeployment({self.model_name!r}, {self.namespace}, "
                f"{self.storage_uri or '-'}, {where})")
