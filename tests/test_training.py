"""helpers.training and `python -m helpers.train`: data, seeded training, the model store."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xgboost as xgb

from helpers import paths, training
from helpers.errors import LabError, ModelStoreError
from helpers.train import main as train_main


@pytest.fixture(scope="module")
def trained() -> training.TrainResult:
    """One trained model shared by the tests that only read it."""
    return training.train(seed=42)


# ------------------------------------------------------------------------ data ---

def test_iris_csv_is_fishers_150_rows():
    """The shipped CSV: 150 rows, 4 float32 features, 50 flowers of each species."""
    X, y, features, classes = training.load_iris()
    assert X.shape == (150, 4) and X.dtype == np.float32
    assert y.shape == (150,) and np.issubdtype(y.dtype, np.integer)
    assert np.bincount(y).tolist() == [50, 50, 50]
    assert features == list(training.FEATURE_NAMES) and classes == ["setosa", "versicolor", "virginica"]
    # Fisher's values (the two rows where UCI's original iris.data differs; see data/README.md)
    assert X[34].tolist() == pytest.approx([4.9, 3.1, 1.5, 0.2])
    assert X[37].tolist() == pytest.approx([4.9, 3.6, 1.4, 0.1])


def test_data_readme_names_source_licence_and_digest():
    """data/README.md names the source and licence, and its digest matches the file."""
    readme = (paths.data_dir() / "README.md").read_text()
    assert "Fisher" in readme and "1936" in readme and "UCI Machine Learning Repository" in readme
    assert "CC BY 4.0" in readme
    digest = hashlib.sha256((paths.data_dir() / "iris.csv").read_bytes()).hexdigest()
    assert digest in readme


def test_load_iris_rejects_missing_file(tmp_path):
    """A missing CSV is a LabError naming the path."""
    with pytest.raises(LabError, match="not found"):
        training.load_iris(tmp_path / "nope.csv")


def test_load_iris_rejects_wrong_columns_and_species(tmp_path):
    """Wrong header or an unknown species: a LabError saying what was expected."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(LabError, match="expected"):
        training.load_iris(bad)
    odd = tmp_path / "odd.csv"
    odd.write_text(",".join([*training.FEATURE_NAMES, "species"]) + "\n1,2,3,4,rose\n")
    with pytest.raises(LabError, match="rose"):
        training.load_iris(odd)


# ---------------------------------------------------------------------- split ---

def test_split_is_stratified_seeded_and_disjoint():
    """Each class loses the same share; same seed -> same split; different seed -> different."""
    X, y, _, _ = training.load_iris()
    X_tr, X_te, y_tr, y_te = training.split(X, y, seed=1, test_fraction=0.3)
    assert np.bincount(y_te).tolist() == [15, 15, 15]
    assert len(y_tr) + len(y_te) == 150
    again = training.split(X, y, seed=1, test_fraction=0.3)
    assert np.array_equal(again[1], X_te)
    other = training.split(X, y, seed=2, test_fraction=0.3)
    assert not np.array_equal(other[1], X_te)
    rows_tr = {tuple(r) for r in np.column_stack([X_tr, y_tr]).tolist()}
    rows_te = [tuple(r) for r in np.column_stack([X_te, y_te]).tolist()]
    # Iris has a few duplicate rows, so compare counts rather than set disjointness alone.
    assert sum(r in rows_tr for r in rows_te) <= 3


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    """test_fraction outside (0, 1) is refused with a message."""
    X, y, _, _ = training.load_iris()
    with pytest.raises(LabError, match="between 0 and 1"):
        training.split(X, y, test_fraction=fraction)


# ---------------------------------------------------------------------- train ---

def test_train_gives_a_softprob_3_class_model(trained):
    """multi:softprob, 3 classes, probabilities sum to 1, positional feature names."""
    model = trained.model
    assert isinstance(model, xgb.XGBClassifier)
    assert model.get_params()["objective"] == "multi:softprob" and model.n_classes_ == 3
    probabilities = model.predict_proba(trained.X_test)
    assert probabilities.shape == (45, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert model.get_booster().feature_names is None  # numpy input -> f0..f3 for ONNX/KServe
    assert model.get_booster().num_boosted_rounds() == training.DEFAULT_PARAMS["n_estimators"]


def test_train_evaluation_is_consistent(trained):
    """accuracy = trace/total of the confusion matrix, which counts every test row."""
    confusion = trained.confusion
    assert confusion.shape == (3, 3) and confusion.sum() == len(trained.y_test) == 45
    assert trained.accuracy == pytest.approx(np.trace(confusion) / confusion.sum())
    assert trained.accuracy == pytest.approx(np.mean(trained.model.predict(trained.X_test) == trained.y_test))
    assert trained.accuracy >= 0.8
    summary = trained.summary()
    assert summary["seed"] == 42 and summary["n_test"] == 45 and summary["confusion"] == confusion.tolist()


def test_train_is_deterministic_and_seed_sensitive(trained):
    """Same seed -> identical probabilities; another seed -> another split."""
    again = training.train(seed=42)
    assert np.array_equal(again.model.predict_proba(trained.X_test),
                          trained.model.predict_proba(trained.X_test))
    assert np.array_equal(again.confusion, trained.confusion)
    other = training.train(seed=3)
    assert not np.array_equal(other.X_test, trained.X_test)


def test_train_accepts_parameter_overrides():
    """Overrides reach XGBoost (here: the number of rounds)."""
    result = training.train(seed=42, n_estimators=4)
    assert result.model.get_booster().num_boosted_rounds() == 4
    assert result.params["n_estimators"] == 4 and result.params["random_state"] == 42


def test_confusion_matrix_counts_pairs():
    """Rows are true classes, columns predictions."""
    matrix = training.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]))
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_plot_confusion_draws_every_count(trained):
    """The picture has one text label per cell, with the counts, and renders headless."""
    fig = training.plot_confusion(trained.confusion)
    try:
        ax = fig.axes[0]
        texts = sorted(int(t.get_text()) for t in ax.texts)
        assert texts == sorted(trained.confusion.ravel().tolist())
        assert [t.get_text() for t in ax.get_xticklabels()] == list(training.CLASS_NAMES)
        fig.canvas.draw()
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- model store ---

@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_save_and_load_round_trip(trained, tmp_path, fmt):
    """<store>/<name>/model.<fmt>, alone in its folder; the reloaded Booster agrees exactly."""
    path = training.save_model(trained.model, tmp_path, name="iris", fmt=fmt)
    assert path == tmp_path / "iris" / f"model.{fmt}"
    assert sorted(p.name for p in path.parent.iterdir()) == [f"model.{fmt}"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    booster = training.load_model(path.parent)
    assert isinstance(booster, xgb.Booster)
    labels, probabilities = training.predict(booster, trained.X_test)
    assert np.array_equal(labels, trained.model.predict(trained.X_test))
    assert np.abs(probabilities - trained.model.predict_proba(trained.X_test)).max() <= 1e-6


def test_save_formats_really_differ(trained, tmp_path):
    """JSON is text; UBJ is binary (XGBoost picks the format from the extension)."""
    json_path = training.save_model(trained.model, tmp_path / "a", fmt="json")
    ubj_path = training.save_model(trained.model, tmp_path / "b", fmt="ubj")
    assert json_path.read_bytes()[:1] == b"{" and b'"learner"' in json_path.read_bytes()
    assert b'"learner"' not in ubj_path.read_bytes()


def test_resaving_in_other_format_keeps_one_file(trained, tmp_path):
    """Saving UBJ over a JSON model replaces it: the folder never becomes ambiguous."""
    training.save_model(trained.model, tmp_path, fmt="json")
    path = training.save_model(trained.model, tmp_path, fmt="ubj")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.ubj"]
    training.load_model(path.parent)


def test_save_accepts_a_booster_and_defaults_to_model_store(trained, tmp_path, monkeypatch):
    """A Booster saves too; without store_dir the model goes to paths.model_store()."""
    monkeypatch.setenv("KFLABS_ROOT", str(tmp_path))
    path = training.save_model(trained.model.get_booster(), name="iris-test")
    assert path == tmp_path / "build" / "model-store" / "iris-test" / "model.json"
    assert path.is_file()


def test_save_relative_store_resolves_against_repo_root(trained, tmp_path, monkeypatch):
    """Relative store paths resolve against the repository root, not the working directory."""
    monkeypatch.setenv("KFLABS_ROOT", str(tmp_path))
    monkeypatch.chdir("/")
    path = training.save_model(trained.model, "stores/s1")
    assert path == tmp_path / "stores" / "s1" / "iris" / "model.json"


def test_save_rejects_unknown_format_and_file_in_the_way(trained, tmp_path):
    """Bad format or a file where the model folder should be: ModelStoreError with the fix."""
    with pytest.raises(ModelStoreError, match="unknown model format 'pkl'"):
        training.save_model(trained.model, tmp_path, fmt="pkl")
    (tmp_path / "iris").write_text("not a folder")
    with pytest.raises(ModelStoreError, match="is a file"):
        training.save_model(trained.model, tmp_path)


def test_load_missing_dir(tmp_path):
    """Missing folder: the error names it and says how to make a model."""
    missing = tmp_path / "nope"
    with pytest.raises(ModelStoreError, match="does not exist") as info:
        training.load_model(missing)
    assert str(missing) in str(info.value) and "helpers.train" in str(info.value)


def test_load_empty_dir(tmp_path):
    """Folder without a model file: names the folder and the files it expected."""
    (tmp_path / "README.txt").write_text("hello")
    with pytest.raises(ModelStoreError, match="no model file") as info:
        training.load_model(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "model.json" in message and "README.txt" in message


def test_load_ambiguous_dir(trained, tmp_path):
    """Two model files: refused like KServe does, naming both."""
    path = training.save_model(trained.model, tmp_path, fmt="json")
    trained.model.get_booster().save_model(path.parent / "other.ubj")
    with pytest.raises(ModelStoreError, match="more than one model file") as info:
        training.load_model(path.parent)
    assert "model.json" in str(info.value) and "other.ubj" in str(info.value)


def test_load_empty_file(tmp_path):
    """A zero-byte model file is reported as empty."""
    (tmp_path / "model.json").write_bytes(b"")
    with pytest.raises(ModelStoreError, match="empty"):
        training.load_model(tmp_path)


@pytest.mark.parametrize(("name", "content"), [("model.json", b"{not json"),
                                                ("model.ubj", b"\x00\x01garbage"),
                                                ("model.json", b'{"learner": 1}')])
def test_load_corrupt_file(tmp_path, name, content):
    """Unreadable model: ModelStoreError naming the file, wrapping XGBoost's error."""
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelStoreError, match="not a model XGBoost") as info:
        training.load_model(tmp_path)
    assert str(tmp_path / name) in str(info.value)
    assert isinstance(info.value.__cause__, xgb.core.XGBoostError)


def test_load_ignores_a_pickle(trained, tmp_path):
    """A .pkl is never a candidate: the loader never unpickles."""
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelStoreError, match="no model file"):
        training.load_model(tmp_path)


def test_describe_json_model_reads_plain_json(trained, tmp_path):
    """The JSON model is readable with the standard library alone."""
    path = training.save_model(trained.model, tmp_path)
    info = training.describe_json_model(path)
    assert info == {"xgboost_version": xgb.__version__, "objective": "multi:softprob",
                    "num_class": 3, "num_feature": 4, "num_trees": 30}


# ------------------------------------------------------------------------ CLI ---

def test_cli_main_trains_and_saves(tmp_path, capsys):
    """main(): saves DIR/iris/model.ubj and prints where it went."""
    assert train_main(["--output-dir", str(tmp_path), "--seed", "7", "--format", "ubj"]) == 0
    out = capsys.readouterr().out
    target = tmp_path / "iris" / "model.ubj"
    assert f"saved model to {target}" in out and "seed 7" in out
    expected = training.train(seed=7)
    labels, _ = training.predict(training.load_model(target.parent), expected.X_test)
    assert np.array_equal(labels, expected.model.predict(expected.X_test))


def test_cli_name_rounds_and_test_fraction(tmp_path, capsys):
    """--name picks the folder, --n-estimators the rounds, --test-fraction the split."""
    train_main(["--output-dir", str(tmp_path), "--name", "flowers", "--n-estimators", "3",
                "--test-fraction", "0.2"])
    booster = training.load_model(tmp_path / "flowers")
    assert booster.num_boosted_rounds() == 3
    out = capsys.readouterr().out
    assert "flowers/model.json" in out and "on 30 held-out rows" in out
    expected = training.train(seed=42, n_estimators=3, test_fraction=0.2)
    assert np.array_equal(training.predict(booster, expected.X_test)[1],
                          training.predict(expected.model.get_booster(), expected.X_test)[1])


def test_cli_onnx_goes_to_its_own_folder(tmp_path, capsys):
    """--onnx adds NAME-onnx/model.onnx beside NAME/model.json, one model per folder."""
    from helpers import serialization

    train_main(["--output-dir", str(tmp_path), "--onnx"])
    assert sorted(p.name for p in (tmp_path / "iris").iterdir()) == ["model.json"]
    assert sorted(p.name for p in (tmp_path / "iris-onnx").iterdir()) == ["model.onnx"]
    assert f"saved ONNX model to {tmp_path / 'iris-onnx' / 'model.onnx'}" in capsys.readouterr().out
    expected = training.train(seed=42)
    labels, _ = serialization.predict_onnx(serialization.load_onnx(tmp_path / "iris-onnx"),
                                           expected.X_test)
    assert np.array_equal(labels, expected.model.predict(expected.X_test))


@pytest.mark.parametrize("argv", [["--seed", "1"],
                                  ["--output-dir", "x", "--format", "pkl"],
                                  ["--output-dir", "x", "--n-estimators", "0"],
                                  ["--output-dir", "x", "--test-fraction", "1.5"]])
def test_cli_rejects_bad_arguments(argv, capsys):
    """Missing --output-dir, unknown format, zero rounds, bad fraction: exit 2 with a message."""
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_store_error_exits_2_with_message(tmp_path, capsys):
    """A ModelStoreError (file in the way) exits 2 with the message, no traceback."""
    (tmp_path / "iris").write_text("in the way")
    with pytest.raises(SystemExit) as info:
        train_main(["--output-dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


def test_cli_as_module_resolves_relative_to_cwd(tmp_path):
    """`python -m helpers.train` in a subprocess: relative --output-dir is the working dir's."""
    proc = subprocess.run([sys.executable, "-m", "helpers.train", "--output-dir", "store"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "store" / "iris" / "model.json"
    assert target.is_file() and f"saved model to {target}" in proc.stdout


def test_cli_unusable_output_dir_exits_2_with_message(tmp_path, capsys):
    """An --output-dir that cannot be created is named, with the reason, and no traceback."""
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as info:
        train_main(["--output-dir", str(tmp_path / "file" / "store")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot use" in err and str(tmp_path / "file" / "store") in err and "Traceback" not in err


def test_cli_checks_its_arguments_before_importing_xgboost():
    """`python -m helpers.train --format pickle` is refused before the slow imports run."""
    code = ("import sys\nfrom helpers import train\n"
            "try:\n    train.main(['--output-dir', 'x', '--format', 'pickle'])\n"
            "except SystemExit as exc:\n"
            "    print(exc.code, 'xgboost' in sys.modules, 'numpy' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["2", "False", "False"]
    assert "invalid choice: 'pickle'" in proc.stderr


def test_missing_model_dir_suggests_a_command_that_writes_it(tmp_path):
    """The suggested `python -m helpers.train` writes exactly the folder that was missing."""
    from helpers import train

    missing = tmp_path / "store" / "flowers"
    with pytest.raises(ModelStoreError) as info:
        training.load_model(missing)
    suggested = re.search(r"`python -m helpers\.train (.*?)`", str(info.value)).group(1).split()
    args = train.build_parser().parse_args(suggested)
    assert Path(args.output_dir) / args.name == missing
