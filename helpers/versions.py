"""Read the upstream pins from ``cluster/versions.yaml`` (the single place they are written)."""

from __future__ import annotations

from functools import lru_cache

import yaml

from helpers import paths
from helpers.errors import LabError


@lru_cache(maxsize=1)
def pins() -> dict[str, str]:
    """Return every pin in cluster/versions.yaml as a dict of strings."""
    path = paths.cluster_dir() / "versions.yaml"
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise LabError(f"{path} must be a mapping of component -> version")
    return {str(k): str(v) for k, v in data.items()}


def pin(component: str) -> str:
    """Return one pin, e.g. ``pin("volcano") == "v1.15.1"``."""
    table = pins()
    if component not in table:
        raise LabError(f"no pin for {component!r} in cluster/versions.yaml "
                       f"(known: {', '.join(sorted(table))})")
    return table[component]
