"""Where things live. Every path in the kit is built here, never from the working directory.

Labs run from JupyterLab, papermill and nbval with different working directories; all of
them resolve relative paths against the repository root returned by :func:`repo_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding pyproject.toml). ``helpers`` is installed
#: editable, so this file sits at ``<root>/helpers/paths.py``.
ROOT: Path = Path(__file__).resolve().parent.parent


def repo_root() -> Path:
    """Return the repository root; ``KFLABS_ROOT`` overrides it (tests use this)."""
    override = os.environ.get("KFLABS_ROOT")
    return Path(override).resolve() if override else ROOT


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve ``path`` against the repository root unless it is already absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (repo_root() / p).resolve()


def labs_dir() -> Path:
    """The folder holding the lab notebooks."""
    return ROOT / "labs"


def data_dir() -> Path:
    """The folder holding data shipped with the kit (``iris.csv``)."""
    return ROOT / "data"


def cluster_dir() -> Path:
    """The folder holding versions.yaml, the kind config, manifests and the control plane."""
    return ROOT / "cluster"


def manifests_dir(area: str = "") -> Path:
    """The manifests folder, or one area of it (``scheduling``, ``training``, ``serving``)."""
    base = cluster_dir() / "manifests"
    return base / area if area else base


def build_dir() -> Path:
    """Generated files: executed notebooks, results, the local model store, bench.json."""
    return repo_root() / "build"


def results_dir() -> Path:
    """Default ``OUTPUT_DIR`` of every lab: ``build/results``."""
    return build_dir() / "results"


def model_store() -> Path:
    """The local folder standing in for the model PVC on the embedded backend."""
    return build_dir() / "model-store"
