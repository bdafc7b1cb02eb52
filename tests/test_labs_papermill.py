"""Run every lab with papermill for each named parameter set in tests/params/<lab>.yaml.

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

from helpers.tools import runner
from helpers.tools.runner import isolated_dirs
from tests.conftest import LABS, ROOT
from tests.results_checks import CHECKS

PARAMS_DIR = ROOT / "tests" / "params"
#: A call that draws a picture: a ``plot_*`` helper or ``plots.<kind>(...)``.
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


@pytest.mark.notebook
@pytest.mark.parametrize(("notebook", "set_name", "params"), list(_cases()))
def test_lab_runs_with_parameter_set(notebook: Path, set_name: str, params, tmp_path: Path):
    """The lab executes headless with this parameter set and its results pass the check."""
    assert isinstance(params, dict), f"tests/params/{notebook.stem}.yaml: set {set_name!r} must be a mapping"
    declared = pm.inspect_notebook(str(notebook))
    unknown = set(params) - set(declared)
    assert not unknown, f"{notebook.stem}: unknown parameters {sorted(unknown)}; declared {sorted(declared)}"
    out = tmp_path / "results"
    run = runner.run_lab(
        notebook,
        parameters={**isolated_dirs(declared, tmp_path), **params, "OUTPUT_DIR": str(out)},
        output_notebook=tmp_path / notebook.name,
    )
    assert run.status == "ok", run.error
    assert_pictures_shown(tmp_path / notebook.name)
    results = json.loads((out / f"{notebook.stem}.json").read_text())
    assert results["lab"] == notebook.stem
    CHECKS[notebook.stem](results, params)
