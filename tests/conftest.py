"""Shared fixtures and the lab discovery used by the notebook tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import paths

ROOT = paths.ROOT
#: The test modules whose tests are marked ``kwok``. Under ``-n N --dist loadgroup`` (as
#: `make test` runs) one pytest-xdist worker runs all of them, one after the other, against
#: the one control plane, while the other workers run the rest (pytest_xdist_make_scheduler).
KWOK_MODULES = ("test_cluster_objects.py", "test_controlplane.py", "test_controlplane_trainer_v2.py")
LABS = sorted(paths.labs_dir().glob("[0-9][0-9]_*.ipynb"))
ALL_NOTEBOOKS = sorted(paths.labs_dir().rglob("*.ipynb"))


def lab_ids(notebooks: list[Path]) -> list[str]:
    """Readable test ids: the notebook stem."""
    return [nb.stem for nb in notebooks]


def pytest_collection_modifyitems(config, items):
    """A kwok test outside :data:`KWOK_MODULES` would escape its worker: refuse it by name."""
    stray = sorted({item.path.name for item in items
                    if item.get_closest_marker("kwok") and item.path.name not in KWOK_MODULES})
    if stray:
        raise pytest.UsageError(f"tests marked kwok in {stray}: add the module to "
                                "tests/conftest.py KWOK_MODULES, so one worker runs them all")


def kwok_scope(nodeid: str) -> str:
    """The xdist scheduling unit of a test: every kwok module is one unit, any other test its own."""
    return "kwok" if nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in KWOK_MODULES else nodeid


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: the kwok tests go, as one unit, to one worker.

    pytest-xdist 3.8 marks its groups through a node attribute that pytest 9 no longer reads,
    so its own ``xdist_group`` grouping does nothing here; this scheduler groups by module.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class KwokApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return kwok_scope(nodeid)

    return KwokApart(config, log)


@pytest.fixture
def tmp_output(tmp_path: Path) -> Path:
    """A fresh OUTPUT_DIR for one lab run."""
    out = tmp_path / "results"
    out.mkdir()
    return out


@pytest.fixture(scope="session")
def kwok_controlplane(request) -> dict:
    """One running Docker-less control plane for the whole run, shared by every kwok test.

    Built first (a cached no-op once the binaries exist), started on this run's port base
    (``KFLABS_CONTROLPLANE_PORT_BASE``), stopped at the end unless it was already running.
    ``make test`` runs with pytest-xdist's ``--dist loadgroup``, which keeps every kwok
    test on one worker (:func:`pytest_xdist_make_scheduler`). Spread over several workers
    (plain ``-n``), each worker would start (and stop) the same control plane: refused.

    Returns:
        What :func:`helpers.backend.kwok.supervisor.up` returned (``kubeconfig``, ...).
    """
    import os
    import shutil

    from helpers.backend.kwok import build, supervisor

    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 and \
            not getattr(request.config.option, "loadgroup", False):  # xdist sets it on workers
        pytest.skip("the kwok tests share one control plane: run them without -n, or with "
                    "-n N --dist loadgroup (as make test does)")
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


@pytest.fixture(scope="session")
def kind_target():
    """The kind backend, or a skip naming what is missing (the ``cluster`` tests' one gate)."""
    import shutil

    from helpers import backend
    from helpers.kube import names as kube_names

    missing = [tool for tool in ("kind", "kubectl", "docker") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no kind cluster here: {', '.join(missing)} not installed "
                    "(run `make cluster-up` on a machine with Docker)")
    problem = backend.probe(backend.default_kubeconfig(), kube_names.KIND_CONTEXT)
    if problem:
        pytest.skip(f"kind cluster {kube_names.KIND_CLUSTER_NAME!r} not reachable ({problem}): "
                    "run `make cluster-up`")
    return backend.resolve("kind", announce=False)
