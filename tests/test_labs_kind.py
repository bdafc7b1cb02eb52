"""Every lab with ``BACKEND="kind"`` on the real kind cluster, checked like the embedded run.

Marked ``cluster``: each test skips, saying why, unless the kind cluster answers
(``make cluster-up`` first; ``make test-cluster`` runs these in its ``pytest-cluster`` step).
A lab runs once, headless through papermill, with its defaults and ``BACKEND="kind"`` (plus the
longer start-up wait the serving lab asks for on a cluster); its check cells must all pass and
its results JSON must pass the same :mod:`tests.results_checks` function as on ``sim``.

Each lab's status and seconds (and, from lab 05, the InferenceService's time to Ready) go
to ``build/cluster-labs.json``, which ``make test-cluster`` copies into
``build/cluster-results.json``: how long each lab takes on a real cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import paths
from helpers.tools import runner
from tests.conftest import LABS
from tests.results_checks import CHECKS
from tests.test_labs_papermill import assert_every_check_passed, assert_pictures_shown

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
    """The lab's own cells on kind: every check cell passes and its results pass its check."""
    import papermill as pm

    lab = notebook.stem
    params = {**kind_parameters(lab), **extra}
    key = lab + "".join(f"-{k}={v}" for k, v in extra.items())
    declared = pm.inspect_notebook(str(notebook))
    unknown = set(params) - set(declared)
    assert not unknown, f"{lab}: KIND_PARAMS names undeclared parameters {sorted(unknown)}"
    out = tmp_path / "results"
    executed = tmp_path / "executed" / notebook.name
    executed.parent.mkdir()
    run = runner.run_lab(notebook, output_notebook=executed, parameters={
        **runner.isolated_dirs(declared, tmp_path), **params, "OUTPUT_DIR": str(out)})
    entry = {"status": run.status, "seconds": round(run.seconds, 1), "error": run.error[:400]}
    try:
        assert run.status == "ok", run.error
        assert_pictures_shown(executed)
        assert_every_check_passed(executed, notebook)
        results = json.loads((out / f"{lab}.json").read_text())
        if "startup_seconds" in results:  # lab 05: the InferenceService's time to Ready
            entry["isvc_ready_seconds"] = round(results["startup_seconds"], 1)
        assert results["lab"] == lab and results["backend"] == "kind", results.get("backend")
        CHECKS[lab](results, params)
    except AssertionError as exc:
        entry["checks"] = f"failed: {str(exc)[:400]}"
        raise
    else:
        entry["checks"] = "passed"
    finally:
        record_timing(key, entry)
