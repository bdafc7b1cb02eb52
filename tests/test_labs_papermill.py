"""Run every lab with papermill for each named parameter set in tests/params/<lab>.yaml.

Each run also checks what would otherwise cost a run of its own: that every check cell
passes (the instructor copy's grade) and that the final cleanup cell is safe to run twice
(it is run again at the end).

Parameter names are checked against ``papermill.inspect_notebook`` first, because papermill
only *warns* about unknown parameters. Each run's results JSON is then checked by the
lab's function in :mod:`tests.results_checks`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

from helpers.tools import grading, runner
from helpers.tools.runner import isolated_dirs
from tests.conftest import LABS, ROOT
from tests.results_checks import CHECKS

PARAMS_DIR = ROOT / "tests" / "params"
#: A call that draws a picture: a ``plot_*`` helper or ``plots.<kind>(...)``.
#: Tag of the repeated cleanup cell that :func:`with_cleanup_twice` appends.
CLEANUP_AGAIN_TAG = "cleanup-again"
PICTURE_CALL = re.compile(r"\b(plot_\w+|plots\.\w+)\(")


def promised_pictures(cell_source: str) -> int:
    """How many pictures a code cell says it shows: one per plotting call in its source."""
    return len(PICTURE_CALL.findall(cell_source))


def shown_pictures(cell) -> int:
    """How many images an executed code cell holds in its outputs (PNG or SVG)."""
    return sum(1 for out in cell.get("outputs", [])
               if {"image/png", "image/svg+xml"} & set(out.get("data", {})))


def assert_pictures_shown(executed: Path) -> None:
    """Every cell of an executed lab shows exactly the pictures its plotting calls promise.

    A figure that nothing displays (a bare ``matplotlib.figure.Figure``) leaves only its repr,
    and a figure shown twice leaves two images: both fail here, naming the cell.
    """
    nb = nbformat.read(executed, as_version=4)
    wrong = [f"cell {i}: {shown_pictures(c)} image(s), {promised_pictures(c.source)} promised"
             for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and shown_pictures(c) != promised_pictures(c.source)]
    assert not wrong, f"{executed.name}: " + "; ".join(wrong)


def assert_every_check_passed(executed: Path, lab: Path) -> None:
    """Every check cell of the executed lab ran and raised nothing: the instructor copy's grade.

    This is the check `make grade` would make of the instructor copy (every exercise passes),
    read from the run that already executed it rather than from a second, nbval, execution.
    """
    nb = nbformat.read(executed, as_version=4)
    checks = [(i, c) for i, c in enumerate(nb.cells) if "check" in c.metadata.get("tags", [])]
    expected = sum(len(ex.check_cells) for ex in grading.exercises(grading.read_notebook(lab)))
    assert len(checks) == expected >= 1, f"{lab.stem}: expected {expected} check cells; found {len(checks)}"
    failed = [i for i, c in checks if c.execution_count is None
              or any(out.get("output_type") == "error" for out in c.outputs)]
    assert not failed, f"{lab.stem}: the instructor copy fails (or skips) the check cells {failed}"


def with_cleanup_twice(notebook: Path, folder: Path) -> Path:
    """A copy of the lab whose final (cleanup) code cell runs a second time at the end.

    Set-up and cleanup must be safe to run twice: the copy proves it in the same papermill run
    that checks the lab, instead of executing the whole lab once more for that alone.
    """
    nb = nbformat.read(notebook, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    again = nbformat.v4.new_code_cell(last.source, metadata={"tags": [CLEANUP_AGAIN_TAG]})
    again.id = f"{last.id}-again"
    nb.cells.append(again)
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / notebook.name
    nbformat.write(nb, copy)
    return copy


def _cases():
    for nb in LABS:
        spec = PARAMS_DIR / f"{nb.stem}.yaml"
        sets = yaml.safe_load(spec.read_text()) if spec.is_file() else None
        for name, params in (sets or {"<missing params file>": None}).items():
            yield pytest.param(nb, name, params, id=f"{nb.stem}[{name}]")


def test_picture_promises_are_counted_per_cell():
    """The promise counter sees each plotting call once and nothing else."""
    assert promised_pictures("fig = plots.compare({...})") == 1
    assert promised_pictures("dag_figure = pipeline.plot_dag(ir)") == 1
    assert promised_pictures("a = training.plot_confusion(c)\nb = bench.plot_latency(x)") == 2
    assert promised_pictures("plt.close('all')\nexplorer.explore(seed=1)") == 0
    cell = nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", {"image/png": "iVBOR", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("execute_result", {"text/plain": "<Figure size 810x220 with 1 Axes>"})])
    assert shown_pictures(cell) == 1


def test_every_lab_has_params_file_and_check():
    """Every lab has a parameter-set file and a results check: nothing runs unchecked."""
    for nb in LABS:
        assert (PARAMS_DIR / f"{nb.stem}.yaml").is_file(), f"missing tests/params/{nb.stem}.yaml"
        assert nb.stem in CHECKS, f"no results check for {nb.stem} in tests/results_checks.py"


def execute_lab(notebook: Path, params: dict, tmp_path: Path) -> tuple[runner.LabRun, Path, Path]:
    """Run the lab under papermill with ``params`` (its cleanup cell twice), in ``tmp_path``.

    The parameter names are checked against the lab's parameters cell first. Returns the run,
    the executed notebook and the results folder, for :func:`check_executed_lab`.
    """
    declared = pm.inspect_notebook(str(notebook))
    unknown = set(params) - set(declared)
    assert not unknown, f"{notebook.stem}: unknown parameters {sorted(unknown)}; declared {sorted(declared)}"
    out = tmp_path / "results"
    executed = tmp_path / "executed" / notebook.name
    executed.parent.mkdir()
    run = runner.run_lab(
        with_cleanup_twice(notebook, tmp_path / "input"),
        parameters={**isolated_dirs(declared, tmp_path), **params, "OUTPUT_DIR": str(out)},
        output_notebook=executed,
    )
    return run, executed, out


def check_executed_lab(run: runner.LabRun, executed: Path, out: Path, notebook: Path,
                       params: dict) -> dict:
    """What every run of a lab must show, whatever the backend; returns its results dict.

    It ran to the end, the cleanup ran a second time, each picture promised is shown, every
    check cell passed, and its results JSON passes the lab's :data:`CHECKS` function.
    """
    assert run.status == "ok", run.error  # includes the cleanup cell's second run
    again = [c for c in nbformat.read(executed, as_version=4).cells
             if CLEANUP_AGAIN_TAG in c.metadata.get("tags", [])]
    assert len(again) == 1 and again[0].execution_count is not None, "the cleanup did not run twice"
    assert_pictures_shown(executed)
    assert_every_check_passed(executed, notebook)
    results = json.loads((out / f"{notebook.stem}.json").read_text())
    assert results["lab"] == notebook.stem
    CHECKS[notebook.stem](results, params)
    return results


@pytest.mark.notebook
@pytest.mark.parametrize(("notebook", "set_name", "params"), list(_cases()))
def test_lab_runs_with_parameter_set(notebook: Path, set_name: str, params, tmp_path: Path):
    """The lab executes headless with this parameter set and its results pass the check."""
    assert isinstance(params, dict), f"tests/params/{notebook.stem}.yaml: set {set_name!r} must be a mapping"
    check_executed_lab(*execute_lab(notebook, params, tmp_path), notebook, params)
