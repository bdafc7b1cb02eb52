"""``make bench`` section ``e2e``: lab 06 on sim, and ``make grade`` on the lightest and heaviest lab."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from helpers import paths


def bench() -> dict:
    """``make bench`` section ``e2e``: lab 06 on sim (target <= 20 s), ``make grade`` (<= 30 s)."""
    import tempfile

    import nbformat

    from helpers.tools import grading, runner

    lab = paths.labs_dir() / "06_end_to_end.ipynb"
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kflabs-bench-e2e-") as tmp:
        run = runner.run_lab(lab, parameters={"BACKEND": "sim", "OUTPUT_DIR": str(Path(tmp) / "results")},
                             output_notebook=Path(tmp) / lab.name)
        figures["lab06_seconds"] = round(run.seconds, 2)
        figures["lab06_status"] = run.status
        figures["lab06_target_seconds"] = 20
        (Path(tmp) / "student").mkdir()
        # The lightest lab and the heaviest: make grade on an unanswered student copy of each.
        for stem in ("00_setup", "06_end_to_end"):
            student = Path(tmp) / "student" / f"{stem}.ipynb"
            nbformat.write(grading.student_copy(grading.read_notebook(paths.labs_dir() / student.name)),
                           student)
            start = time.perf_counter()
            report = grading.grade(student)
            figures[f"grade_{stem}_seconds"] = round(time.perf_counter() - start, 2)
            figures[f"grade_{stem}_score"] = f"{report.score}/{report.total}"
        figures["grade_target_seconds"] = 30
    return figures
