"""Every lab with ``BACKEND="kind"`` on the real kind cluster, checked like the embedded run.

Marked ``cluster``: each test skips, saying why, unless the kind cluster answers
(``make cluster-up`` first; ``make test-cluster`` runs these in its ``pytest-cluster`` step).
A lab runs once, headless through papermill, with its defaults and ``BACKEND="kind"`` (plus the
longer start-up wait the serving lab asks for on a cluster), and is checked exactly as on
``sim`` (tests/test_labs_papermill.py's ``check_executed_lab``): the cleanup cell ran twice,
every picture and check cell passed, and the results JSON passes its ``tests.results_checks``
function.

Each lab's status and seconds (and, from lab 05, the InferenceService's time to Ready) go
to ``build/cluster-labs.json``, which ``make test-cluster`` copies into
``build/cluster-results.json``: how long each lab takes on a real cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import paths
from tests.conftest import LABS
from tests.test_labs_papermill import check_executed_lab, execute_lab

#: What a lab needs beyond ``BACKEND="kind"`` on a cluster (its parameters cell says so).
KIND_PARAMS: dict[str, dict] = {
    "05_serve_with_kserve": {"STARTUP_TIMEOUT": 600.0},
}


#: Further runs of a lab with other parameters: lab 06 also trains with Trainer v2's TrainJob.
EXTRA_CASES: list[tuple[str, dict]] = [("06_end_to_end", {"TRAINER": "v2"})]


def _cases():
    for nb in LABS:
        yield pytest.param(nb, {}, id=nb.stem)
    for stem, extra in EXTRA_CASES:
        nb = next(n for n in LABS if n.stem == stem)
        yield pytest.param(nb, extra, id=stem + "".join(f"-{k}={v}" for k, v in extra.items()))


def timings_file() -> Path:
    """Where each lab's status and seconds on kind are recorded."""
    return paths.build_dir() / "cluster-labs.json"


def record_timing(lab: str, entry: dict, path: Path | None = None) -> dict:
    """Merge one lab's ``entry`` into the timings file; returns the whole record."""
    path = path or timings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[lab] = entry
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def kind_parameters(lab: str) -> dict:
    """The parameters a lab runs with on kind (OUTPUT_DIR and the folders are added per run)."""
    return {"BACKEND": "kind", **KIND_PARAMS.get(lab, {})}


def test_timings_merge_per_lab(tmp_path):
    """The timings file keeps one entry per lab, the latest run's (runs without a cluster)."""
    path = tmp_path / "t.json"
    record_timing("a", {"seconds": 1.0}, path)
    record_timing("b", {"seconds": 2.0}, path)
    assert record_timing("a", {"seconds": 3.0}, path) == {"a": {"seconds": 3.0}, "b": {"seconds": 2.0}}


@pytest.mark.cluster
@pytest.mark.notebook
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("notebook", "extra"), list(_cases()))
def test_lab_runs_on_the_kind_cluster(kind_target, notebook: Path, extra: dict, tmp_path: Path):
    """The lab's own cells on kind, checked as on ``sim`` (cleanup twice, pictures, check cells,
    results); its status and seconds are recorded whatever the outcome."""
    lab = notebook.stem
    params = {**kind_parameters(lab), **extra}
    key = lab + "".join(f"-{k}={v}" for k, v in extra.items())
    run, executed, out = execute_lab(notebook, params, tmp_path)
    entry = {"status": run.status, "seconds": round(run.seconds, 1), "error": run.error[:400]}
    try:
        results = check_executed_lab(run, executed, out, notebook, params)
        assert results["backend"] == "kind", results["backend"]
        if "startup_seconds" in results:  # lab 05: the InferenceService's time to Ready
            entry["isvc_ready_seconds"] = round(results["startup_seconds"], 1)
    except AssertionError as exc:
        entry["checks"] = f"failed: {str(exc)[:400]}"
        raise
    else:
        entry["checks"] = "passed"
    finally:
        record_timing(key, entry)
