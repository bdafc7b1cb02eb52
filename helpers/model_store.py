"""The model store: one model file per model directory, laid out as KServe expects.

On the embedded backend the store is a local folder (``build/model-store``) standing in
for the PVC; on a cluster it is the PVC, mounted by KServe's storage initializer at
``/mnt/models``. KServe's xgbserver loads *the single* ``.bst``/``.json``/``.ubj`` file in
the model directory and refuses a directory with none or several; :func:`find_model_file`
applies the same rule, so a store that works here works there.

:func:`check_runtime_can_read` adds the version rule: XGBoost reads models saved by its
own or an older version, never promises to read newer ones, so a model saved by a newer
XGBoost than the serving runtime's is refused before it is published.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from helpers import versions
from helpers.errors import ModelStoreError

#: Formats XGBoost's own ``save_model()`` writes; the file extension selects the format.
SAVE_FORMATS: tuple[str, ...] = ("json", "ubj")
#: File extensions KServe's xgbserver accepts, in its order.
XGBOOST_EXTENSIONS = (".bst", ".json", ".ubj")
ONNX_EXTENSIONS = (".onnx",)


def find_model_file(model_dir: str | os.PathLike[str],
                    extensions: tuple[str, ...] = XGBOOST_EXTENSIONS) -> Path:
    """Return the one model file in ``model_dir`` whose name ends in one of ``extensions``.

    Raises:
        ModelStoreError: the directory is missing, holds no such file, holds several, or
            the file is empty. The message names the path and what was expected.
    """
    directory = Path(model_dir)
    wanted = " or ".join(f"model{ext}" for ext in extensions)
    if not directory.exists():
        raise ModelStoreError(
            f"model directory {directory} does not exist: expected a folder holding one "
            f"{wanted} file (train and save a model first, e.g. `python -m helpers.train "
            f"--output-dir {directory.parent} --name {directory.name}`, which writes "
            f"{directory / 'model.json'})"
        )
    if not directory.is_dir():
        raise ModelStoreError(f"{directory} is a file, not a model directory: point at the "
                              f"folder that holds one {wanted} file")
    found = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in extensions)
    if not found:
        present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise ModelStoreError(f"no model file in {directory}: expected one {wanted} file, "
                              f"found {present}")
    if len(found) > 1:
        raise ModelStoreError(
            f"more than one model file in {directory} ({', '.join(p.name for p in found)}): "
            "KServe loads exactly one; keep one file per model directory"
        )
    if found[0].stat().st_size == 0:
        raise ModelStoreError(f"model file {found[0]} is empty: re-save the model")
    return found[0]


def prepare_store(store_dir: str | os.PathLike[str]) -> Path:
    """Create the model store folder if needed and check that it can be written to.

    Raises:
        ModelStoreError: the folder cannot be created (a file is in the way, no permission)
            or is not writable; the message names the folder and the reason.
    """
    store = Path(store_dir)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelStoreError(f"cannot use {store} as a model store: {exc.strerror or exc} "
                              "(creating it failed); pass a folder you can write to") from None
    if not os.access(store, os.W_OK | os.X_OK):
        raise ModelStoreError(f"cannot use {store} as a model store: it is not writable; "
                              "pass a folder you can write to")
    return store


#: UBJSON's integer markers (int8, uint8, int16, int32, int64) and their sizes in bytes.
_UBJ_INTS = {b"i": (1, True), b"U": (1, False), b"I": (2, True), b"l": (4, True), b"L": (8, True)}


def saved_by(model_file: str | os.PathLike[str]) -> tuple[int, int, int]:
    """The XGBoost version that saved a JSON or UBJ model: its top-level ``version`` field.

    Reads the file as data (no XGBoost), so it works whatever XGBoost is installed.

    Raises:
        ModelStoreError: the file is not JSON/UBJ (``.bst`` records no version), or it has
            no readable ``version`` field.
    """
    path = Path(model_file)
    if path.suffix == ".json":
        try:
            version = json.loads(path.read_text()).get("version")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ModelStoreError(f"{path} is not an XGBoost JSON model ({exc}): re-save "
                                  "it with save_model()") from exc
        if isinstance(version, list) and len(version) == 3 and all(isinstance(v, int)
                                                                    for v in version):
            return (version[0], version[1], version[2])
    elif path.suffix == ".ubj":
        # The top-level object ends with the key "version" and a counted array of 3 ints.
        data = path.read_bytes()
        at = data.rfind(b"\x07version[")
        if at >= 0:
            version = _ubj_int_triple(data, at + len(b"\x07version["))
            if version:
                return version
    else:
        raise ModelStoreError(f"{path}: only XGBoost's JSON and UBJ models record the version "
                              f"that saved them; save the model as model.json or model.ubj")
    raise ModelStoreError(f"{path} has no XGBoost version field: re-save it with save_model()")


def _ubj_int_triple(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """Decode ``[#<count>`` + 3 UBJSON integers (or 3 ints and ``]``) starting at ``pos``."""
    if data[pos:pos + 1] == b"#":
        size, _ = _UBJ_INTS.get(data[pos + 1:pos + 2], (0, False))
        if not size or int.from_bytes(data[pos + 2:pos + 2 + size], "big") != 3:
            return None
        pos += 2 + size
    out = []
    for _ in range(3):
        size, signed = _UBJ_INTS.get(data[pos:pos + 1], (0, False))
        if not size:
            return None
        out.append(int.from_bytes(data[pos + 1:pos + 1 + size], "big", signed=signed))
        pos += 1 + size
    return (out[0], out[1], out[2])


def check_runtime_can_read(model_file: str | os.PathLike[str],
                           runtime_xgboost: str | None = None) -> tuple[int, int, int]:
    """Refuse a model saved by a newer XGBoost than the serving runtime's; return its version.

    XGBoost reads JSON/UBJ models saved by its own or an older version. A newer file may
    fail to load, or worse load and predict differently: XGBoost 3.1 started saving a
    multi-class model's ``base_score`` as one value per class, which 2.1 loads without an
    error and silently replaces with its default, 0.5. Equal values cancel in softmax, so a
    model trained on balanced classes (Iris as shipped) still predicts the same; one trained
    on imbalanced classes does not (tests/test_version_trap.py measures both). The rule
    compares major.minor: a patch release does not change the format.

    Args:
        model_file: the JSON or UBJ model about to be published.
        runtime_xgboost: the runtime's XGBoost (default: the ``kserve_xgboost`` pin, the
            XGBoost in KServe's xgbserver).

    Raises:
        ModelStoreError: the model is newer than the runtime (the message names both
            versions and what to do), or its version cannot be read.
    """
    runtime = runtime_xgboost or versions.pin("kserve_xgboost")
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", runtime)
    if not match:
        raise ModelStoreError(f"runtime XGBoost version {runtime!r} is not X.Y or X.Y.Z")
    saved = saved_by(model_file)
    if saved[:2] > (int(match[1]), int(match[2])):
        saved_text = ".".join(map(str, saved))
        raise ModelStoreError(
            f"{model_file} was saved by XGBoost {saved_text}, but the serving runtime (KServe "
            f"{versions.pin('kserve')}'s xgbserver) reads models with XGBoost {runtime}: "
            f"XGBoost reads models saved by its own or older versions only, and a newer one "
            f"may load yet predict differently. Re-train and save with XGBoost {runtime} "
            f"(the kit's `python -m helpers.train` does), or serve with a runtime whose "
            f"XGBoost is at least {saved_text}.")
    return saved
