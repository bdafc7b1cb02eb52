"""The ``sim`` backend's stand-in for a cluster, for the pipeline: a file-backed KServe controller.

A pipeline step ends when its process ends, so the model server cannot belong to the serve
step. On a cluster the step only *declares* an InferenceService and KServe's controller keeps
the server running; :class:`SimCluster` plays that controller here (a thread in the notebook's
kernel that owns the server processes), so the serve step stays declarative on both backends.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.errors import LabError, ManifestError, PipelineError

#: Seconds the sim controller waits for a model server to report ready.
SERVER_START_TIMEOUT = 90.0
#: Seconds a heartbeat of the sim controller stays fresh.
HEARTBEAT_SECONDS = 5.0




# =========================================================================== sim "cluster"


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: other processes poll these files and must never read half."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    staged.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(staged, path)


class SimCluster:
    """``sim``'s stand-in for the Kubernetes API and KServe's controller, in a folder.

    The API side (used by the steps, in any process) records objects as JSON files:
    ``persistentvolumeclaims/<claim>.json`` (the claim's local folder under ``volumes/``) and
    ``inferenceservices/<name>.json`` (the manifest). The controller side (a thread in the
    process that calls :meth:`start_controller`, i.e. the notebook's kernel) reconciles each
    InferenceService into KServe's Python model server
    (:class:`helpers.serving.local.LocalServer`) on 127.0.0.1 and writes its status
    (``ready``, ``url``) next to it, as KServe writes ``status.url`` on a cluster.

    Args:
        state_dir: the folder holding the objects; relative paths resolve against the repo root.
    """

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.state_dir = paths.resolve(state_dir)
        self.servers: dict[str, Any] = {}
        self._applied: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- API side --------------------------------------------------------------------------
    def _dir(self, kind: str) -> Path:
        path = self.state_dir / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def create_pvc(self, claim: str) -> Path:
        """Create (or keep) the claim's folder and record the claim; return the folder."""
        volume = self._dir("volumes") / claim
        volume.mkdir(parents=True, exist_ok=True)
        record = {"name": claim, "path": str(volume)}
        _write_json(self._dir("persistentvolumeclaims") / f"{claim}.json", record)
        return volume

    def volume_path(self, claim: str) -> Path:
        """The local folder of a provisioned claim.

        Raises:
            PipelineError: the claim was never provisioned (the volume step did not run).
        """
        record = self.state_dir / "persistentvolumeclaims" / f"{claim}.json"
        if not record.is_file():
            raise PipelineError(f"no volume claim {claim!r} in {self.state_dir}: the volume step "
                                "provisions it; run the whole pipeline, not a step alone")
        return Path(json.loads(record.read_text())["path"])

    def resolve_uri(self, storage_uri: str) -> Path:
        """Map ``pvc://<claim>/<path>/`` to the local folder, as KServe mounts it at /mnt/models."""
        from helpers.serving import isvc

        try:
            claim, sub = isvc.parse_pvc_uri(storage_uri)
        except ManifestError as exc:
            raise PipelineError(f"on sim the claim is a local folder: {exc}") from None
        return self.volume_path(claim) / sub

    def apply_isvc(self, manifest: dict) -> str:
        """Record an InferenceService (like ``kubectl apply``); return its name."""
        name = manifest["metadata"]["name"]
        target = self._dir("inferenceservices") / f"{name}.json"
        status = target.with_suffix(".status.json")
        if status.exists():
            status.unlink()  # a new generation: ready again only once reconciled
        _write_json(target, manifest)
        return name

    def wait_ready(self, name: str, timeout: float = 120.0) -> str:
        """Wait until the controller reports the InferenceService ready; return its URL.

        Raises:
            PipelineError: no controller is running, the server failed (its message is
                included), or it was not ready within ``timeout`` seconds.
        """
        status = self.state_dir / "inferenceservices" / f"{name}.status.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if status.is_file():
                state = json.loads(status.read_text())
                if state["ready"]:
                    return state["url"]
                raise PipelineError(f"InferenceService {name!r} failed on sim: {state['message']}")
            if not self.controller_alive():
                raise PipelineError(
                    f"no sim controller is running for {self.state_dir}: on sim the notebook's "
                    "kernel plays KServe's controller; start it with "
                    "SimCluster(state_dir).start_controller() (pipeline.run_local does)")
            time.sleep(0.1)
        raise PipelineError(f"InferenceService {name!r} was not ready within {timeout:.0f} s on sim")

    def controller_alive(self) -> bool:
        """True if a controller wrote its heartbeat within the last few seconds."""
        beat = self.state_dir / "controller.json"
        if not beat.is_file():
            return False
        return time.time() - json.loads(beat.read_text())["time"] < HEARTBEAT_SECONDS

    # -- controller side -------------------------------------------------------------------
    def start_controller(self, interval: float = 0.1) -> SimCluster:
        """Start reconciling in background threads (idempotent); return ``self``.

        One thread reconciles (starting a server can take seconds); another writes the
        heartbeat the steps check, so a slow start is never mistaken for no controller.
        """
        if self._threads and all(t.is_alive() for t in self._threads):
            return self
        self._stop.clear()
        self._beat()
        self._threads = [
            threading.Thread(target=self._loop, args=(self.reconcile, interval),
                             name="sim-kserve-controller", daemon=True),
            threading.Thread(target=self._loop, args=(self._beat, 1.0),
                             name="sim-kserve-heartbeat", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _beat(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.state_dir / "controller.json", {"pid": os.getpid(), "time": time.time()})

    def _loop(self, work, interval: float) -> None:
        while not self._stop.is_set():
            work()
            self._stop.wait(interval)

    def reconcile(self) -> None:
        """Bring the servers in line with the recorded InferenceServices (one pass)."""
        from helpers.serving.local import LocalServer

        folder = self.state_dir / "inferenceservices"
        manifests = sorted(folder.glob("*.json")) if folder.is_dir() else []
        for path in manifests:
            if path.name.endswith(".status.json"):
                continue
            name = path.stem
            # The spec plus the model files' stamps: unlike KServe on a cluster (which reloads
            # only when the pod restarts), re-running the pipeline here always serves the new model.
            text = path.read_text() + self._model_stamp(path)
            status = path.with_suffix(".status.json")
            server = self.servers.get(name)
            if self._applied.get(name) == text:
                if server is not None and server.running:
                    if not status.is_file():  # re-applied unchanged: report, don't restart
                        _write_json(status, {"ready": True, "url": server.url, "pid": server.pid,
                                             "message": ""})
                    continue
                if server is None and status.is_file():
                    continue  # failed before; stays failed until the spec changes or is re-applied
            self._applied[name] = text
            if server is not None:
                self.servers.pop(name).cleanup()  # a changed spec or a dead server: roll it
            try:
                model = json.loads(path.read_text())["spec"]["predictor"]["model"]
                model_dir = self.resolve_uri(model["storageUri"])
                server = LocalServer(model_dir, name, model_format=model["modelFormat"]["name"],
                                     access_log=False)
                # Generous: KServe's start-up imports take seconds, many more on a busy machine.
                self.servers[name] = server.start(timeout=SERVER_START_TIMEOUT)
                state = {"ready": True, "url": server.url, "pid": server.pid, "message": ""}
            except LabError as exc:  # the server's own message names the problem
                state = {"ready": False, "url": "", "pid": None, "message": str(exc)}
            except (KeyError, ValueError, OSError) as exc:
                # A malformed record or an unreadable folder: report it to the waiting serve
                # step instead of letting the controller thread die silently.
                state = {"ready": False, "url": "", "pid": None,
                         "message": f"{type(exc).__name__}: {exc} (in {path.name})"}
            _write_json(status, state)

    def _model_stamp(self, manifest: Path) -> str:
        """Names, sizes and mtimes of the files the manifest's storageUri points at."""
        try:
            uri = json.loads(manifest.read_text())["spec"]["predictor"]["model"]["storageUri"]
            folder = self.resolve_uri(uri)
        except (LabError, KeyError, ValueError):
            return ""
        if not folder.is_dir():
            return ""
        return "".join(f"|{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                       for f in sorted(folder.iterdir()) if f.is_file())

    @property
    def running(self) -> bool:
        """True while this object's controller threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def forget_services(self) -> None:
        """Drop InferenceService records left by an earlier process (nothing serves them now)."""
        folder = self.state_dir / "inferenceservices"
        if folder.is_dir():
            shutil.rmtree(folder)

    def stop(self) -> None:
        """Stop the controller and every server it started. Safe to call twice."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=SERVER_START_TIMEOUT + 10)  # a start in progress finishes first
        self._threads = []
        for server in self.servers.values():
            server.cleanup()
        self.servers.clear()
        self._applied.clear()
        beat = self.state_dir / "controller.json"
        if beat.is_file():
            beat.unlink()
        if _CONTROLLERS.get(self.state_dir) is self:
            del _CONTROLLERS[self.state_dir]


#: One controller per state folder in this process: two would fight over the same records.
_CONTROLLERS: dict[Path, SimCluster] = {}


def sim_controller(state_dir: str | os.PathLike[str]) -> SimCluster:
    """The running :class:`SimCluster` controller for ``state_dir``, started if needed.

    A new controller first forgets records left by an earlier process, whose servers are gone.
    """
    key = paths.resolve(state_dir)
    sim = _CONTROLLERS.get(key)
    if sim is None or not sim.running:
        sim = SimCluster(key)
        sim.forget_services()
        _CONTROLLERS[key] = sim
    return sim.start_controller()


