"""The chapter's end-to-end demonstration as a Kubeflow Pipeline (kfp SDK v2).

Four components, one per step of the chapter's flow::

    volume  ->  train (+ save_model)  ->  serve (InferenceService)  ->  predict

Each component is a lightweight Python component whose body calls one *step* function of
this module; the step does the work on the chosen backend:

============ ============================================ ==========================================
step         ``sim`` (embedded default)                    ``kind`` (a real cluster)
============ ============================================ ==========================================
volume       a local folder standing in for the PVC       the ``model-store`` PVC
train        :func:`helpers.training.train` + save_model  a gang-scheduled XGBoostJob onto the PVC
serve        an InferenceService record, reconciled by    the InferenceService, applied and Ready
             :class:`SimCluster`'s controller into
             KServe's own model server on 127.0.0.1
predict      V2 requests to that server                   V2 requests through a port-forward
============ ============================================ ==========================================

:func:`compile_pipeline` writes the pipeline YAML (KFP's IR) that a Kubeflow Pipelines
install accepts; :func:`inspect_ir` reads it back through kfp's own protobuf schema. On the
embedded default, :func:`run_local` executes the pipeline with kfp's local
``SubprocessRunner``: every component runs as a subprocess of this Python, importing the
installed ``helpers`` package.

Why a controller on ``sim``: a pipeline step ends when its process ends, so the model server
cannot belong to the serve step. On a cluster the step only *declares* an InferenceService and
KServe's controller keeps the server running; :class:`SimCluster` plays that controller here
(a thread in the notebook's kernel that owns the server processes), so the serve step stays
declarative on both backends.
"""

# No ``from __future__ import annotations`` here: kfp reads the components' annotations
# (dsl.Output[dsl.Dataset], ...) as real types when it builds them.
import contextlib
import io
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp import dsl

from helpers import paths
from helpers.errors import BackendUnavailable, LabError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PIPELINE_NAME = "iris-end-to-end"
#: The claim (PVC) name of the model store, as on the cluster (cluster/manifests/training).
MODEL_CLAIM = "model-store"
#: Where lab 06 keeps the compiled YAML, the sim "cluster" state and kfp's local outputs.
DEFAULT_WORK_DIR = "build/pipeline"
#: Component names in flow order (the task names in the compiled DAG).
STEPS = ("volume", "train", "serve", "predict")
#: Seconds the sim controller waits for a model server to report ready.
SERVER_START_TIMEOUT = 90.0
#: Seconds a heartbeat of the sim controller stays fresh.
HEARTBEAT_SECONDS = 5.0


class PipelineError(LabError):
    """The pipeline could not be compiled, validated or run (the message says which step)."""


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
        if not storage_uri.startswith("pvc://"):
            raise PipelineError(f"storageUri {storage_uri!r}: on sim only pvc://<claim>/<path>/ "
                                "is understood (the claim is a local folder)")
        claim, _, sub = storage_uri[len("pvc://"):].partition("/")
        return self.volume_path(claim) / sub.strip("/")

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
    def start_controller(self, interval: float = 0.1) -> "SimCluster":
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


# =========================================================================== steps


def _target(backend_name: str):
    """Resolve a cluster backend for the steps; kwok cannot run them."""
    from helpers import backend

    if backend_name == "kwok":
        raise BackendUnavailable("the kwok backend runs the scheduling labs only (no container ever "
                                 "runs there, so there is no KServe or Training Operator): run the "
                                 'pipeline with BACKEND="kind" or BACKEND="sim"')
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
    if backend_name == "sim":
        SimCluster(state_dir).create_pvc(claim)
        return claim
    from helpers import cluster

    return cluster.ensure_model_pvc(_target(backend_name))


def step_train(backend_name: str, state_dir: str, claim: str, *, seed: int, model_name: str,
               test_csv: str) -> tuple[str, float]:
    """Train the Iris model, ``save_model`` it onto the volume, write the held-out rows.

    On a cluster the training runs as the chapter's XGBoostJob (gang-scheduled by Volcano);
    its accuracy is measured by the predict step through the served model.

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
    if backend_name == "sim":
        result = training.train(seed=seed)
        store = SimCluster(state_dir).volume_path(claim)
        training.save_model(result.model, store_dir=store, name=model_name)
        return f"pvc://{claim}/{model_name}/", result.accuracy
    from helpers import cluster

    run = cluster.run_training_job(_target(backend_name), seed=seed, model_name=model_name)
    return run.model_uri, run.accuracy if run.accuracy is not None else -1.0


def step_serve(backend_name: str, state_dir: str, storage_uri: str, model_name: str,
               timeout: float = 120.0) -> str:
    """Declare the InferenceService for ``storage_uri`` and wait until it is ready.

    Returns:
        Where to reach it: ``http://127.0.0.1:<port>`` on sim; ``service://<ns>/<svc>`` (the
        predictor Service, reached through a port-forward) on a cluster.
    """
    manifest = _isvc_manifest(model_name, storage_uri)
    if backend_name == "sim":
        sim = SimCluster(state_dir)
        sim.apply_isvc(manifest)
        return sim.wait_ready(model_name, timeout)
    from helpers import cluster

    info = cluster.deploy_inference_service(manifest, _target(backend_name), timeout=max(timeout, 300))
    return f"service://{info['namespace']}/{info['predictor_service']}"


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

        self._forward = None
        if where.startswith("http://"):
            base_url = where
        elif where.startswith("service://"):
            from helpers import cluster

            namespace, _, service = where[len("service://"):].partition("/")
            self._forward = cluster.port_forward(service, namespace, target=_target(backend_name))
            base_url = self._forward.url
        else:
            raise PipelineError(f"cannot reach {where!r}: expected http://... or service://<ns>/<svc> "
                                "(the serve step's output)")
        self.endpoint = Endpoint(base_url, model_name)

    def close(self) -> None:
        """Close the client and any port-forward. Safe to call twice."""
        self.endpoint.close()
        if self._forward is not None:
            self._forward.close()
            self._forward = None

    def __enter__(self) -> "Connection":
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


# =========================================================================== kfp components
# Lightweight components: kfp ships each function's source to the executor, so every import
# sits inside the function and the work happens in helpers (installed in the image/venv).


def volume(backend: str, state_dir: str) -> str:
    """Provision the model volume (a PVC on a cluster, a local folder on sim)."""
    from helpers import pipeline  # noqa: PLW0406 - runs in kfp's executor, not in this module

    return pipeline.step_volume(backend, state_dir)


def train(backend: str, state_dir: str, claim: str, seed: int, model_name: str,  # noqa: PLR0917
          test_rows: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]) -> str:
    """Train the Iris XGBoost model and save_model() it onto the volume; return its storageUri."""
    from helpers import pipeline  # noqa: PLW0406 - runs in kfp's executor, not in this module

    uri, accuracy = pipeline.step_train(backend, state_dir, claim, seed=seed, model_name=model_name,
                                        test_csv=test_rows.path)
    metrics.log_metric("train_accuracy", accuracy)
    return uri


def serve(backend: str, state_dir: str, storage_uri: str, model_name: str) -> str:
    """Serve the model through an InferenceService; return where it answers."""
    from helpers import pipeline  # noqa: PLW0406 - runs in kfp's executor, not in this module

    return pipeline.step_serve(backend, state_dir, storage_uri, model_name)


def predict(backend: str, endpoint: str, model_name: str,
            test_rows: dsl.Input[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]) -> float:
    """Predict the held-out rows through the served model (V2); return the accuracy."""
    from helpers import pipeline  # noqa: PLW0406 - runs in kfp's executor, not in this module

    accuracy, n_rows = pipeline.step_predict(backend, endpoint, model_name, test_rows.path)
    metrics.log_metric("served_accuracy", accuracy)
    metrics.log_metric("rows", n_rows)
    return accuracy


def base_image() -> str:
    """The image the components run in on a cluster: the kit's training image (has helpers)."""
    from helpers import cluster

    return cluster.training_image_tag()


def build_pipeline(image: str | None = None, install_kfp: bool = False):
    """Build the kfp pipeline function.

    Args:
        image: the components' base image (default :func:`base_image`).
        install_kfp: let each component ``pip install`` kfp at start-up, as KFP's default
            does; off for the local runner, which uses this environment's kfp.

    Returns:
        The ``@dsl.pipeline`` function ``iris_end_to_end(backend, seed, model_name, state_dir)``.
    """
    image = image or base_image()
    make = {name: dsl.component(func, base_image=image, install_kfp_package=install_kfp)
            for name, func in zip(STEPS, (volume, train, serve, predict), strict=True)}

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Iris on Kubeflow: volume -> train (XGBoost) -> serve (KServe) -> predict")
    def iris_end_to_end(backend: str = "sim", seed: int = 42, model_name: str = "iris",
                        state_dir: str = DEFAULT_WORK_DIR + "/sim-cluster") -> float:
        volume = make["volume"](backend=backend, state_dir=state_dir).set_display_name("volume")
        train = make["train"](backend=backend, state_dir=state_dir, claim=volume.output, seed=seed,
                              model_name=model_name).set_display_name("train")
        serve = make["serve"](backend=backend, state_dir=state_dir, storage_uri=train.outputs["Output"],
                              model_name=model_name).set_display_name("serve")
        predict = make["predict"](backend=backend, endpoint=serve.output, model_name=model_name,
                                  test_rows=train.outputs["test_rows"]).set_display_name("predict")
        return predict.outputs["Output"]

    return iris_end_to_end


# =========================================================================== compile, inspect


def compile_pipeline(path: str | os.PathLike[str] | None = None, image: str | None = None) -> Path:
    """Compile the pipeline to KFP's YAML IR (what you upload to Kubeflow Pipelines).

    Args:
        path: output file; default ``build/pipeline/iris-end-to-end.yaml``.
        image: components' base image (default the kit's training image).

    Returns:
        The path written.
    """
    from kfp import compiler

    target = paths.resolve(path) if path else paths.resolve(DEFAULT_WORK_DIR) / f"{PIPELINE_NAME}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, install_kfp=True), str(target))
    return target


def inspect_ir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a compiled pipeline YAML the way KFP's API server reads it, and summarise it.

    The document is parsed into kfp's own ``PipelineSpec`` protobuf (unknown or mistyped
    fields are errors, as on upload), then loaded back with
    ``kfp.components.load_component_from_file``.

    Returns:
        ``{"name", "schema_version", "sdk_version", "tasks": {task: [upstream tasks]},
        "edges": [(producer, consumer, input)], "components", "images", "parameters", "order"}``.

    Raises:
        PipelineError: the file is missing or not a valid KFP pipeline.
    """
    import yaml
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    target = paths.resolve(path)
    if not target.is_file():
        raise PipelineError(f"no compiled pipeline at {target}: run pipeline.compile_pipeline() first")
    docs = list(yaml.safe_load_all(target.read_text()))
    try:
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        components.load_component_from_file(str(target))
    except (json_format.ParseError, ValueError, TypeError, KeyError) as exc:
        raise PipelineError(f"{target} is not a valid KFP pipeline: {exc}") from exc
    tasks = {name: sorted(task.dependent_tasks) for name, task in spec.root.dag.tasks.items()}
    edges = []  # (producer, consumer, input name): what flows along each arrow
    for name, task in spec.root.dag.tasks.items():
        for key, value in task.inputs.parameters.items():
            if value.HasField("task_output_parameter"):
                edges.append((value.task_output_parameter.producer_task, name, key))
        for key, value in task.inputs.artifacts.items():
            if value.HasField("task_output_artifact"):
                edges.append((value.task_output_artifact.producer_task, name, key))
    return {
        "name": spec.pipeline_info.name,
        "schema_version": spec.schema_version,
        "sdk_version": spec.sdk_version,
        "tasks": tasks,
        "edges": sorted(edges),
        "order": topological_order(tasks),
        "components": sorted(spec.components),
        "images": sorted({ex["container"]["image"]
                          for ex in docs[0]["deploymentSpec"]["executors"].values()}),
        "parameters": sorted(spec.root.input_definitions.parameters),
    }


def topological_order(tasks: dict[str, list[str]]) -> list[str]:
    """Order tasks so each comes after the tasks it depends on (ties by name)."""
    order: list[str] = []
    remaining = dict(tasks)
    while remaining:
        ready = sorted(t for t, deps in remaining.items() if all(d in order for d in deps))
        if not ready:
            raise PipelineError(f"the pipeline DAG has a cycle among {sorted(remaining)}")
        order += ready
        for t in ready:
            remaining.pop(t)
    return order


def plot_dag(summary: dict[str, Any]) -> "Figure":
    """Draw the compiled DAG (from :func:`inspect_ir`): a box per task, an arrow per input it gets.

    Made with pyplot, so Jupyter's inline backend shows it at the end of the cell (a bare
    ``Figure`` is shown by nothing: the notebook printed only its repr); assign the result
    to avoid a second copy. Close it with ``plt.close(fig)`` outside notebooks.
    """
    import matplotlib.pyplot as plt

    order = summary["order"]
    fig, ax = plt.subplots(figsize=(1.9 * len(order) + 0.5, 2.2), layout="constrained")
    pos = {task: (i * 2.0, 0.0) for i, task in enumerate(order)}
    for producer, consumer, name in summary["edges"]:
        (x0, _), (x1, _) = pos[producer], pos[consumer]
        skip = abs(x1 - x0) > 2.0  # arrows that jump over a task arc above it
        ax.annotate("", xy=(x1 - 0.45, 0.12 if skip else 0.0), xytext=(x0 + 0.45, 0.12 if skip else 0.0),
                    arrowprops={"arrowstyle": "->", "lw": 1.4,
                                "connectionstyle": "arc3,rad=-0.3" if skip else "arc3"})
        ax.text((x0 + x1) / 2, 0.62 if skip else 0.1, name, ha="center", va="bottom", fontsize=8,
                color="#444444")
    for task, (x, y) in pos.items():
        ax.text(x, y, task, ha="center", va="center", fontsize=11,
                bbox={"boxstyle": "round,pad=0.5", "fc": "#dbe9f6", "ec": "#2b6ca3"})
    ax.set_xlim(-1, 2.0 * len(order) - 1)
    ax.set_ylim(-0.5, 0.9)
    ax.set_axis_off()
    ax.set_title(f"{summary['name']}: tasks of the compiled pipeline")
    return fig


# =========================================================================== run


@dataclass
class PipelineRun:
    """A local run of the pipeline: its outputs, timing, log and the sim controller."""

    backend: str
    model_name: str
    accuracy: float
    seconds: float
    state_dir: Path
    outputs_dir: Path
    log: str = field(repr=False, default="")
    sim: "SimCluster | None" = field(repr=False, default=None)

    @property
    def run_dir(self) -> Path:
        """This run's folder under ``outputs_dir`` (kfp names it ``<pipeline>-<timestamp>``)."""
        runs = sorted(self.outputs_dir.glob(f"{PIPELINE_NAME}-*"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise PipelineError(f"no run folder under {self.outputs_dir}: did the run start?")
        return runs[-1]

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Per task, what kfp's local runner recorded: output parameters and metrics.

        Returns:
            ``{task: {"parameters": {...}, "metrics": {...}, "artifacts": [names]}}``.
        """
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.run_dir.glob("*/executor_output.json")):
            data = json.loads(path.read_text())
            metrics: dict[str, Any] = {}
            for name, group in data.get("artifacts", {}).items():
                if name == "metrics":
                    for artifact in group["artifacts"]:
                        metrics.update(artifact.get("metadata", {}))
            found[path.parent.name] = {"parameters": data.get("parameterValues", {}),
                                       "metrics": metrics,
                                       "artifacts": sorted(data.get("artifacts", {}))}
        return found

    @property
    def served_at(self) -> str:
        """The serve step's output: where the model answers (``http://...`` or ``service://...``)."""
        return self.outputs()["serve"]["parameters"]["Output"]

    def stop(self) -> None:
        """Stop the sim controller and its model servers. Safe to call twice."""
        if self.sim is not None:
            self.sim.stop()


def run_local(backend_name: str = "sim", seed: int = 42, model_name: str = "iris",
              work_dir: str | os.PathLike[str] = DEFAULT_WORK_DIR) -> "PipelineRun":
    """Execute the pipeline with kfp's local SubprocessRunner.

    On ``sim`` this first starts the :class:`SimCluster` controller in this process (it owns
    the model server after the serve step ends: stop it with :meth:`PipelineRun.stop`). On
    ``kind`` the steps act on the cluster through the kubeconfig.

    Returns:
        A :class:`PipelineRun` (the served model keeps running on sim).

    Raises:
        PipelineError: a step failed; the message holds the tail of the components' log.
    """
    from kfp import local

    if backend_name not in ("sim", "kind"):
        _target(backend_name)  # raises the explained error for kwok / unknown names
    work = paths.resolve(work_dir)
    state_dir = work / "sim-cluster"
    outputs = work / "local_outputs"
    sim = sim_controller(state_dir) if backend_name == "sim" else None
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs))
    pipeline_func = build_pipeline(image="python:3.11", install_kfp=False)
    buffer = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            task = pipeline_func(backend=backend_name, seed=seed, model_name=model_name,
                                 state_dir=str(state_dir))
    except (RuntimeError, LabError) as exc:
        if sim is not None:
            sim.stop()
        tail = "\n".join(buffer.getvalue().strip().splitlines()[-25:])
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # kfp colours its messages
        raise PipelineError(f"the pipeline failed on {backend_name}: {message}\n"
                            f"--- last log lines ---\n{tail}") from None
    return PipelineRun(backend_name, model_name, float(task.output), time.perf_counter() - start, state_dir,
                       outputs, buffer.getvalue(), sim)


def cleanup(run: "PipelineRun | None" = None,
            work_dir: str | os.PathLike[str] = DEFAULT_WORK_DIR) -> list[str]:
    """Stop servers and remove the run state (the compiled YAML stays). Safe to call twice.

    Returns:
        What was removed (folder names), for the lab to print.
    """
    removed = []
    if run is not None:
        run.stop()
        if run.backend != "sim":
            from helpers import cluster

            # InferenceService and XGBoostJob, ignore-not-found; the PVC (and model) stays.
            target = _target(run.backend)
            cluster.delete_inference_service(run.model_name, target=target)
            cluster.delete_training_job(target)
            removed.append("cluster objects")
    work = paths.resolve(work_dir)
    for name in ("sim-cluster", "local_outputs"):
        target = work / name
        if target.exists():
            shutil.rmtree(target)
            removed.append(name)
    return removed


# =========================================================================== bench


def bench() -> dict:
    """``make bench`` section ``e2e``: lab 06 on sim (target <= 20 s), ``make grade`` (<= 30 s)."""
    import tempfile

    import nbformat

    from helpers import grading, runner

    lab = paths.labs_dir() / "06_end_to_end.ipynb"
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kflabs-bench-e2e-") as tmp:
        run = runner.run_lab(lab, parameters={"BACKEND": "sim", "OUTPUT_DIR": str(Path(tmp) / "results")},
                             output_notebook=Path(tmp) / lab.name)
        figures["lab06_seconds"] = round(run.seconds, 2)
        figures["lab06_status"] = run.status
        figures["lab06_target_seconds"] = 20
        (Path(tmp) / "student").mkdir()
        # The lightest lab and the heaviest: make grade on an unanswered student copy of each.
        for stem in ("00_setup", "06_end_to_end"):
            student = Path(tmp) / "student" / f"{stem}.ipynb"
            nbformat.write(grading.student_copy(grading.read_notebook(paths.labs_dir() / student.name)),
                           student)
            start = time.perf_counter()
            report = grading.grade(student)
            figures[f"grade_{stem}_seconds"] = round(time.perf_counter() - start, 2)
            figures[f"grade_{stem}_score"] = f"{report.score}/{report.total}"
        figures["grade_target_seconds"] = 30
    return figures
