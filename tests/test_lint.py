"""ruff lints helpers/, tests/ and the notebooks (it reads .ipynb natively)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else (shutil.which("ruff") or "ruff")


def test_ruff_clean():
    """`ruff check helpers tests labs` reports nothing."""
    proc = subprocess.run([_ruff(), "check", "helpers", "tests", "labs"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
