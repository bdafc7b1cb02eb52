"""``kserve.Model`` classes that serve the Iris classifier: XGBoost and ONNX.

:class:`XGBoostModel` mirrors KServe's own ``xgbserver``: it loads *the single* ``.bst``,
``.json`` or ``.ubj`` file in the model directory (none or several is an error), and a
prediction returns ``booster.predict`` of the rows, i.e. for the Iris ``multi:softprob``
model one row of three class probabilities per input row. V1 answers
``{"predictions": [[p0, p1, p2], ...]}``; V2 answers one ``output-0`` tensor of shape
``[N, 3]``. :class:`ONNXModel` serves the same classifier converted to ONNX on
onnxruntime and answers in the same shape, so a client cannot tell them apart.

Unlike the stock runtime, both validate their input before predicting (see
:func:`rows_to_matrix`): a wrong shape, text, NaN or an empty batch becomes a 400 whose
message says what was expected, and a batch above ``max_batch_rows`` a 413, instead of a
500 with a native stack trace.

This module imports ``kserve`` (several seconds): import it only where a model is served.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from helpers.model_store import ONNX_EXTENSIONS, XGBOOST_EXTENSIONS, find_model_file

#: Iris feature order, as trained by helpers.training (centimetres).
FEATURES = ("sepal length", "sepal width", "petal length", "petal width")
N_FEATURES = len(FEATURES)
#: Default bound on rows per request; bigger batches are refused with 413, not queued.
DEFAULT_MAX_BATCH_ROWS = 10_000
#: The V2 output tensor name used by KServe's xgbserver.
OUTPUT_NAME = "output-0"

EXPECTED = (f"expected N x {N_FEATURES} finite numbers, one row per flower "
            f"({', '.join(FEATURES)}), e.g. [[6.8, 2.8, 4.8, 1.4]]")


class BatchTooLarge(InvalidInput):
    """A request holds more rows than the server accepts (answered with HTTP 413)."""


def rows_to_matrix(data: Any, shape: list[int] | None = None, *,
                   max_rows: int = DEFAULT_MAX_BATCH_ROWS, where: str = "'instances'") -> np.ndarray:
    """Check a request's rows and return them as a float32 ``N x 4`` matrix.

    Args:
        data: the rows as decoded from JSON (V1 ``instances``; V2 ``data``, flat or nested).
        shape: the V2 ``shape`` the client declared, checked against the data; ``None`` (V1)
            means the shape is taken from the nesting of ``data``.
        max_rows: the most rows one request may hold.
        where: the field name used in error messages.

    Returns:
        A C-contiguous float32 array of shape ``(N, 4)`` with ``1 <= N <= max_rows``.

    Raises:
        InvalidInput: empty input, wrong shape, non-numeric or non-finite values; the
            message names what was found and what was expected.
        BatchTooLarge: more than ``max_rows`` rows.
    """
    if not isinstance(data, list | np.ndarray):
        raise InvalidInput(f"{where} must be a list of rows, got {type(data).__name__}: "
                           f"{EXPECTED}")
    if len(data) == 0:
        raise InvalidInput(f"{where} is empty: {EXPECTED}")
    if isinstance(data, list) and _holds_bool(data):
        raise InvalidInput(f"{where} holds true/false values, not numbers: {EXPECTED}")
    try:
        array = np.asarray(data)
    except ValueError as exc:  # ragged nesting: rows of different lengths
        raise InvalidInput(f"{where} has rows of different lengths: {EXPECTED}") from exc
    # bool is a subclass of int in JSON decoders; text ("5.1") must not be coerced silently.
    if array.dtype.kind not in "iuf":
        kinds = {"b": "true/false values", "U": "text", "S": "bytes", "O": "mixed or nested values"}
        found = kinds.get(array.dtype.kind, f"dtype {array.dtype}")
        raise InvalidInput(f"{where} holds {found}, not numbers: {EXPECTED}")
    if shape is not None:
        if list(shape) != [s for s in shape if isinstance(s, int) and s >= 0] or \
                math.prod(shape) != array.size:
            raise InvalidInput(f"declared shape {list(shape)} does not match the "
                               f"{array.size} values sent: {EXPECTED}")
        array = array.reshape(shape)
    if array.ndim != 2 or array.shape[1] != N_FEATURES:
        raise InvalidInput(f"{where} has shape {list(array.shape)}: {EXPECTED}")
    if array.shape[0] > max_rows:
        raise BatchTooLarge(f"batch of {array.shape[0]} rows is larger than this server's "
                            f"limit of {max_rows} rows per request: split it into smaller "
                            "requests")
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(matrix).all():
        bad = np.argwhere(~np.isfinite(matrix))[0].tolist()
        raise InvalidInput(f"{where} holds a NaN or infinite value (first at row {bad[0]}, "
                           f"column {bad[1]}; float32 overflows above 3.4e38): {EXPECTED}")
    return matrix


def _holds_bool(rows: list) -> bool:
    """True if a JSON ``true``/``false`` sits in ``rows`` (flat or one level nested).

    numpy would silently turn ``[true, 2.5, 3, 4]`` into ``[1.0, 2.5, 3, 4]``; a linear
    scan of the decoded lists costs microseconds for the batch sizes served here.
    """
    for item in rows:
        if type(item) is bool:
            return True
        if type(item) is list and any(type(v) is bool for v in item):
            return True
    return False


def v2_matrix(request: InferRequest, max_rows: int) -> np.ndarray:
    """Return the ``N x 4`` matrix held by a V2 request's single input tensor.

    Raises:
        InvalidInput: not exactly one input, an unsupported datatype, or bad rows.
    """
    if len(request.inputs) != 1:
        names = [i.name for i in request.inputs]
        raise InvalidInput(f"expected exactly one input tensor, got {len(names)} {names}: "
                           f"send one input of shape [N, {N_FEATURES}]")
    tensor = request.inputs[0]
    if tensor.datatype not in ("FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                               "UINT8", "UINT16", "UINT32", "UINT64"):
        raise InvalidInput(f"input '{tensor.name}' has datatype {tensor.datatype}: expected "
                           "FP32 (or another numeric datatype such as FP64 or INT64)")
    if tensor._raw_data is not None:  # binary tensor extension (e.g. tritonclient's default)
        expected_bytes = math.prod(tensor.shape) * np.dtype(_NP_TYPES[tensor.datatype]).itemsize
        if len(tensor._raw_data) != expected_bytes:
            raise InvalidInput(f"input '{tensor.name}' carries {len(tensor._raw_data)} bytes "
                               f"of binary data; shape {tensor.shape} needs {expected_bytes}")
        data = tensor.as_numpy()
        return rows_to_matrix(data.reshape(-1), tensor.shape, max_rows=max_rows,
                              where=f"input '{tensor.name}'")
    return rows_to_matrix(tensor.data, tensor.shape, max_rows=max_rows,
                          where=f"input '{tensor.name}'")


_NP_TYPES = {"FP32": "float32", "FP64": "float64", "INT8": "int8", "INT16": "int16",
             "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "UINT16": "uint16",
             "UINT32": "uint32", "UINT64": "uint64"}


class _IrisModel(Model):
    """Shared request handling: decode, validate, predict, answer in V1 or V2 form."""

    #: file extensions this model loads; set by subclasses.
    extensions: tuple[str, ...] = ()

    def __init__(self, name: str, model_dir: str | os.PathLike[str],
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_batch_rows = max_batch_rows
        self.model_file: Path | None = None

    def load(self) -> bool:
        """Load the single model file in ``model_dir`` and mark the model ready.

        Raises:
            helpers.errors.ModelStoreError: the directory is missing, or holds no or several
                model files (the same rule as KServe's xgbserver).
        """
        self.model_file = find_model_file(self.model_dir, self.extensions)
        self._load_file(self.model_file)
        self.ready = True
        return self.ready

    def _load_file(self, path: Path) -> None:
        raise NotImplementedError

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Return class probabilities, shape ``(N, 3)``, for a validated float32 matrix."""
        raise NotImplementedError

    # predict is synchronous on purpose: a tree ensemble on a handful of rows takes
    # microseconds, far less than handing it to a thread pool would cost.
    def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        """Predict class probabilities for a V1 dict or a V2 :class:`InferRequest`.

        Raises:
            InvalidInput: the request is not ``N x 4`` finite numbers (HTTP 400).
            BatchTooLarge: more than ``max_batch_rows`` rows (HTTP 413).
        """
        if isinstance(payload, InferRequest):
            probs = self.probabilities(v2_matrix(payload, self.max_batch_rows))
            output = InferOutput(name=OUTPUT_NAME, shape=list(probs.shape), datatype="FP32",
                                 data=probs.ravel().tolist())
            return InferResponse(response_id=payload.id or "", model_name=self.name,
                                 infer_outputs=[output])
        if isinstance(payload, bytes | str):
            raise InvalidInput("the body was not decoded as JSON: send it with "
                               f'Content-Type: application/json, {{"instances": [[...], ...]}}; '
                               f"{EXPECTED}")
        if not isinstance(payload, dict) or "instances" not in payload:
            keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise InvalidInput(f'expected a JSON object {{"instances": [[...], ...]}}, got {keys}: '
                               f"{EXPECTED}")
        matrix = rows_to_matrix(payload["instances"], max_rows=self.max_batch_rows)
        return {"predictions": self.probabilities(matrix).tolist()}


class XGBoostModel(_IrisModel):
    """The Iris booster served like KServe's xgbserver (one .bst/.json/.ubj per directory).

    Args:
        name: the model name in the URL (``/v1/models/<name>:predict``).
        model_dir: the directory holding exactly one model file.
        max_batch_rows: the most rows accepted in one request.
        nthread: XGBoost threads per prediction; 1 is fastest for small batches.
    """

    extensions = XGBOOST_EXTENSIONS

    def __init__(self, name: str, model_dir: str | os.PathLike[str],
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, nthread: int = 1):
        super().__init__(name, model_dir, max_batch_rows)
        self.nthread = nthread
        self._booster = None

    def _load_file(self, path: Path) -> None:
        import xgboost as xgb

        self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=str(path))

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Return ``booster.predict`` of the rows (class probabilities for softprob).

        ``inplace_predict`` computes the same as xgbserver's ``predict(DMatrix(...))``
        without building a DMatrix per request, which dominates the cost of a 1-row call.
        """
        out = self._booster.inplace_predict(matrix)
        return np.asarray(out, dtype=np.float32).reshape(matrix.shape[0], -1)


class ONNXModel(_IrisModel):
    """The Iris classifier converted to ONNX, served on onnxruntime.

    The graph's probability output (the second output of an onnxmltools-converted
    classifier, ``probabilities``) is returned, so answers match :class:`XGBoostModel`.
    """

    extensions = ONNX_EXTENSIONS

    def _load_file(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: small batches are latency-bound and the machine is shared.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        outputs = [o.name for o in self._session.get_outputs()]
        self._output_name = next((n for n in outputs if "prob" in n.lower()), outputs[-1])

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Run the ONNX graph and return its probability output as ``(N, 3)`` float32."""
        (out,) = self._session.run([self._output_name], {self._input_name: matrix})
        if isinstance(out, list):  # a ZipMap output: one {class: prob} dict per row
            out = [[row[k] for k in sorted(row)] for row in out]
        return np.asarray(out, dtype=np.float32)


def model_for_dir(name: str, model_dir: str | os.PathLike[str], model_format: str = "auto",
                  max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS) -> _IrisModel:
    """Pick the model class for ``model_dir`` (``auto`` looks at the single model file).

    Raises:
        helpers.errors.ModelStoreError: no or several model files in the directory.
        ValueError: an unknown ``model_format``.
    """
    if model_format == "auto":
        found = find_model_file(model_dir, XGBOOST_EXTENSIONS + ONNX_EXTENSIONS)
        model_format = "onnx" if found.suffix in ONNX_EXTENSIONS else "xgboost"
    classes = {"xgboost": XGBoostModel, "onnx": ONNXModel}
    if model_format not in classes:
        raise ValueError(f"unknown model format {model_format!r}: use auto, xgboost or onnx")
    return classes[model_format](name, model_dir, max_batch_rows=max_batch_rows)
