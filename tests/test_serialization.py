"""helpers.serialization: ONNX conversion and parity, pickle-risk demonstrations, measurements."""

from __future__ import annotations

import ast
import pickle
import re
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnx
import pytest

from helpers import paths, serialization, training
from helpers.errors import LabError, ModelStoreError


@pytest.fixture(scope="module")
def trained() -> training.TrainResult:
    """One trained model shared by the read-only tests."""
    return training.train(seed=42)


@pytest.fixture(scope="module")
def onnx_model(trained) -> onnx.ModelProto:
    """Its ONNX conversion."""
    return serialization.to_onnx(trained.model)


# ----------------------------------------------------------------------- ONNX ---

def test_to_onnx_graph_shape(onnx_model):
    """float32 [None, 4] input named `input`; outputs label/probabilities; pinned opset."""
    summary = serialization.graph_summary(onnx_model)
    assert summary["inputs"] == [{"name": "input", "type": "FLOAT", "shape": [None, 4]}]
    assert summary["outputs"] == [{"name": "label", "type": "INT64", "shape": [None]},
                                  {"name": "probabilities", "type": "FLOAT", "shape": [None, 3]}]
    assert summary["operators"] == {"ai.onnx.ml.TreeEnsembleClassifier": 1}
    assert summary["trees"] == 30 and summary["tree_nodes"] > 30
    assert summary["opsets"] == {"ai.onnx.ml": 1}
    assert "OnnxMLTools" in summary["producer"]
    assert serialization.TARGET_OPSET == 15


def test_onnx_parity_with_xgboost_and_reference(trained, onnx_model):
    """onnxruntime, onnx's reference evaluator and XGBoost agree: labels equal, probs <= 1e-5."""
    X, _, _, _ = training.load_iris()
    ort_l, ort_p = serialization.predict_onnx(serialization.onnx_session(onnx_model), X)
    ref_l, ref_p = serialization.predict_reference(onnx_model, X)
    for labels, probs in ((ref_l, ref_p), (trained.model.predict(X), trained.model.predict_proba(X))):
        cmp = serialization.compare(ort_l, ort_p, labels, probs)
        assert cmp["rows"] == 150 and cmp["labels_equal"] is True
        assert cmp["max_abs_probability_diff"] <= 1e-5


def test_predict_onnx_casts_float64(onnx_model):
    """onnxruntime refuses float64; the helper casts so learners can pass any numeric array."""
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float64)
    labels, probs = serialization.predict_onnx(serialization.onnx_session(onnx_model), X)
    assert labels.tolist() == [0, 2] and probs.shape == (2, 3)


def test_to_onnx_clears_non_positional_feature_names(trained):
    """A model with column names converts (names cleared on a copy, original untouched)."""
    booster = trained.model.get_booster().copy()
    booster.feature_names = list(training.FEATURE_NAMES)
    converted = serialization.to_onnx(booster)
    assert booster.feature_names == list(training.FEATURE_NAMES)
    ref_l, _ = serialization.predict_reference(converted, trained.X_test)
    assert np.array_equal(ref_l, trained.model.predict(trained.X_test))


def test_to_onnx_refuses_bad_opset_and_non_models(trained):
    """Opset beyond the converter's reach, or not an XGBoost model: LabError saying why."""
    with pytest.raises(LabError, match="target_opset=99"):
        serialization.to_onnx(trained.model, target_opset=99)
    with pytest.raises(LabError, match="expected a fitted xgboost"):
        serialization.to_onnx("model.json")


def test_save_and_load_onnx_in_own_folder(onnx_model, trained, tmp_path):
    """<store>/iris-onnx/model.onnx alone in its folder; loads and predicts."""
    path = serialization.save_onnx(onnx_model, tmp_path)
    assert path == tmp_path / "iris-onnx" / "model.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
    labels, _ = serialization.predict_onnx(serialization.load_onnx(path.parent), trained.X_test)
    assert np.array_equal(labels, trained.model.predict(trained.X_test))


def test_load_onnx_bad_dirs(onnx_model, tmp_path):
    """Missing, empty, ambiguous, zero-byte and corrupt ONNX folders: ModelStoreError."""
    with pytest.raises(ModelStoreError, match="does not exist"):
        serialization.load_onnx(tmp_path / "missing")
    with pytest.raises(ModelStoreError, match="model.onnx"):
        serialization.load_onnx(tmp_path)
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.onnx", "b.onnx"):
        (two / name).write_bytes(onnx_model.SerializeToString())
    with pytest.raises(ModelStoreError, match="more than one"):
        serialization.load_onnx(two)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.onnx").write_bytes(b"")
    with pytest.raises(ModelStoreError, match="empty"):
        serialization.load_onnx(empty)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.onnx").write_bytes(b"garbage, not protobuf")
    with pytest.raises(ModelStoreError, match="not an ONNX model") as info:
        serialization.load_onnx(corrupt)
    assert str(corrupt / "model.onnx") in str(info.value)


# --------------------------------------------------------------- security demo ---

def test_crafted_pickle_runs_only_when_loaded(tmp_path):
    """Crafting and inspecting run nothing; loading writes the marker (proof of execution)."""
    marker = tmp_path / "marker.txt"
    data = serialization.craft_malicious_pickle(marker)
    assert "exec" in serialization.disassemble(data)
    ops = serialization.opcode_counts(data)
    assert ops["STACK_GLOBAL"] == 1 and ops["REDUCE"] == 1
    assert "exec(" in serialization.decompile(data)
    assert not marker.exists()
    loaded = serialization.unpickle_for_demonstration(data)
    assert loaded == {"model": "iris", "accuracy": 0.97, "notes": None}
    assert marker.read_text().startswith("written by a pickle payload in process")


def test_craft_refuses_missing_folder(tmp_path):
    """The marker must go into a folder the caller made (contained)."""
    with pytest.raises(LabError, match="does not exist"):
        serialization.craft_malicious_pickle(tmp_path / "no" / "marker.txt")


def test_fickling_verdicts(trained, tmp_path):
    """Crafted: OVERTLY_MALICIOUS; honest model: still not safe; plain data: LIKELY_SAFE."""
    crafted = serialization.scan_pickle(serialization.craft_malicious_pickle(tmp_path / "m"))
    assert crafted.severity == "OVERTLY_MALICIOUS" and not crafted.likely_safe
    assert crafted.imports == ["from builtins import exec"] and crafted.findings
    honest = serialization.scan_pickle(serialization.pickle_bytes(trained.model))
    assert not honest.likely_safe
    assert "from xgboost.sklearn import XGBClassifier" in honest.imports
    plain = serialization.scan_pickle(serialization.pickle_bytes({"w": [1.0, 2.0]}))
    assert plain.likely_safe and plain.severity == "LIKELY_SAFE" and plain.findings == []
    assert plain.as_dict()["severity"] == "LIKELY_SAFE"
    assert not (tmp_path / "m").exists(), "scanning must not execute the payload"


def test_unscannable_pickle_is_not_safe(trained):
    """A protocol-5 pickle fickling cannot parse is reported UNSCANNABLE, not safe."""
    scan = serialization.scan_pickle(serialization.pickle_bytes(trained.model, protocol=5))
    assert scan.severity == "UNSCANNABLE" and not scan.likely_safe and scan.findings


def test_data_formats_keep_planted_code_inert(trained, onnx_model, tmp_path):
    """The payload planted in XGBoost JSON and ONNX comes back as text; no marker appears."""
    marker = tmp_path / "should-not-exist.txt"
    code = serialization.payload_code(marker)
    report = serialization.data_only_contrast(trained.model, onnx_model, code, tmp_path / "c")
    assert set(report) == {"xgboost-json", "onnx"}
    for row in report.values():
        assert row["loaded"] is True and row["notes_read_back"] == code
        assert Path(row["file"]).is_file()
    assert not marker.exists()
    assert trained.model.get_booster().attr("notes") is None, "caller's model was modified"


# ---------------------------------------------------------- compatibility demo ---

def test_wrapper_pickle_breaks_when_module_moves_or_class_renamed(trained):
    """Same code loads; moved module -> ModuleNotFoundError; renamed class -> AttributeError."""
    try:
        v1 = serialization.define_wrapper_module("kflabs_test_v1")
        data = serialization.pickle_bytes(v1.IrisModel(trained.model, training.CLASS_NAMES))
        ok = serialization.try_unpickle(data)
        assert ok.ok and ok.value.predict_species(trained.X_test[:2]) == ["setosa", "setosa"]
        serialization.forget_module("kflabs_test_v1")
        serialization.define_wrapper_module("kflabs_test.models")
        moved = serialization.try_unpickle(data)
        assert not moved.ok and moved.error == "ModuleNotFoundError: No module named 'kflabs_test_v1'"
        serialization.define_wrapper_module("kflabs_test_v1", class_name="Renamed")
        renamed = serialization.try_unpickle(data)
        assert not renamed.ok and renamed.error.startswith("AttributeError") and "IrisModel" in renamed.error
    finally:
        for name in ("kflabs_test_v1", "kflabs_test.models"):
            serialization.forget_module(name)
    assert "kflabs_test_v1" not in sys.modules
    serialization.forget_module("kflabs_test_v1")  # safe to repeat


def test_try_unpickle_propagates_other_errors():
    """Only the two compatibility failures become outcomes; a truncated pickle still raises."""
    with pytest.raises(pickle.UnpicklingError):
        serialization.try_unpickle(b"\x80\x04\x95")


def test_define_wrapper_module_rejects_bad_names():
    """Module and class names must be identifiers."""
    with pytest.raises(LabError, match="identifiers"):
        serialization.define_wrapper_module("not a module")
    with pytest.raises(LabError, match="identifiers"):
        serialization.define_wrapper_module("ok_mod", class_name="1bad")
    assert "ok_mod" not in sys.modules


# ------------------------------------------------------------------ efficiency ---

def test_measure_formats_table(trained, onnx_model, tmp_path):
    """Four rows in order, real sizes of the written files, positive medians; table and plot."""
    X_many = serialization.sample_rows(trained.X_test, 50, seed=1)
    rows = serialization.measure_formats(trained.model, onnx_model, tmp_path, X_many, repeats=2)
    assert [r["format"] for r in rows] == list(serialization.TABLE_FORMATS)
    files = {"pickle": "model.pkl", "xgboost-json": "model.json", "xgboost-ubj": "model.ubj",
             "onnx": "model.onnx"}
    for row in rows:
        assert row["bytes"] == (tmp_path / files[row["format"]]).stat().st_size
        assert row["batch_rows"] == 50
        assert all(row[k] > 0 for k in ("load_ms", "predict_1_ms", "predict_batch_ms"))
    size = {r["format"]: r["bytes"] for r in rows}
    assert size["onnx"] < size["xgboost-json"] < size["pickle"] and size["xgboost-ubj"] < size["pickle"]
    table = serialization.format_table(rows)
    assert table.count("\n") == 5 and "50-row predict" in table
    fig = serialization.plot_formats(rows)
    try:
        assert len(fig.axes) == 4
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_measure_formats_rejects_zero_repeats(trained, onnx_model, tmp_path):
    """At least one timed repetition."""
    with pytest.raises(LabError, match="repeats=0"):
        serialization.measure_formats(trained.model, onnx_model, tmp_path,
                                      trained.X_test, repeats=0)


def test_sample_rows_is_seeded_float32():
    """Same seed, same rows; float32 as onnxruntime wants."""
    X, _, _, _ = training.load_iris()
    a = serialization.sample_rows(X, 100, seed=3)
    assert a.shape == (100, 4) and a.dtype == np.float32
    assert np.array_equal(a, serialization.sample_rows(X, 100, seed=3))
    assert not np.array_equal(a, serialization.sample_rows(X, 100, seed=4))


def test_bench_section_shape():
    """The bench section reports training+saving time and one table row per format."""
    figures = serialization.bench()
    assert figures["train_and_save_seconds"] > 0 and figures["train_command_cold_seconds"] > 0
    assert set(figures["serialization"]) == set(serialization.TABLE_FORMATS)
    assert all(row["bytes"] > 0 for row in figures["serialization"].values())


# -------------------------------------------------------- nothing else unpickles ---

def _unpickle_calls(path: Path) -> list[int]:
    """Lines in ``path`` calling pickle.load/loads/Unpickler (or fickling's loaders)."""
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id in {"pickle", "fickling", "cloudpickle",
                                                             "joblib", "dill"}
                    and node.func.attr in {"load", "loads", "Unpickler"}):
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "pickle" and any(
                a.name in {"load", "loads", "Unpickler"} for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_the_demonstration_unpickles():
    """In all of helpers/, the one unpickling call is inside unpickle_for_demonstration."""
    found = {p: _unpickle_calls(p) for p in sorted((paths.ROOT / "helpers").rglob("*.py"))}
    found = {p: lines for p, lines in found.items() if lines}
    serialization_py = paths.ROOT / "helpers" / "serialization.py"
    assert list(found) == [serialization_py], found
    source = serialization_py.read_text().splitlines()
    (line,) = found[serialization_py]
    enclosing = [ln for ln in source[:line] if re.match(r"^def \w+", ln)][-1]
    assert enclosing.startswith("def unpickle_for_demonstration(")


def test_model_store_loaders_never_accept_pickles(tmp_path):
    """Neither loader considers a .pkl file a model."""
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ModelStoreError):
        training.load_model(tmp_path)
    with pytest.raises(ModelStoreError):
        serialization.load_onnx(tmp_path)
