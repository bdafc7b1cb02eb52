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
    Under pytest-xdist every test marked ``kwok`` runs on one worker (the ``kwok`` group,
    ``--dist loadgroup``), so there is still exactly one control plane per run.

    Returns:
        What :func:`helpers.backend.kwok.supervisor.up` returned (``kubeconfig``, ...).
    """
    import shutil

    from helpers.backend.kwok import build, supervisor
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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share the control plane on one xdist worker (``--dist loadgroup``).

    ``tryfirst``: pytest-xdist reads the ``xdist_group`` marks in its own hook of this name, so
    they must be on the items before it runs (else each worker would start a control plane).
    """
    for item in items:
        if item.get_closest_marker("kwok"):
            item.add_marker(pytest.mark.xdist_group("kwok"))
