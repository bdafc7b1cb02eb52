"""Train the Iris XGBoost classifier and save it into the model store.

The same code runs in lab 03, in the end-to-end pipeline and in the cluster's training job
(``python -m helpers.train``), so a model trained anywhere in the kit is the same model.

The model store is laid out as KServe expects: one folder per model, holding exactly one
model file (``<store>/iris/model.json`` or ``model.ubj``). On the embedded backend the store
is ``build/model-store`` (:func:`helpers.paths.model_store`), standing in for the PVC that
KServe mounts at ``/mnt/models`` on a cluster.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

from helpers import distributed, paths
from helpers.distributed import Rendezvous
from helpers.errors import LabError, ModelStoreError
from helpers.model_store import SAVE_FORMATS, XGBOOST_EXTENSIONS, find_model_file

if TYPE_CHECKING:  # matplotlib is imported only when a picture is drawn (the CLI never does)
    from matplotlib.figure import Figure

#: Column names of ``data/iris.csv``, in order (the model itself sees them as f0..f3).
FEATURE_NAMES: tuple[str, ...] = (
    "sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm",
)
#: Species, in class-index order (0, 1, 2).
CLASS_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
#: Formats XGBoost's own ``save_model()`` writes (:data:`helpers.model_store.SAVE_FORMATS`).
FORMATS: tuple[str, ...] = SAVE_FORMATS
#: Hyper-parameters of the course's XGBoostJob (objective multi:softprob, 3 classes,
#: 10 trees per class, learning rate 0.1). ``max_depth`` 3 keeps the trees small; n_jobs 1
#: because Iris is tiny (threads cost more than they save) and the lab machines are shared.
DEFAULT_PARAMS: dict[str, object] = {
    "objective": "multi:softprob",
    "num_class": 3,
    "n_estimators": 10,
    "learning_rate": 0.1,
    "max_depth": 3,
    "tree_method": "hist",
    "n_jobs": 1,
}


def iris_csv() -> Path:
    """Path of the Iris data shipped with the kit (``data/iris.csv``)."""
    return paths.data_dir() / "iris.csv"


def load_iris(path: str | os.PathLike[str] | None = None,
              ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read Fisher's Iris data.

    Args:
        path: CSV with the four measurement columns and ``species``; default
            ``data/iris.csv``.

    Returns:
        ``(X, y, feature_names, class_names)``: ``X`` float32 of shape [150, 4], ``y`` int64
        class indices of shape [150], and the names of the columns and classes.

    Raises:
        LabError: the file is missing or does not have the expected columns and species.
    """
    csv_path = Path(path) if path is not None else iris_csv()
    if not csv_path.is_file():
        raise LabError(f"Iris data not found at {csv_path}: expected the CSV shipped as "
                       "data/iris.csv (restore it with `git checkout data/iris.csv`)")
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [*FEATURE_NAMES, "species"]
    header = list(rows[0]) if rows else []
    if header != expected:
        raise LabError(f"{csv_path} has columns {header}: expected {expected}")
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    unknown = sorted({r["species"] for r in rows} - set(index))
    if unknown:
        raise LabError(f"{csv_path} has unknown species {unknown}: expected {list(CLASS_NAMES)}")
    X = np.array([[float(r[c]) for c in FEATURE_NAMES] for r in rows], dtype=np.float32)
    y = np.array([index[r["species"]] for r in rows], dtype=np.int64)
    return X, y, list(FEATURE_NAMES), list(CLASS_NAMES)


def split(X: np.ndarray, y: np.ndarray, seed: int = 42, test_fraction: float = 0.3,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into train and test sets, stratified by class and seeded.

    Args:
        X: features, one row per flower.
        y: class indices.
        seed: the same seed gives the same split on every run.
        test_fraction: share of each class held out for testing.

    Returns:
        ``(X_train, X_test, y_train, y_test)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise LabError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    # Stratified by hand (not sklearn's splitter) so the split depends only on numpy's
    # seeded generator: each class contributes the same share to the test set.
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        n_test = round(len(members) * test_fraction)
        test_idx.extend(rng.permutation(members)[:n_test].tolist())
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[test_idx] = True
    return X[~test_mask], X[test_mask], y[~test_mask], y[test_mask]


def booster_params(params: dict[str, object]) -> dict[str, object]:
    """``XGBClassifier`` keyword arguments as ``xgboost.train()`` parameters.

    Distributed workers train with ``xgboost.train()`` (no scikit-learn import, which costs
    seconds per worker); the same parameters give the same trees as the estimator.
    """
    renamed = {"n_jobs": "nthread", "random_state": "seed", "learning_rate": "eta"}
    return {renamed.get(k, k): v for k, v in params.items() if k != "n_estimators"}


@dataclass
class TrainResult:
    """What :func:`train` returns: the fitted model, the held-out data and the evaluation.

    ``model`` is an ``XGBClassifier``, or a ``Booster`` when it was trained distributed.
    """

    model: xgb.XGBClassifier | xgb.Booster
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    accuracy: float
    confusion: np.ndarray
    seed: int
    params: dict[str, object]
    seconds: float
    feature_names: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))

    def summary(self) -> dict[str, object]:
        """The figures a lab records in its results JSON."""
        return {"seed": self.seed, "accuracy": self.accuracy,
                "confusion": self.confusion.tolist(), "n_train": len(self.y_train),
                "n_test": len(self.y_test), "n_estimators": self.params["n_estimators"],
                "train_seconds": round(self.seconds, 4)}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Count ``[true class, predicted class]`` pairs into an ``n_classes`` square matrix."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def train(seed: int = 42, test_fraction: float = 0.3, data: str | os.PathLike[str] | None = None,
          rendezvous: Rendezvous | None = None, join_timeout: float | None = None,
          **params: object) -> TrainResult:
    """Train the Iris classifier on a seeded split and evaluate it on the held-out rows.

    The model is fitted on plain numpy arrays, so its features are named ``f0``..``f3``: the
    ONNX converter and KServe's V2 protocol both expect positional features.

    With a ``rendezvous`` of more than one worker, this process fits only its shard of the
    training split (:func:`helpers.distributed.shard`) as one member of XGBoost's
    collective (:func:`helpers.distributed.collective_group`): every rank ends with the same
    model, trained on all of the split together. ``X_train``/``y_train`` are then the shard
    and ``model`` is the ``Booster`` (``xgboost.train()``, see :func:`booster_params`).

    Args:
        seed: seeds the split and XGBoost; the same seed gives the same model and numbers.
        test_fraction: share of each class held out for evaluation.
        data: Iris CSV; default ``data/iris.csv``.
        rendezvous: where this worker meets its group (:func:`helpers.distributed.from_env`);
            ``None`` or a world of one trains alone.
        join_timeout: seconds each wait of the rendezvous may take; default
            :data:`helpers.distributed.DEFAULT_JOIN_TIMEOUT`.
        **params: overrides of :data:`DEFAULT_PARAMS` (e.g. ``n_estimators=50``).

    Returns:
        A :class:`TrainResult` with the model, the test set, accuracy and confusion matrix.

    Raises:
        helpers.distributed.RendezvousError: the group did not form within the bound.
    """
    X, y, _, _ = load_iris(data)
    X_train, X_test, y_train, y_test = split(X, y, seed=seed, test_fraction=test_fraction)
    merged = {**DEFAULT_PARAMS, **params, "random_state": seed}
    start = time.perf_counter()
    if rendezvous is None or rendezvous.world_size == 1:
        model: xgb.XGBClassifier | xgb.Booster = xgb.XGBClassifier(**merged)
        model.fit(X_train, y_train)
        y_pred = model.predict(X_test)
    else:
        rows = distributed.shard(len(y_train), rendezvous.rank, rendezvous.world_size)
        X_train, y_train = X_train[rows], y_train[rows]
        timeout = distributed.DEFAULT_JOIN_TIMEOUT if join_timeout is None else join_timeout
        with distributed.collective_group(rendezvous, timeout):
            model = xgb.train(booster_params(merged), xgb.DMatrix(X_train, y_train, nthread=1),
                              num_boost_round=int(merged["n_estimators"]))
        y_pred, _ = predict(model, X_test)
    seconds = time.perf_counter() - start
    return TrainResult(
        model=model, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
        accuracy=float(np.mean(y_pred == y_test)),
        confusion=confusion_matrix(y_test, y_pred, len(CLASS_NAMES)),
        seed=seed, params=merged, seconds=seconds,
    )


def plot_confusion(confusion: np.ndarray, class_names: list[str] | tuple[str, ...] = CLASS_NAMES,
                   title: str = "Iris test set") -> Figure:
    """Draw a confusion matrix as a labelled heat map.

    Args:
        confusion: square matrix of counts, rows = true class, columns = predicted class.
        class_names: labels of the rows and columns.
        title: figure title.

    Returns:
        The matplotlib Figure. It is made with pyplot, so Jupyter's inline backend shows it
        at the end of the cell (assign the result to avoid a second copy); it renders
        headless too. Close it with ``plt.close(fig)`` outside notebooks.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), layout="constrained")
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, label="flowers")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted species")
    ax.set_ylabel("true species")
    ax.set_title(title)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > threshold else "black")
    return fig


def model_dir(name: str = "iris", store_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of model ``name`` in the store (default store: ``build/model-store``)."""
    store = paths.resolve(store_dir) if store_dir is not None else paths.model_store()
    return store / name


def save_model(model: xgb.XGBClassifier | xgb.Booster,
               store_dir: str | os.PathLike[str] | None = None,
               name: str = "iris", fmt: str = "json") -> Path:
    """Save ``model`` with XGBoost's own ``save_model()`` as ``<store>/<name>/model.<fmt>``.

    The directory keeps exactly one model file, as KServe's xgbserver requires: saving in
    one format replaces a model previously saved there in the other. The file is written
    to a temporary folder first and then renamed, so a reader never sees half a model.

    Args:
        model: a fitted ``XGBClassifier`` or ``Booster``.
        store_dir: the model store (a local folder or the mounted PVC); relative paths
            resolve against the repository root. Default :func:`helpers.paths.model_store`.
        name: the model's folder name, also the name KServe serves it under.
        fmt: ``"json"`` (readable, diff-able) or ``"ubj"`` (Universal Binary JSON: smaller
            and faster to load). No pickle: the store holds data only.

    Returns:
        The path of the saved model file.

    Raises:
        ModelStoreError: unknown format, or the target exists and is not a folder.
    """
    if fmt not in FORMATS:
        raise ModelStoreError(f"unknown model format {fmt!r}: use one of {list(FORMATS)} "
                              "(XGBoost picks the format from the file extension)")
    target_dir = model_dir(name, store_dir)
    if target_dir.exists() and not target_dir.is_dir():
        raise ModelStoreError(f"{target_dir} is a file: the model store needs a folder there "
                              "(one folder per model); move the file away")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"model.{fmt}"
    with tempfile.TemporaryDirectory(dir=target_dir.parent, prefix=f".{name}-") as tmp:
        staged = Path(tmp) / target.name
        # Save the Booster, not the estimator: XGBClassifier.save_model() in xgboost 2.1
        # asks scikit-learn >= 1.7 for an attribute it no longer has, and the Booster is
        # exactly what KServe's xgbserver loads anyway.
        booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
        booster.save_model(staged)
        os.replace(staged, target)
    for other in target_dir.iterdir():
        # A leftover model.ubj beside a new model.json would make the directory ambiguous.
        if other != target and other.is_file() and other.suffix in XGBOOST_EXTENSIONS:
            other.unlink()
    return target


def load_model(model_dir: str | os.PathLike[str], nthread: int = 1) -> xgb.Booster:
    """Load the one XGBoost model file in ``model_dir`` as a ``Booster``, as KServe does.

    Args:
        model_dir: a model folder of the store (e.g. ``build/model-store/iris``).
        nthread: threads for prediction. KServe passes this explicitly too; 1 suits Iris
            (a thread pool costs more than it saves on a few rows, and XGBoost's default of
            every core spins against other work on a shared machine).

    Returns:
        The loaded ``xgboost.Booster``.

    Raises:
        ModelStoreError: the folder is missing, empty or holds several model files, or the
            file is not a model XGBoost can read (the message names the file).
    """
    path = find_model_file(paths.resolve(model_dir), XGBOOST_EXTENSIONS)
    try:
        return xgb.Booster(params={"nthread": nthread}, model_file=str(path))
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelStoreError(
            f"{path} is not a model XGBoost {xgb.__version__} can read ({first}): expected "
            f"a file written by save_model() as {path.suffix[1:].upper()}; re-save the model"
        ) from exc


def predict(booster: xgb.Booster, X: np.ndarray, nthread: int = 1,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Predict with a loaded ``Booster`` the way KServe's xgbserver does (via a DMatrix).

    Args:
        booster: a model from :func:`load_model`.
        X: rows of the four measurements.
        nthread: threads used to build the DMatrix (see :func:`load_model`).

    Returns:
        ``(labels, probabilities)``: class indices [n] and probabilities [n, 3].
    """
    probabilities = booster.predict(xgb.DMatrix(np.asarray(X, dtype=np.float32), nthread=nthread))
    return probabilities.argmax(axis=1), probabilities


def loaded_base_score(path: str | os.PathLike[str]) -> float:
    """The ``base_score`` the installed XGBoost holds after loading the model file ``path``.

    Compare it with the file's own ``learner_model_param.base_score`` to see what a loader
    kept: XGBoost 2.1 reads the per-class form 3.1+ writes (``"[a,b,c]"``) as its default 0.5.
    """
    booster = xgb.Booster(model_file=str(path))
    return float(json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"])


def describe_json_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an XGBoost JSON model with the standard ``json`` module alone (no XGBoost).

    XGBoost's JSON follows a published schema, so any language with a JSON parser can read
    it; this shows the file is plain data.
    """
    doc = json.loads(Path(path).read_text())
    learner = doc["learner"]
    model = learner["gradient_booster"]["model"]
    return {"xgboost_version": ".".join(str(v) for v in doc["version"]),
            "objective": learner["objective"]["name"],
            "num_class": int(learner["learner_model_param"]["num_class"]),
            "num_feature": int(learner["learner_model_param"]["num_feature"]),
            "num_trees": int(model["gbtree_model_param"]["num_trees"])}
