"""helpers.pipeline: the compiled KFP IR, the sim controller, the steps, and a local run."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import yaml

from helpers import pipeline, training
from helpers.backend.kind import serving as kind_serving
from helpers.backend.kind import training as kind_training
from helpers.errors import BackendUnavailable
from helpers.kube import kubectl as kubectl_run
from helpers.pipeline import PipelineError, SimCluster


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The pipeline compiled once for the module (compiling imports and builds four components)."""
    return pipeline.compile_pipeline(tmp_path_factory.mktemp("ir") / "p.yaml", image="kflabs-train:test")


def _no_children() -> list:
    """Child processes left behind, besides the run's shared control plane (a session fixture
    that a kwok test earlier in the same pytest run started)."""
    from helpers.backend.kwok import layout

    shared = str(layout.bin_dir())
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            if not (child.cmdline() or [""])[0].startswith(shared):
                left.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # gone while we looked: not left behind
    return left


# --------------------------------------------------------------------------- compile / IR


def test_compiled_ir_has_the_four_steps_wired_in_order(compiled: Path):
    """volume -> train -> serve -> predict, and predict reads train's held-out rows."""
    ir = pipeline.inspect_ir(compiled)
    assert ir["name"] == pipeline.PIPELINE_NAME
    assert ir["order"] == list(pipeline.STEPS)
    assert ir["tasks"] == {"volume": [], "train": ["volume"], "serve": ["train"],
                           "predict": ["serve", "train"]}
    assert ir["edges"] == [("serve", "predict", "endpoint"), ("train", "predict", "test_rows"),
                           ("train", "serve", "storage_uri"), ("volume", "train", "claim")]
    assert ir["components"] == [f"comp-{s}" for s in sorted(pipeline.STEPS)]
    assert ir["images"] == ["kflabs-train:test"]
    assert ir["parameters"] == ["backend", "model_name", "seed", "state_dir", "trainer"]
    assert ir["schema_version"] == "2.1.0"


def test_compiled_components_run_helpers_and_install_kfp_for_a_cluster(compiled: Path):
    """Each executor runs kfp's executor on a component whose body imports helpers."""
    doc = yaml.safe_load(compiled.read_text())
    executors = doc["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{s}" for s in sorted(pipeline.STEPS)]
    for name, executor in executors.items():
        program = "\n".join(executor["container"]["command"])
        assert "kfp.dsl.executor_main" in program, name
        assert "pip install" in program, "a KFP pod installs the SDK it runs with"
        assert "from helpers.pipeline import steps" in program, name
    train_outputs = doc["components"]["comp-train"]["outputDefinitions"]["artifacts"]
    assert train_outputs["test_rows"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert train_outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"


def test_inspect_ir_rejects_what_kfp_would_reject(compiled: Path, tmp_path: Path):
    """An unknown field (a typo) fails kfp's own PipelineSpec parse, with the file named."""
    doc = yaml.safe_load(compiled.read_text())
    doc["root"]["dag"]["taskz"] = doc["root"]["dag"].pop("tasks")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    with pytest.raises(PipelineError, match="not a valid KFP pipeline"):
        pipeline.inspect_ir(broken)
    with pytest.raises(PipelineError, match="compile_pipeline"):
        pipeline.inspect_ir(tmp_path / "missing.yaml")


def test_topological_order_and_cycles():
    """Dependencies first; a cycle is named."""
    assert pipeline.topological_order({"b": ["a"], "a": [], "c": ["a", "b"]}) == ["a", "b", "c"]
    with pytest.raises(PipelineError, match="cycle"):
        pipeline.topological_order({"a": ["b"], "b": ["a"]})


def test_plot_dag_draws_every_task_and_input(compiled: Path):
    """The picture has a box per task and a label per input edge."""
    fig = pipeline.plot_dag(pipeline.inspect_ir(compiled))
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert set(pipeline.STEPS) <= texts
    assert {"claim", "storage_uri", "endpoint", "test_rows"} <= texts


# --------------------------------------------------------------------------- sim controller


def test_sim_volume_and_uri_resolution(tmp_path: Path):
    """A claim is a folder; pvc://claim/path resolves inside it; unknown claims are named."""
    sim = SimCluster(tmp_path / "state")
    volume = sim.create_pvc("model-store")
    assert volume.is_dir()
    assert sim.resolve_uri("pvc://model-store/iris/") == volume / "iris"
    with pytest.raises(PipelineError, match="no volume claim 'other'"):
        sim.resolve_uri("pvc://other/iris/")
    with pytest.raises(PipelineError, match="only pvc://"):
        sim.resolve_uri("s3://bucket/iris")


def test_wait_ready_without_controller_names_the_fix(tmp_path: Path):
    """A serve step with nobody playing KServe's controller fails at once, saying so."""
    sim = SimCluster(tmp_path / "state")
    sim.apply_isvc(pipeline.steps._isvc_manifest("iris", "pvc://model-store/iris/"))
    with pytest.raises(PipelineError, match="start_controller"):
        sim.wait_ready("iris", timeout=5)


def test_controller_reports_a_missing_model(tmp_path: Path):
    """An InferenceService whose folder holds no model fails with the server's own message."""
    sim = SimCluster(tmp_path / "state")
    sim.create_pvc("model-store")
    sim.apply_isvc(pipeline.steps._isvc_manifest("iris", "pvc://model-store/iris/"))
    sim.reconcile()
    with pytest.raises(PipelineError, match="failed on sim"):
        sim.wait_ready("iris", timeout=5)
    sim.stop()
    assert not _no_children()


def test_steps_in_process_serve_the_trained_model(tmp_path: Path):
    """volume -> train -> serve -> predict without kfp: the served model is the trained one."""
    state = str(tmp_path / "state")
    sim = pipeline.sim_controller(state)
    try:
        claim = pipeline.step_volume("sim", state)
        rows_csv = str(tmp_path / "rows.csv")
        uri, accuracy = pipeline.step_train("sim", state, claim, seed=3, model_name="iris",
                                            test_csv=rows_csv)
        assert uri == "pvc://model-store/iris/"
        assert sorted(p.name for p in sim.resolve_uri(uri).iterdir()) == ["model.json"]
        where = pipeline.step_serve("sim", state, uri, "iris")
        assert where.startswith("http://127.0.0.1:")
        served_accuracy, n = pipeline.step_predict("sim", where, "iris", rows_csv)
        assert (served_accuracy, n) == (accuracy, 45)
        assert pipeline.sim_controller(state) is sim, "one controller per state folder"
        # Re-applying the same spec reports the running server rather than restarting it.
        assert pipeline.step_serve("sim", state, uri, "iris") == where
    finally:
        sim.stop()
        sim.stop()  # safe twice
    assert not _no_children()


def test_kwok_and_unknown_backends_are_refused():
    """kwok runs no containers: the steps say so and name the backends that work."""
    with pytest.raises(BackendUnavailable, match="BACKEND='kind'"):
        pipeline.step_volume("kwok", "unused")
    with pytest.raises(BackendUnavailable):
        pipeline.run_local("minikube")


def test_connection_rejects_an_unknown_address():
    """Only the serve step's outputs (http:// or service://) can be connected to."""
    with pytest.raises(PipelineError, match="serve step"):
        pipeline.connect("sim", "ftp://x", "iris")


def test_read_rows_round_trips_the_train_step_file(tmp_path: Path):
    """The held-out rows travel as CSV: four measurements, then the label."""
    csv = tmp_path / "rows.csv"
    X, y, _, _ = training.load_iris()
    csv.write_text("5.1,3.5,1.4,0.2,0\n6.3,3.3,6,2.5,2\n")
    rows, labels = pipeline.read_rows(csv)
    assert rows == [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]] and labels == [0, 2]
    assert X.shape == (150, 4) and set(y.tolist()) == {0, 1, 2}


# --------------------------------------------------------------------------- kfp local runner


def test_run_local_executes_the_pipeline_with_kfps_runner(tmp_path: Path):
    """kfp's SubprocessRunner runs the four components; the model stays served until stop."""
    work = tmp_path / "work"
    run = pipeline.run_local("sim", seed=42, work_dir=work)
    try:
        outputs = run.outputs()
        assert sorted(outputs) == sorted(pipeline.STEPS)
        assert outputs["volume"]["parameters"]["Output"] == "model-store"
        assert outputs["train"]["metrics"]["train_accuracy"] == run.accuracy
        assert outputs["predict"]["metrics"]["rows"] == 45
        assert "test_rows" in outputs["train"]["artifacts"]
        with pipeline.connect("sim", run.served_at, "iris") as conn:
            assert conn.endpoint.model_ready()
            labels = conn.endpoint.labels([[5.1, 3.5, 1.4, 0.2]], protocol="v1")
        assert labels.tolist() == [0]
        record = json.loads((work / "sim-cluster" / "inferenceservices" / "iris.json").read_text())
        assert record["spec"]["predictor"]["model"]["storageUri"] == "pvc://model-store/iris/"
    finally:
        removed = pipeline.cleanup(run, work)
    assert removed == ["sim-cluster", "local_outputs"]
    assert pipeline.cleanup(run, work) == [], "cleanup is safe twice"
    assert not _no_children()


def test_kind_steps_call_the_cluster_helpers(monkeypatch, tmp_path: Path):
    """On kind each step goes through the kind backend's verbs (faked here: no cluster in the tests)."""
    from types import SimpleNamespace

    from helpers import backend

    calls = []
    target = backend.make("kind", "test", context="kind-kflabs")
    monkeypatch.setattr(backend, "resolve", lambda name, announce=True: target)
    monkeypatch.setattr(kind_training, "ensure_model_pvc",
                        lambda t: calls.append(("pvc", t)) or "model-store")
    monkeypatch.setattr(kind_training, "run_training_job", lambda t, seed, model_name: calls.append(
        ("train", seed, model_name)) or SimpleNamespace(model_uri=f"pvc://model-store/{model_name}/",
                                                        accuracy=0.9))
    monkeypatch.setattr(kind_serving, "deploy_inference_service", lambda doc, t, timeout: calls.append(
        ("isvc", doc["metadata"]["name"], doc["spec"]["predictor"]["model"]["storageUri"]))
        or {"namespace": "kflabs-serving", "predictor_service": f"{doc['metadata']['name']}-predictor"})
    closed = []
    monkeypatch.setattr(kubectl_run, "port_forward", lambda svc, ns, target: SimpleNamespace(
        url="http://127.0.0.1:9", close=lambda: closed.append((ns, svc))))

    assert pipeline.step_volume("kind", "unused") == "model-store"
    uri, accuracy = pipeline.step_train("kind", "unused", "model-store", seed=5, model_name="iris",
                                        test_csv=str(tmp_path / "rows.csv"))
    assert (uri, accuracy) == ("pvc://model-store/iris/", 0.9)
    assert len(pipeline.read_rows(tmp_path / "rows.csv")[0]) == 45
    where = pipeline.step_serve("kind", "unused", uri, "iris")
    assert where == "service://kflabs-serving/iris-predictor"
    with pipeline.connect("kind", where, "iris") as conn:
        assert conn.endpoint.base_url == "http://127.0.0.1:9"
    assert closed == [("kflabs-serving", "iris-predictor")]
    assert calls == [("pvc", target), ("train", 5, "iris"), ("isvc", "iris", "pvc://model-store/iris/")]


def test_kind_train_step_with_trainer_v2_runs_the_trainjob(monkeypatch, tmp_path: Path):
    """trainer="v2" on kind trains through Kubeflow Trainer's TrainJob, not the XGBoostJob."""
    from types import SimpleNamespace

    from helpers import backend
    from helpers.backend.kind import trainer_v2 as kind_trainer_v2

    calls = []
    target = backend.make("kind", "test", context="kind-kflabs")
    monkeypatch.setattr(backend, "resolve", lambda name, announce=True: target)
    monkeypatch.setattr(kind_training, "run_training_job",
                        lambda *a, **k: pytest.fail("v2 must not run the XGBoostJob"))
    monkeypatch.setattr(kind_trainer_v2, "run_trainjob", lambda t, seed, model_name: calls.append(
        ("trainjob", t, seed, model_name)) or SimpleNamespace(model_uri=f"pvc://model-store/{model_name}/",
                                                              accuracy=0.95))
    uri, accuracy = pipeline.step_train("kind", "unused", "model-store", seed=5, model_name="iris",
                                        test_csv=str(tmp_path / "rows.csv"), trainer="v2")
    assert (uri, accuracy) == ("pvc://model-store/iris/", 0.95)
    assert calls == [("trainjob", target, 5, "iris")]


def test_sim_trains_in_this_process_whichever_trainer(tmp_path: Path):
    """No training controller runs on sim: v1 and v2 save the same model onto the volume."""
    saved = {}
    for trainer in ("v1", "v2"):
        state = tmp_path / trainer
        pipeline.step_volume("sim", str(state))
        uri, accuracy = pipeline.step_train("sim", str(state), "model-store", seed=3, model_name="iris",
                                            test_csv=str(tmp_path / f"{trainer}.csv"), trainer=trainer)
        assert uri == "pvc://model-store/iris/" and accuracy > 0.8
        saved[trainer] = next(SimCluster(state).volume_path("model-store").rglob("model.*")).read_bytes()
    assert saved["v1"] == saved["v2"]


@pytest.mark.parametrize("name", ["sim", "kind"])
def test_an_unknown_trainer_is_refused_naming_the_choices(monkeypatch, tmp_path: Path, name):
    """Checked before any training, on every backend that trains."""
    from helpers import backend

    target = backend.make(name, "test", context="kind-kflabs")
    monkeypatch.setattr(backend, "resolve", lambda n, announce=True: target)
    with pytest.raises(PipelineError, match=r"TRAINER='v3': choose 'v1' or 'v2'"):
        pipeline.step_train(name, str(tmp_path), "model-store", seed=5, model_name="iris",
                            test_csv=str(tmp_path / "rows.csv"), trainer="v3")


def test_controller_reports_a_malformed_record(tmp_path: Path):
    """A record without a predictor is reported to the serve step, not swallowed by the thread."""
    sim = SimCluster(tmp_path / "state")
    sim.apply_isvc({"metadata": {"name": "iris"}, "spec": {}})
    sim.reconcile()
    with pytest.raises(PipelineError, match="KeyError"):
        sim.wait_ready("iris", timeout=5)
