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


@pytest.fixture(scope="session")
def kwok_controlplane() -> dict:
    """One running Docker-less control plane for the whole run, shared by every kwok test.

    Built first (a cached no-op once the binaries exist), started on this run's port base
    (``KFLABS_CONTROLPLANE_PORT_BASE``), stopped at the end unless it was already running.
    ``make test`` runs the tests marked ``kwok`` in their own pytest run, without workers:
    several pytest-xdist workers would each start (and stop) the same control plane.

    Returns:
        What :func:`helpers.backend.kwok.supervisor.up` returned (``kubeconfig``, ...).
    """
    import os
    import shutil

    from helpers.backend.kwok import build, supervisor

    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        pytest.skip("the kwok tests share one control plane: run them without -n "
                    "(make test runs them as `pytest -m kwok` after the parallel part)")
    from helpers.errors import BackendUnavailable

    try:
        build.build(log=print)
    except BackendUnavailable as exc:
        if shutil.which("go") is None or "Go >=" in str(exc):
            pytest.skip(f"no usable Go, so no local control plane: {exc}")
        pytest.fail(f"Go is installed but the control plane did not build: {exc}")
    was_up = supervisor.is_up()
    info = supervisor.up(nodes=0, build_first=False)
    yield info
    if not was_up:
        supervisor.down(quiet=True)
