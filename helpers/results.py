"""Each lab's key results, written as JSON under its ``OUTPUT_DIR``.

Tests and batch runs assert on these files, never on printed text.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from helpers import paths


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and non-finite floats into plain JSON values."""
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(lab: str, results: dict[str, Any], output_dir: str | os.PathLike[str]) -> Path:
    """Write ``results`` for ``lab`` to ``<output_dir>/<lab>.json`` and return the path.

    Relative ``output_dir`` values resolve against the repository root. The write is
    atomic (temp file then rename), so a reader never sees half a file.
    """
    out = paths.resolve(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{lab}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"lab": lab, **_jsonable(results)}, indent=2, sort_keys=True) + "\n")
    tmp.replace(target)
    return target


def read_results(lab: str, output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the results JSON a lab wrote to ``output_dir``."""
    return json.loads((paths.resolve(output_dir) / f"{lab}.json").read_text())
