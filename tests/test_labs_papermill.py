"""Run every lab with papermill for each named parameter set in tests/params/<lab>.yaml.

Parameter names are checked against ``papermill.inspect_notebook`` first, because papermill
only *warns* about unknown parameters. Each run's results JSON is then checked by the
lab's function in :mod:`tests.results_checks`.
"""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest
import yaml

from helpers.tools import runner
from helpers.tools.runner import isolated_dirs
from tests.conftest import LABS, ROOT
from tests.results_checks import CHECKS

PARAMS_DIR = ROOT / "tests" / "params"


def _cases():
    for nb in LABS:
        spec = PARAMS_DIR / f"{nb.stem}.yaml"
        sets = yaml.safe_load(spec.read_text()) if spec.is_file() else None
        for name, params in (sets or {"<missing params file>": None}).items():
            yield pytest.param(nb, name, params, id=f"{nb.stem}[{name}]")


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
    results = json.loads((out / f"{notebook.stem}.json").read_text())
    assert results["lab"] == notebook.stem
    CHECKS[notebook.stem](results, params)
