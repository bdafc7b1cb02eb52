"""Pickle vs XGBoost JSON/UBJ vs ONNX: convert, save, load, measure, and show pickle's risks.

Lab 04 uses this module to *demonstrate* the four problems the chapter lists for pickle:

- **Security**: :func:`craft_malicious_pickle` builds a pickle whose harmless payload writes
  a marker file when it is loaded; :func:`disassemble`, :func:`decompile` and
  :func:`scan_pickle` (the fickling scanner) inspect it without loading it;
  :func:`data_only_contrast` plants the same code in an XGBoost JSON and an ONNX file and
  shows that loading them runs nothing.
- **Compatibility**: :func:`define_wrapper_module` and :func:`forget_module` let a lab pickle
  an object of a class, then move or rename that class, in-process, and watch the load fail.
- **Efficiency**: :func:`measure_formats` times size, load and prediction per format.
- **Language support**: :func:`to_onnx`, then :func:`predict_onnx` (onnxruntime, C++) and
  :func:`predict_reference` (onnx's pure-Python reference evaluator), :func:`graph_summary`.

Only :func:`unpickle_for_demonstration` ever unpickles anything, and only the lab's
explicit, contained demonstrations (and ``make bench``'s load timing of a pickle this module
wrote itself) call it. Nothing else in ``helpers`` reads a pickle.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import pickletools
import re
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import xgboost as xgb
from onnx.reference import ReferenceEvaluator
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from helpers import paths, training
from helpers.errors import LabError, ModelStoreError
from helpers.model_store import ONNX_EXTENSIONS, find_model_file

if TYPE_CHECKING:  # matplotlib is imported only when a picture is drawn
    from matplotlib.figure import Figure

#: ONNX opset the converter targets. onnxmltools 1.16's XGBoost converter accepts at most
#: 15; pinning it keeps the file identical whichever onnx release is installed.
TARGET_OPSET = 15
#: Name of the ONNX graph's input (a float32 tensor [batch, 4]).
ONNX_INPUT = "input"
#: Names of the ONNX graph's outputs as onnxmltools writes them.
ONNX_OUTPUTS = ("label", "probabilities")
#: Formats compared in the efficiency table, in display order.
TABLE_FORMATS = ("pickle", "xgboost-json", "xgboost-ubj", "onnx")


# --------------------------------------------------------------------------- ONNX ---

def _booster(model: xgb.XGBModel | xgb.Booster) -> xgb.Booster:
    if isinstance(model, xgb.XGBModel):
        return model.get_booster()
    if isinstance(model, xgb.Booster):
        return model
    raise LabError(f"expected a fitted xgboost.XGBClassifier or Booster, got "
                   f"{type(model).__name__}: train one with helpers.training.train()")


def to_onnx(model: xgb.XGBModel | xgb.Booster, target_opset: int = TARGET_OPSET,
            ) -> onnx.ModelProto:
    """Convert an XGBoost classifier to ONNX with onnxmltools, handling its gotchas.

    - The converter only understands positional feature names ``f0``, ``f1``, ...: a model
      trained on a DataFrame carries column names, so a *copy* of its booster with the
      names cleared is converted (the caller's model is left untouched).
    - The graph input is declared float32 ``[None, n_features]`` (onnxruntime does not cast:
      feed it float32, see :func:`predict_onnx`).
    - The outputs are ``label`` (int64 [N]) and ``probabilities`` (float32 [N, classes]).

    Args:
        model: fitted ``XGBClassifier`` or ``Booster`` (objective ``multi:softprob``).
        target_opset: ONNX opset to target; default :data:`TARGET_OPSET` (pinned).

    Returns:
        The ONNX model (``onnx.ModelProto``), checked with ``onnx.checker``.

    Raises:
        LabError: not an XGBoost model, or the converter refused it (message says why).
    """
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = _booster(model)
    names = booster.feature_names
    if names is not None and names != [f"f{i}" for i in range(len(names))]:
        booster = booster.copy()
        booster.feature_names = None
    initial_types = [(ONNX_INPUT, FloatTensorType([None, booster.num_features()]))]
    try:
        onnx_model = convert_xgboost(booster, initial_types=initial_types,
                                     target_opset=target_opset, name="iris-xgboost")
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise LabError(f"onnxmltools could not convert the model at target_opset="
                       f"{target_opset}: {exc}") from exc
    onnx.checker.check_model(onnx_model)
    return onnx_model


def save_onnx(onnx_model: onnx.ModelProto, store_dir: str | os.PathLike[str] | None = None,
              name: str = "iris-onnx") -> Path:
    """Write an ONNX model to ``<store>/<name>/model.onnx`` (its own model folder).

    Args:
        onnx_model: the model from :func:`to_onnx`.
        store_dir: model store; default :func:`helpers.paths.model_store`.
        name: folder name; kept apart from the XGBoost folder so each folder holds one model.

    Returns:
        The path of the written file.
    """
    target_dir = training.model_dir(name, store_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "model.onnx"
    staged = target_dir / ".model.onnx.partial"
    staged.write_bytes(onnx_model.SerializeToString())
    os.replace(staged, target)
    return target


def onnx_session(model: onnx.ModelProto | str | os.PathLike[str], threads: int = 1,
                 ) -> ort.InferenceSession:
    """Open an onnxruntime session on the CPU for a model or a ``.onnx`` file.

    ``threads`` = 1 by default for the same reason as :func:`helpers.training.load_model`:
    on a few rows a thread pool costs more than it saves, and it keeps timings comparable.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def load_onnx(model_dir: str | os.PathLike[str]) -> ort.InferenceSession:
    """Load the one ``.onnx`` file in ``model_dir`` into an onnxruntime session.

    Raises:
        ModelStoreError: missing, empty or ambiguous folder, or a file onnxruntime cannot
            parse (the message names the file).
    """
    path = find_model_file(paths.resolve(model_dir), ONNX_EXTENSIONS)
    try:
        return onnx_session(path)
    except (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.Fail) as exc:
        raise ModelStoreError(f"{path} is not an ONNX model onnxruntime can load ({exc}): "
                              "re-export it with helpers.serialization.to_onnx()") from exc


def predict_onnx(session: ort.InferenceSession, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the ONNX model in onnxruntime; returns ``(labels, probabilities)``.

    Inputs are cast to float32 here because onnxruntime rejects float64 arrays.
    """
    labels, probabilities = session.run(list(ONNX_OUTPUTS),
                                        {ONNX_INPUT: np.asarray(X, dtype=np.float32)})
    return labels, probabilities


def predict_reference(onnx_model: onnx.ModelProto, X: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Run the ONNX model in onnx's reference evaluator (pure Python + numpy).

    The evaluator implements each operator from the ONNX specification independently of
    onnxruntime, so agreement between the two shows the *file* carries the model, not one
    runtime's interpretation of it.
    """
    evaluator = ReferenceEvaluator(onnx_model)
    labels, probabilities = evaluator.run(list(ONNX_OUTPUTS),
                                          {ONNX_INPUT: np.asarray(X, dtype=np.float32)})
    return np.asarray(labels), np.asarray(probabilities)


def compare(labels_a: np.ndarray, probs_a: np.ndarray, labels_b: np.ndarray,
            probs_b: np.ndarray) -> dict[str, Any]:
    """Compare two runtimes' predictions: equal classes and the largest probability gap."""
    return {"rows": len(labels_a),
            "labels_equal": bool(np.array_equal(np.asarray(labels_a), np.asarray(labels_b))),
            "max_abs_probability_diff": float(np.max(np.abs(np.asarray(probs_a, np.float64)
                                                            - np.asarray(probs_b, np.float64))))}


def graph_summary(onnx_model: onnx.ModelProto) -> dict[str, Any]:
    """Summarise an ONNX graph: producer, opsets, inputs/outputs, operators and trees."""

    def tensor(value: onnx.ValueInfoProto) -> dict[str, Any]:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            return {"name": value.name, "type": kind}
        tt = value.type.tensor_type
        dims = [d.dim_param or d.dim_value or None for d in tt.shape.dim]
        return {"name": value.name, "type": onnx.TensorProto.DataType.Name(tt.elem_type),
                "shape": dims}

    trees, tree_nodes = 0, 0
    for node in onnx_model.graph.node:
        for attr in node.attribute:
            if attr.name == "nodes_treeids":
                trees += len(set(attr.ints))
                tree_nodes += len(attr.ints)
    return {
        "producer": f"{onnx_model.producer_name} {onnx_model.producer_version}".strip(),
        "ir_version": onnx_model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in onnx_model.opset_import},
        "inputs": [tensor(v) for v in onnx_model.graph.input],
        "outputs": [tensor(v) for v in onnx_model.graph.output],
        "operators": dict(Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}"
                                  for n in onnx_model.graph.node)),
        "trees": trees,
        "tree_nodes": tree_nodes,
    }


# ------------------------------------------------------------------------ pickle ---

def pickle_bytes(obj: object, protocol: int = 4) -> bytes:
    """Serialize ``obj`` with pickle (writing a pickle is safe; *loading* one is the risk).

    Args:
        obj: what to pickle.
        protocol: pickle protocol. Default 4 (Python's default before 3.14) because
            fickling 0.1 cannot parse protocol 5's ``BYTEARRAY8`` opcode, which XGBoost's
            pickled booster uses under protocol 5.
    """
    return pickle.dumps(obj, protocol=protocol)


def unpickle_for_demonstration(data: bytes) -> Any:
    """Unpickle ``data``: the ONE place in the kit that does, for lab 04's demonstrations.

    Unpickling runs whatever callables the pickle names, with your privileges. Call this
    only on pickles this process made itself or crafted for the contained demonstration;
    never on a file from elsewhere. For models, load XGBoost JSON/UBJ or ONNX instead.
    """
    return pickle.loads(data)  # noqa: S301 - the explicit, contained demonstration


class _RunsOnLoad:
    """An object whose pickle calls ``exec(code)`` when loaded: the classic payload."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        # pickle stores "call builtins.exec with this string"; the loader needs none of
        # this class's code, only the pickle bytes.
        return (exec, (self.code,))


def payload_code(marker: str | os.PathLike[str]) -> str:
    """The harmless payload: write a marker file naming the process that ran it."""
    return (f"import os, pathlib; pathlib.Path({str(marker)!r}).write_text("
            "'written by a pickle payload in process %d' % os.getpid())")


def craft_malicious_pickle(marker: str | os.PathLike[str]) -> bytes:
    """Build a pickle that looks like model metadata but runs code when loaded.

    The payload only writes ``marker`` (a file in a temporary folder the caller owns): it
    proves execution and does nothing else.

    Args:
        marker: the file the payload writes; its folder must exist.

    Returns:
        Pickle bytes of ``{"model": "iris", "accuracy": 0.97, "notes": <payload>}``.
    """
    marker_path = Path(marker)
    if not marker_path.parent.is_dir():
        raise LabError(f"marker folder {marker_path.parent} does not exist: pass a path inside "
                       "a temporary folder you created (tempfile.mkdtemp())")
    return pickle_bytes({"model": "iris", "accuracy": 0.97,
                         "notes": _RunsOnLoad(payload_code(marker_path))})


def disassemble(data: bytes) -> str:
    """The pickle's opcodes as text (``pickletools.dis``): reads, never executes."""
    out = io.StringIO()
    pickletools.dis(data, out=out)
    return out.getvalue()


def opcode_counts(data: bytes) -> dict[str, int]:
    """How often each opcode occurs; ``STACK_GLOBAL``/``GLOBAL`` + ``REDUCE`` mean a call."""
    return dict(Counter(op.name for op, _, _ in pickletools.genops(data)))


@dataclass
class PickleScan:
    """fickling's verdict on a pickle, taken without loading it."""

    severity: str
    likely_safe: bool
    findings: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for results JSON."""
        return {"severity": self.severity, "likely_safe": self.likely_safe,
                "findings": self.findings, "imports": self.imports}


def scan_pickle(data: bytes) -> PickleScan:
    """Scan a pickle with fickling (static analysis of its opcodes; nothing is executed).

    Returns:
        A :class:`PickleScan`: severity name (``LIKELY_SAFE`` ... ``OVERTLY_MALICIOUS``),
        the findings and the imports the pickle would perform.
    """
    from fickling.analysis import Severity, check_safety
    from fickling.fickle import Pickled, PickleDecodeError

    try:
        pickled = Pickled.load(data)
    except (PickleDecodeError, NotImplementedError) as exc:
        # A pickle the scanner cannot read is not a safe pickle: report it as such.
        return PickleScan(severity="UNSCANNABLE", likely_safe=False,
                          findings=[f"fickling could not parse this pickle: {exc}"])
    results = check_safety(pickled)
    imports = sorted({ast.unparse(node) for node in ast.walk(pickled.ast)
                      if isinstance(node, ast.Import | ast.ImportFrom)})
    findings = [str(r) for r in results.results if r.severity > Severity.LIKELY_SAFE]
    return PickleScan(severity=results.severity.name,
                      likely_safe=results.severity == Severity.LIKELY_SAFE,
                      findings=findings, imports=imports)


def decompile(data: bytes) -> str:
    """fickling's reconstruction of the Python a pickle would run when loaded."""
    from fickling.fickle import Pickled

    return ast.unparse(Pickled.load(data).ast)


def data_only_contrast(model: xgb.XGBModel | xgb.Booster, onnx_model: onnx.ModelProto,
                       code: str, workdir: str | os.PathLike[str]) -> dict[str, Any]:
    """Plant ``code`` in an XGBoost JSON file and an ONNX file, load both, report what ran.

    The code goes in as a booster attribute (JSON) and a metadata property (ONNX): the only
    places these formats hold free text. Their loaders parse data into trees and graph
    nodes; neither has an instruction meaning "call this function", so the code comes back
    as a string and never runs.

    Returns:
        For each format: the file, whether it loaded, and the planted text read back.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    booster = _booster(model).copy()
    booster.set_attr(notes=code)
    json_path = work / "planted.json"
    booster.save_model(json_path)
    loaded = xgb.Booster(model_file=str(json_path))

    planted = onnx.ModelProto()
    planted.CopyFrom(onnx_model)
    onnx.helper.set_model_props(planted, {"notes": code})
    onnx_path = work / "planted.onnx"
    onnx_path.write_bytes(planted.SerializeToString())
    session = onnx_session(onnx_path)
    return {
        "xgboost-json": {"file": str(json_path), "loaded": loaded.num_boosted_rounds() > 0,
                         "notes_read_back": loaded.attr("notes")},
        "onnx": {"file": str(onnx_path), "loaded": bool(session.get_inputs()),
                 "notes_read_back": session.get_modelmeta().custom_metadata_map.get("notes")},
    }


# ----------------------------------------------------------------- compatibility ---

_WRAPPER_SOURCE = '''
class {class_name}:
    """A team's thin wrapper around the classifier: the kind of object people pickle."""

    def __init__(self, classifier, class_names):
        self.classifier = classifier
        self.class_names = list(class_names)

    def predict_species(self, X):
        return [self.class_names[i] for i in self.classifier.predict(X)]
'''


def define_wrapper_module(module_name: str, class_name: str = "IrisModel") -> types.ModuleType:
    """Create module ``module_name`` in-process holding a wrapper class, as if imported.

    This stands in for the team's own code (``from irislab_v1 import IrisModel``). A pickle
    of an ``IrisModel`` records only the text ``"irislab_v1" / "IrisModel"``: the loader must
    find that module and class again, under exactly those names.

    Args:
        module_name: dotted module name to register in ``sys.modules``.
        class_name: name of the wrapper class in that module.

    Returns:
        The module (also registered in ``sys.modules``).
    """
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module_name) or not \
            class_name.isidentifier():
        raise LabError(f"{module_name!r}/{class_name!r}: use Python identifiers")
    module = types.ModuleType(module_name, "In-process stand-in for a team's model code.")
    code = compile(_WRAPPER_SOURCE.format(class_name=class_name), f"<{module_name}>", "exec")
    exec(code, module.__dict__)  # noqa: S102 - our own fixed class source, nothing external
    getattr(module, class_name).__module__ = module_name
    sys.modules[module_name] = module
    return module


def forget_module(module_name: str) -> None:
    """Remove an in-process module made by :func:`define_wrapper_module` (safe to repeat)."""
    sys.modules.pop(module_name, None)


@dataclass
class LoadOutcome:
    """Whether a demonstration pickle loaded, and the error if it did not."""

    ok: bool
    value: Any = None
    error: str = ""


def try_unpickle(data: bytes) -> LoadOutcome:
    """Unpickle a pickle this process made; report a missing module or class as data.

    Only the two failures the compatibility demonstration provokes are reported as an
    outcome (``ModuleNotFoundError``, ``AttributeError``); anything else propagates.
    """
    try:
        return LoadOutcome(ok=True, value=unpickle_for_demonstration(data))
    except (ModuleNotFoundError, AttributeError) as exc:
        return LoadOutcome(ok=False, error=f"{type(exc).__name__}: {exc}")


# -------------------------------------------------------------------- efficiency ---

def _median_ms(func: Callable[[], object], repeats: int) -> float:
    func()  # warm-up: first calls pay for imports, allocations and caches
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples) * 1000.0)


def sample_rows(X: np.ndarray, n: int = 1000, seed: int = 42) -> np.ndarray:
    """``n`` float32 rows drawn (seeded, with replacement) from ``X`` for latency tests."""
    rng = np.random.default_rng(seed)
    return np.asarray(X[rng.integers(0, len(X), size=n)], dtype=np.float32)


def write_all_formats(model: xgb.XGBClassifier, onnx_model: onnx.ModelProto,
                      workdir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the same model as pickle, XGBoost JSON, UBJ and ONNX under ``workdir``."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    files = {"pickle": work / "model.pkl", "xgboost-json": work / "model.json",
             "xgboost-ubj": work / "model.ubj", "onnx": work / "model.onnx"}
    files["pickle"].write_bytes(pickle_bytes(model))
    model.get_booster().save_model(files["xgboost-json"])
    model.get_booster().save_model(files["xgboost-ubj"])
    files["onnx"].write_bytes(onnx_model.SerializeToString())
    return files


def measure_formats(model: xgb.XGBClassifier, onnx_model: onnx.ModelProto,
                    workdir: str | os.PathLike[str], X_many: np.ndarray,
                    repeats: int = 15) -> list[dict[str, Any]]:
    """Measure size, load time and prediction latency of each format (medians).

    Each format is loaded by the runtime that would serve it: the pickle by ``pickle`` into
    an ``XGBClassifier`` (``predict_proba``), JSON and UBJ by XGBoost into a ``Booster``
    (predict on a ``DMatrix``, as KServe's xgbserver does), ONNX by onnxruntime. Load times
    include reading the file.

    Args:
        model: the fitted classifier.
        onnx_model: its ONNX conversion.
        workdir: folder for the four files.
        X_many: float32 rows for the batch timing (e.g. 1,000 from :func:`sample_rows`).
        repeats: timed repetitions per figure (after one warm-up).

    Returns:
        One dict per format: ``format, runtime, bytes, load_ms, predict_1_ms,
        predict_batch_ms, batch_rows``.
    """
    if repeats < 1:
        raise LabError(f"repeats={repeats}: need at least one timed repetition")
    files = write_all_formats(model, onnx_model, workdir)
    one = np.asarray(X_many[:1], dtype=np.float32)
    loaders: dict[str, tuple[str, Callable[[], Any], Callable[[Any, np.ndarray], Any]]] = {
        "pickle": ("pickle -> XGBClassifier",
                   lambda: unpickle_for_demonstration(files["pickle"].read_bytes()),
                   lambda m, X: m.predict_proba(X)),
        "xgboost-json": ("xgboost.Booster",
                         lambda: xgb.Booster(params={"nthread": 1},
                                                     model_file=str(files["xgboost-json"])),
                         training.predict),
        "xgboost-ubj": ("xgboost.Booster",
                        lambda: xgb.Booster(params={"nthread": 1},
                                                    model_file=str(files["xgboost-ubj"])),
                        training.predict),
        "onnx": ("onnxruntime", lambda: onnx_session(files["onnx"]), predict_onnx),
    }
    rows = []
    for name in TABLE_FORMATS:
        runtime, load, run = loaders[name]
        loaded = load()
        rows.append({
            "format": name, "runtime": runtime, "bytes": files[name].stat().st_size,
            "load_ms": _median_ms(load, repeats),
            "predict_1_ms": _median_ms(lambda r=run, m=loaded: r(m, one), repeats),
            "predict_batch_ms": _median_ms(lambda r=run, m=loaded: r(m, X_many), repeats),
            "batch_rows": len(X_many),
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render :func:`measure_formats` rows as a Markdown table."""
    batch = rows[0]["batch_rows"] if rows else 0
    lines = [f"| format | loaded by | bytes | load (ms) | 1-row predict (ms) | "
             f"{batch:,}-row predict (ms) |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['format']} | {r['runtime']} | {r['bytes']:,} | {r['load_ms']:.2f} | "
              f"{r['predict_1_ms']:.3f} | {r['predict_batch_ms']:.2f} |" for r in rows]
    return "\n".join(lines)


def plot_formats(rows: list[dict[str, Any]]) -> Figure:
    """Bar charts of size, load time and latency per format (one panel per figure)."""
    panels = [("bytes", "size on disk (KiB)", 1 / 1024), ("load_ms", "load (ms)", 1),
              ("predict_1_ms", "1-row predict (ms)", 1),
              ("predict_batch_ms", f"{rows[0]['batch_rows']:,}-row predict (ms)", 1)]
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(11, 2.8), layout="constrained")
    names = [r["format"] for r in rows]
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        ax.bar(names, [r[key] * scale for r in rows], color=["#c44e52", "#4c72b0", "#55a868",
                                                              "#8172b2"][:len(rows)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle("Same model, four formats (medians)")
    return fig


# ------------------------------------------------------------------------- bench ---

def bench() -> dict[str, Any]:
    """``make bench`` section: training+saving time and the serialization table.

    ``train_and_save_seconds`` is fitting plus ``save_model()`` in a warm process (the
    target is 2 s); ``train_command_cold_seconds`` is ``python -m helpers.train`` end to end
    in a fresh interpreter, imports included, as a training job runs it.
    """
    start = time.perf_counter()
    result = training.train(seed=42)
    with tempfile.TemporaryDirectory(prefix="kflabs-bench-") as tmp:
        training.save_model(result.model, tmp)
        train_save = time.perf_counter() - start
        start = time.perf_counter()
        onnx_model = to_onnx(result.model)
        convert = time.perf_counter() - start
        X, _, _, _ = training.load_iris()
        rows = measure_formats(result.model, onnx_model, Path(tmp) / "formats",
                               sample_rows(X, 1000, seed=42), repeats=30)
        # What the cluster's training job pays: a fresh interpreter, imports included.
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "helpers.train", "--output-dir",
                        str(Path(tmp) / "cli")], check=True, capture_output=True, timeout=300)
        cli_cold = time.perf_counter() - start
    return {
        "train_and_save_seconds": round(train_save, 3),
        "train_and_save_target_seconds": 2.0,
        "train_command_cold_seconds": round(cli_cold, 2),
        "onnx_convert_seconds": round(convert, 3),
        "serialization": {r["format"]: {k: (round(v, 4) if isinstance(v, float) else v)
                                        for k, v in r.items() if k != "format"}
                          for r in rows},
    }
