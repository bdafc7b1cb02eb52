"""Shared fixtures and the lab discovery used by the notebook tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import paths

ROOT = paths.ROOT
LABS = sorted(paths.labs_dir().glob("[0-9][0-9]_*.ipynb"))
ALL_NOTEBOOKS = sorted(paths.labs_dir().rglob("*.ipynb"))


def lab_ids(notebooks: list[Path]) -> list[str]:
    """Readable test ids: the notebook stem."""
    return [nb.stem for nb in notebooks]


@pytest.fixture
def tmp_output(tmp_path: Path) -> Path:
    """A fresh OUTPUT_DIR for one lab run."""
    out = tmp_path / "results"
    out.mkdir()
    return out
