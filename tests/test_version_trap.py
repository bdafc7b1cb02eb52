"""The version trap: a model saved by a newer XGBoost than KServe's xgbserver reads with.

Unit tests of ``helpers.model_store.saved_by`` / ``check_runtime_can_read`` and of the
refusal in ``deploy.publish_model``; then the measurement behind lab 04's claim: XGBoost
3.x (Trainer v2's upstream XGBoost runtime image ships 3.0.2) trains and saves in a
throw-away venv, and the kit's pinned XGBoost (2.1, as in KServe's xgbserver) loads the
files. Marked ``registry``: it skips, saying why, when the package registry is unreachable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from helpers import backend, model_store, paths, training, versions
from helpers.errors import ModelStoreError
from helpers.serving import deploy

INSTALLED = tuple(int(p) for p in xgb.__version__.split(".")[:3])


@pytest.fixture(scope="module")
def kit_models(tmp_path_factory) -> dict[str, Path]:
    """The kit's Iris model saved by the installed (pinned) XGBoost as JSON and as UBJ."""
    root = tmp_path_factory.mktemp("kit-models")
    model = training.train(seed=1, n_estimators=2).model
    out = {}
    for fmt in training.FORMATS:
        (root / fmt).mkdir()
        out[fmt] = root / fmt / f"model.{fmt}"
        model.get_booster().save_model(out[fmt])
    return out


def _relabel(path: Path, version: tuple[int, int, int], dest: Path) -> Path:
    """A copy of ``path`` whose version field says ``version`` (nothing else changes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        doc["version"] = list(version)
        dest.write_text(json.dumps(doc))
    else:
        data = path.read_bytes()
        old = b"".join(b"i" + bytes([v]) for v in INSTALLED)
        new = b"".join(b"i" + bytes([v]) for v in version)
        at = data.rfind(b"\x07version[")
        assert at >= 0 and data.count(old, at) == 1
        dest.write_bytes(data[:at] + data[at:].replace(old, new))
    return dest


def test_kserve_xgboost_pin_is_the_kits_locked_xgboost():
    """The pin the refusal uses is the XGBoost the kit installs (pyproject range and lock)."""
    pin = versions.pin("kserve_xgboost")
    lock = (paths.ROOT / "requirements.lock").read_text()
    assert re.search(rf"^xgboost-cpu=={re.escape(pin)}$", lock, re.M), pin
    assert xgb.__version__ == pin
    pyproject = (paths.ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'"xgboost-cpu>=([\d.]+),<([\d.]+)"', pyproject).groups()
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(pin) < as_tuple(high)


@pytest.mark.parametrize("fmt", training.FORMATS)
def test_saved_by_reads_the_version_field(kit_models, fmt):
    assert model_store.saved_by(kit_models[fmt]) == INSTALLED
    assert model_store.check_runtime_can_read(kit_models[fmt]) == INSTALLED


@pytest.mark.parametrize("fmt", training.FORMATS)
def test_a_newer_model_is_refused_naming_both_versions(kit_models, tmp_path, fmt):
    newer = _relabel(kit_models[fmt], (3, 1, 3), tmp_path / "newer" / f"model.{fmt}")
    assert model_store.saved_by(newer) == (3, 1, 3)
    with pytest.raises(ModelStoreError) as info:
        model_store.check_runtime_can_read(newer)
    message = str(info.value)
    assert "3.1.3" in message and versions.pin("kserve_xgboost") in message
    assert "Re-train" in message
    # Same minor, later patch, and older versions pass: the format changes with minors.
    same_minor = (INSTALLED[0], INSTALLED[1], INSTALLED[2] + 5)
    assert model_store.check_runtime_can_read(
        _relabel(kit_models[fmt], same_minor, tmp_path / "patch" / f"model.{fmt}")) == same_minor
    assert model_store.check_runtime_can_read(
        _relabel(kit_models[fmt], (1, 7, 6), tmp_path / "old" / f"model.{fmt}")) == (1, 7, 6)
    assert model_store.check_runtime_can_read(newer, runtime_xgboost="3.1") == (3, 1, 3)


def test_publish_refuses_before_anything_moves(kit_models, tmp_path):
    newer = _relabel(kit_models["json"], (3, 0, 2), tmp_path / "iris" / "model.json")
    sim = backend.resolve("sim", announce=False)
    with pytest.raises(ModelStoreError, match=r"XGBoost 3\.0\.2.*XGBoost 2\.1"):
        deploy.publish_model(newer.parent, sim)
    assert deploy.publish_model(kit_models["json"].parent, sim).startswith("pvc://")


def test_loaded_base_score_shows_what_the_loader_kept(kit_models, tmp_path):
    doc = json.loads(kit_models["json"].read_text())
    written = float(doc["learner"]["learner_model_param"]["base_score"])
    assert training.loaded_base_score(kit_models["json"]) == pytest.approx(written)
    doc["learner"]["learner_model_param"]["base_score"] = "[2E-1,3E-1,5E-1]"  # 3.1+'s form
    per_class = tmp_path / "model.json"
    per_class.write_text(json.dumps(doc))
    assert training.loaded_base_score(per_class) == 0.5


@pytest.mark.parametrize("content, suffix, needle", [
    ("not json", ".json", "not an XGBoost JSON model"),
    ('{"learner": {}}', ".json", "no XGBoost version field"),
    ("{}", ".bst", "only XGBoost's JSON and UBJ"),
])
def test_saved_by_explains_unreadable_files(tmp_path, content, suffix, needle):
    path = tmp_path / f"model{suffix}"
    path.write_text(content)
    with pytest.raises(ModelStoreError, match=needle):
        model_store.saved_by(path)


# --------------------------------------------------------------------------- the measurement
TRAIN_WITH_XGBOOST_3 = """
import json, sys
import numpy as np, xgboost as xgb
params, csv, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
data = np.genfromtxt(csv, delimiter=",", skip_header=1, dtype=str)
X = data[:, :4].astype(np.float32)
y = np.unique(data[:, 4], return_inverse=True)[1]
rounds = params.pop("n_estimators")
# Iris as shipped (50 rows per class), and with 40 of the first class's rows left out.
keep = {"balanced": np.ones(len(y), bool), "imbalanced": (y != 0) | (np.arange(len(y)) % 5 == 0)}
for name, rows in keep.items():
    booster = xgb.train(params, xgb.DMatrix(X[rows], label=y[rows]), rounds)
    for fmt in ("json", "ubj"):
        booster.save_model(f"{out}/{name}.{fmt}")
    np.save(f"{out}/{name}.npy", booster.predict(xgb.DMatrix(X)))
print(xgb.__version__)
"""


def _xgboost3_venv(root: Path, requirement: str) -> Path:
    """A throw-away venv with ``requirement`` (uv's cache makes a repeat fast)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", str(venv)], check=True,
                   capture_output=True, text=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet",
                           "--python", str(python), requirement, "numpy"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"could not install {requirement} into a throw-away venv (package "
                    f"registry unreachable?): {proc.stderr.strip()[-300:]}")
    return python


@pytest.mark.registry
@pytest.mark.parametrize("requirement, same_predictions", [
    ("xgboost-cpu==3.0.2", True),          # Trainer v2's upstream xgboost-runtime image
    ("xgboost-cpu>=3.1,<4", False),        # the newest 3.x: base_score per class
])
def test_xgboost3_models_in_the_pinned_runtime(tmp_path, requirement, same_predictions):
    python = _xgboost3_venv(tmp_path, requirement)
    params = {k: v for k, v in training.DEFAULT_PARAMS.items() if k != "n_jobs"}
    out = tmp_path / "model"
    out.mkdir()
    trained = subprocess.run([str(python), "-c", TRAIN_WITH_XGBOOST_3, json.dumps(params),
                              str(training.iris_csv()), str(out)],
                             capture_output=True, text=True, check=True).stdout.strip()
    saved = tuple(int(p) for p in trained.split("."))
    assert saved[0] == 3
    X = training.load_iris()[0].astype(np.float32)
    for data, fmt in [(d, f) for d in ("balanced", "imbalanced") for f in training.FORMATS]:
        path = out / f"{data}.{fmt}"
        assert model_store.saved_by(path) == saved
        booster = xgb.Booster(model_file=str(path))  # loads without an error: no warning sign
        loaded_base = training.loaded_base_score(path)
        gap = float(np.abs(booster.predict(xgb.DMatrix(X)) - np.load(out / f"{data}.npy")).max())
        print(f"{trained} {data} {fmt}: loaded by {xgb.__version__}, base_score read as "
              f"{loaded_base}, largest probability gap {gap:.4f}")
        written = json.loads((out / f"{data}.json").read_text())["learner"][
            "learner_model_param"]["base_score"]
        if same_predictions:
            assert gap < 1e-5 and not written.startswith("[")
        else:
            assert written.startswith("[")      # one value per class ...
            assert float(loaded_base) == 0.5    # ... which 2.1 replaces with its default
            # Equal per-class values cancel in softmax (balanced classes); unequal ones do not.
            assert (gap < 1e-5) if data == "balanced" else (gap > 1e-2), (data, gap)
        with pytest.raises(ModelStoreError, match=re.escape(trained)):
            model_store.check_runtime_can_read(path)
