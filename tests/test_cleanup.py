"""Each lab's cleanup step is safe to run twice: run the lab, then its last code cell again."""

from __future__ import annotations

import pytest
from nbclient import NotebookClient
from papermill import inspect_notebook
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from helpers.tools.runner import isolated_dirs
from tests.conftest import LABS, ROOT, lab_ids


@pytest.mark.notebook
@pytest.mark.parametrize("path", LABS, ids=lab_ids(LABS))
def test_cleanup_runs_twice(path, tmp_path):
    """Executing the final cleanup cell a second time raises nothing."""
    nb = load_notebook_node(str(path))  # as papermill loads it (adds empty tag lists)
    params = {**isolated_dirs(inspect_notebook(str(path)), tmp_path), "OUTPUT_DIR": str(tmp_path)}
    nb = parameterize_notebook(nb, params, kernel_name="python3")
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(ROOT)}})
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with client.setup_kernel():
        for index in code_cells:
            client.execute_cell(nb.cells[index], index)
        last = code_cells[-1]
        client.execute_cell(nb.cells[last], last)  # raises CellExecutionError if not idempotent
    assert (tmp_path / f"{path.stem}.json").is_file()
