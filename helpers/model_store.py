"""The model store: one model file per model directory, laid out as KServe expects.

On the embedded backend the store is a local folder (``build/model-store``) standing in
for the PVC; on a cluster it is the PVC, mounted by KServe's storage initializer at
``/mnt/models``. KServe's xgbserver loads *the single* ``.bst``/``.json``/``.ubj`` file in
the model directory and refuses a directory with none or several; :func:`find_model_file`
applies the same rule, so a store that works here works there.
"""

from __future__ import annotations

import os
from pathlib import Path

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
