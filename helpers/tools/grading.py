"""Grading: student copies of the labs, and a per-exercise grade of a submitted notebook.

Every lab ends with a "Your turn" section in nbgrader style:

* an exercise cell tagged ``solution`` holds the instructor's answer between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* one or more check cells tagged ``check`` follow it: a one-line docstring, then asserts.

``make student`` (:func:`write_student_copies`) turns the instructor copies in ``labs/`` into
student copies under ``build/student/``: nbgrader's own preprocessors clear the solutions
(``ClearSolutions`` leaves ``raise NotImplementedError()``), make the check cells read-only
(``LockCells``) and drop outputs (``ClearOutput``).

``make grade NB=path`` (:func:`grade`) runs nbval (``pytest --nbval-lax``) on the submission,
reads nbval's per-cell results from pytest's JUnit XML report, maps each check cell to its
exercise and prints a pass/fail table with a score. nbval keeps executing after a failing
cell, so an unsolved exercise does not stop the later ones from being graded.

Usage::

    python -m helpers.grading student [--labs 00 03] [--out build/student] [--keep-existing]
    python -m helpers.grading grade path/to/submission.ipynb [--json report.json] [--fail-under 100]
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses the report pytest just wrote, nothing else
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from helpers import paths
from helpers.errors import LabError, cli_errors

#: Tag of an exercise cell (holds ``### BEGIN SOLUTION`` ... ``### END SOLUTION``).
SOLUTION_TAG = "solution"
#: Tag of a check cell (one-line docstring, then asserts).
CHECK_TAG = "check"
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
#: nbgrader's cell-metadata schema version the student copies carry.
NBGRADER_SCHEMA = 3
# Terminal colour codes, raw or as JUnit XML escapes them ("#x1B[31m").
_ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*[A-Za-z]")
#: The longest failure message a report keeps (a check's "expected ..., found ..." fits).
MESSAGE_CHARS = 300
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit))\b:?(.*)$")


class GradingError(LabError):
    """A notebook cannot be turned into a student copy or graded (the message says why)."""


@dataclass
class Exercise:
    """One exercise: its solution cells and the check cells that grade it.

    Attributes:
        number: 1-based position among the notebook's exercises.
        solution_cells: indices (in ``nb.cells``) of the exercise cells.
        check_cells: indices (in ``nb.cells``) of the check cells grading it.
        title: the first check cell's docstring (what the exercise is checked for).
    """

    number: int
    solution_cells: list[int] = field(default_factory=list)
    check_cells: list[int] = field(default_factory=list)
    title: str = ""


@dataclass
class ExerciseResult:
    """The grade of one exercise: passed only if every one of its check cells passed."""

    number: int
    title: str
    passed: bool
    message: str = ""  # why the first failing check failed (exception line), empty on a pass


@dataclass
class GradeReport:
    """A graded notebook: per-exercise results plus any other cell that failed."""

    notebook: str
    exercises: list[ExerciseResult]
    other_failures: list[str]
    seconds: float

    @property
    def score(self) -> int:
        """Number of exercises passed."""
        return sum(ex.passed for ex in self.exercises)

    @property
    def total(self) -> int:
        """Number of exercises graded."""
        return len(self.exercises)

    @property
    def percent(self) -> float:
        """Score as a percentage of the exercises (0 when there is none)."""
        return 100.0 * self.score / self.total if self.total else 0.0

    def table(self, title_width: int = 44, result_width: int = 64) -> str:
        """The pass/fail table ``make grade`` prints, ending with the score line.

        Long titles and failure messages wrap inside their columns rather than being cut.
        """
        width = min(max([len(ex.title) for ex in self.exercises] + [8]), title_width)
        rule = "-" * (width + 6 + result_width)
        lines = [f"{'#':>2}  {'exercise':<{width}}  result", rule]
        for ex in self.exercises:
            title = textwrap.wrap(ex.title, width, break_on_hyphens=False) or [""]
            result = ["PASS"] if ex.passed else textwrap.wrap(f"FAIL  {ex.message}", result_width,
                                                               break_on_hyphens=False,
                                                               subsequent_indent="      ")
            for k in range(max(len(title), len(result))):
                number = f"{ex.number:>2}" if k == 0 else "  "
                left = title[k] if k < len(title) else ""
                right = result[k] if k < len(result) else ""
                lines.append(f"{number}  {left:<{width}}  {right}".rstrip())
        lines.append(rule)
        lines.append(f"score: {self.score}/{self.total} ({self.percent:.0f}%)")
        if self.other_failures:
            lines.append("other cells that failed (they may explain failing checks):")
            lines += [f"  {line}" for line in self.other_failures]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the report (for CI artefacts)."""
        return {"notebook": self.notebook, "score": self.score, "total": self.total,
                "percent": round(self.percent, 1), "seconds": round(self.seconds, 2),
                "exercises": [asdict(ex) for ex in self.exercises],
                "other_failures": self.other_failures}


# --------------------------------------------------------------------------- reading


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read_notebook(path: str | os.PathLike[str]) -> nbformat.NotebookNode:
    """Read a notebook (nbformat 4), with a clear error when it is missing or not a notebook."""
    path = paths.resolve(path)
    if not path.is_file():
        raise GradingError(f"no notebook at {path}: pass the path of a .ipynb file "
                           "(e.g. make grade NB=build/student/00_setup.ipynb)")
    try:
        return nbformat.read(path, as_version=4)
    except (ValueError, KeyError, nbformat.reader.NotJSONError) as exc:
        raise GradingError(f"{path} is not a readable Jupyter notebook ({exc}); "
                           "submit the .ipynb file saved by JupyterLab") from exc


def check_title(source: str) -> str:
    """The one-line docstring a check cell opens with (its first line if it has none)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        body = []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0].value.value.strip().splitlines()[0]
    first = source.strip().splitlines()
    return first[0] if first else "(empty check cell)"


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """Group the notebook's exercise and check cells into exercises, in order.

    A solution cell that follows a check cell starts a new exercise; check cells belong to
    the exercise above them. Several solution cells (or checks) in a row form one exercise.

    Raises:
        GradingError: the notebook has no check cell, or a check cell comes before any
            exercise cell (so it grades nothing).
    """
    found: list[Exercise] = []
    current: Exercise | None = None
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if cell.cell_type != "code":
            continue
        if SOLUTION_TAG in tags:
            if current is None or current.check_cells:
                current = Exercise(number=len(found) + 1)
                found.append(current)
            current.solution_cells.append(i)
        if CHECK_TAG in tags:
            if current is None:
                raise GradingError(f"cell {i} is a check cell (tag `check`) but no exercise cell "
                                   "(tag `solution`) comes before it: tag the exercise it grades")
            current.check_cells.append(i)
            if not current.title:
                current.title = check_title(cell.source)
    graded = [ex for ex in found if ex.check_cells]
    if not graded:
        raise GradingError("the notebook has no check cell (tag `check`) after an exercise cell "
                           "(tag `solution`): there is nothing to grade")
    return graded


# --------------------------------------------------------------------------- student copies


def mark_for_nbgrader(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Translate the kit's tags into nbgrader cell metadata (a copy; ``nb`` is not changed).

    Exercise cells become nbgrader "solution" cells and check cells "autograder tests" worth
    one point, locked, so nbgrader's preprocessors (and nbgrader itself) treat them as such.
    """
    nb = copy.deepcopy(nb)
    for ex in exercises(nb):
        for k, i in enumerate(ex.solution_cells, 1):
            nb.cells[i].metadata["nbgrader"] = {
                "grade": False, "grade_id": f"exercise-{ex.number}-solution-{k}", "locked": False,
                "schema_version": NBGRADER_SCHEMA, "solution": True, "task": False}
        for k, i in enumerate(ex.check_cells, 1):
            nb.cells[i].metadata["nbgrader"] = {
                "grade": True, "grade_id": f"exercise-{ex.number}-check-{k}", "locked": True,
                "points": 1, "schema_version": NBGRADER_SCHEMA, "solution": False, "task": False}
    return nb


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the student copy of an instructor notebook.

    nbgrader's preprocessors do the work: ``ClearSolutions`` replaces every
    ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region with ``raise NotImplementedError()``,
    ``LockCells`` marks check cells read-only (``editable``/``deletable`` false) and
    ``ClearOutput`` drops outputs. Tags stay, so :func:`grade` finds the cells again.

    Raises:
        GradingError: nbgrader is not installed, or a solution region is malformed.
    """
    try:
        from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells
    except ImportError as exc:
        raise GradingError("nbgrader is not installed (it is in the `dev` extra): run `make setup`, "
                           "or `pip install -e .[dev]`") from exc
    marked = mark_for_nbgrader(nb)
    resources: dict = {}
    try:
        for pre in (ClearSolutions(), LockCells(), ClearOutput()):
            marked, resources = pre.preprocess(marked, resources)
    except RuntimeError as exc:
        # nbgrader raises RuntimeError for nested or unterminated solution regions.
        raise GradingError(f"cannot clear the solutions: {exc}; every exercise cell needs one "
                           f"{BEGIN_SOLUTION!r} line and one {END_SOLUTION!r} line") from exc
    for cell in marked.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
    return marked


def write_student_copies(selected: list[str] | None = None,
                         out_dir: str | os.PathLike[str] | None = None,
                         keep_existing: bool = False) -> list[Path]:
    """Write the student copy of each lab (``labs/NN_*.ipynb``) into ``out_dir``.

    Args:
        selected: lab prefixes to include (e.g. ``["00", "03"]``); default every lab.
        out_dir: destination folder; default ``build/student``. Relative paths resolve
            against the repository root.
        keep_existing: leave a copy that is already there untouched (``make jupyter``: it
            holds the learner's own work) and write only the missing ones.

    Returns:
        The paths written, in lab order (without the copies kept).
    """
    from helpers.tools import runner

    labs = runner.lab_notebooks(selected)
    if not labs:
        raise GradingError(f"no lab matches {selected} in {paths.labs_dir()}")
    out = paths.resolve(out_dir) if out_dir is not None else paths.build_dir() / "student"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for lab in labs:
        target = out / lab.name
        if keep_existing and target.exists():
            continue
        nbformat.write(student_copy(read_notebook(lab)), target)
        written.append(target)
    return written


# --------------------------------------------------------------------------- grading


def restore_check_cells(nb: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> list[int]:
    """Put the instructor's check cells back into a submission (check cells are read-only).

    JupyterLab's read-only flag is advice, not protection, so the grader grades with the
    reference's checks, as nbgrader's autograder does.

    Returns:
        Indices (in ``nb.cells``) of check cells whose source had been changed.

    Raises:
        GradingError: the submission does not have the same number of check cells.
    """
    mine = [i for i, c in enumerate(nb.cells) if CHECK_TAG in _tags(c)]
    theirs = [c for c in reference.cells if CHECK_TAG in _tags(c)]
    if len(mine) != len(theirs):
        raise GradingError(f"the submission has {len(mine)} check cells, the lab has {len(theirs)}: "
                           "check cells must stay in place; start again from the student copy "
                           "(make student) and move your answers over")
    changed = []
    for i, ref in zip(mine, theirs, strict=True):
        if nb.cells[i].source != ref.source:
            changed.append(i)
            nb.cells[i].source = ref.source
    return changed


def _prepare(nb: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """Clear outputs and inject ``parameters`` after the parameters cell (papermill's way)."""
    from nbconvert.preprocessors import ClearOutputPreprocessor
    from papermill.parameterize import parameterize_notebook

    nb, _ = ClearOutputPreprocessor().preprocess(copy.deepcopy(nb), {})
    if parameters:
        if not any("parameters" in _tags(c) for c in nb.cells):
            raise GradingError("the notebook has no cell tagged `parameters`, so OUTPUT_DIR cannot be "
                               "redirected: restore the parameters cell from the student copy")
        for cell in nb.cells:
            cell.metadata.setdefault("tags", [])  # papermill reads every cell's tags...
        nb.metadata.setdefault("papermill", {})  # ...and records what it injected here
        nb = parameterize_notebook(nb, parameters, comment="Parameters injected by the grader")
    return nb


def _failure_message(text: str, fallback: str) -> str:
    """The exception line (``NameError: name 'x' is not defined``) from nbval's failure text."""
    lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
    hits = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    message = (hits[-1] if hits else fallback).rstrip(": ")  # "NotImplementedError: " has no text
    return message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 3] + "..."


def parse_junit(report: Path) -> dict[int, tuple[str, str]]:
    """Read nbval's per-cell outcomes from pytest's JUnit XML.

    Returns:
        ``{code cell number: (outcome, message)}`` with outcome ``passed``, ``failed`` or
        ``skipped``; nbval names its items ``Cell N``, N counting code cells from 0.
    """
    outcomes: dict[int, tuple[str, str]] = {}
    root = ET.parse(report).getroot()  # noqa: S314 - our own pytest run's report
    for case in root.iter("testcase"):
        match = re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        if not match:
            continue
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = _failure_message(child.text or "", child.get("message", child.tag))
            elif child.tag == "skipped":
                outcome = "skipped"
        outcomes[int(match.group(1))] = (outcome, message)
    return outcomes


def run_nbval(notebook: Path, workdir: Path, cell_timeout: int = 300) -> dict[int, tuple[str, str]]:
    """Run ``pytest --nbval-lax`` on ``notebook`` in ``workdir``; return the per-cell outcomes.

    pytest runs with its own minimal config in ``workdir``, so neither the kit's nor the
    submitter's pytest settings change how a submission is graded.
    """
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\n")
    report = workdir / "nbval-report.xml"
    cmd = [sys.executable, "-m", "pytest", str(notebook), "-c", str(ini), "--rootdir", str(workdir),
           "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
           "--nbval-cell-timeout", str(cell_timeout), "--junitxml", str(report), "-q", "--no-header"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    # pytest: 0 all passed, 1 some failed; anything else means nothing was graded.
    if proc.returncode not in (0, 1) or not report.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise GradingError(f"nbval could not run {notebook.name} (pytest exit {proc.returncode}):\n{tail}")
    return parse_junit(report)


def grade(notebook: str | os.PathLike[str], *, reference: str | os.PathLike[str] | None = "auto",
          parameters: dict | None = None, cell_timeout: int = 300) -> GradeReport:
    """Grade a submitted notebook with nbval and return a per-exercise :class:`GradeReport`.

    Args:
        notebook: the submission (a student copy with answers filled in).
        reference: the instructor copy whose check cells are graded. ``"auto"`` uses
            ``labs/<same file name>`` when it exists; ``None`` grades the submission's own
            check cells as they are.
        parameters: lab parameters to inject (papermill-style); ``OUTPUT_DIR`` defaults to a
            temporary folder so grading never writes into ``build/results``.
        cell_timeout: seconds nbval allows each cell.

    Returns:
        The report; an exercise passes when every check cell of it ran without error.
    """
    start = time.perf_counter()
    path = paths.resolve(notebook)
    nb = read_notebook(path)
    if reference == "auto":
        candidate = paths.labs_dir() / path.name
        reference = candidate if candidate.is_file() and candidate.resolve() != path.resolve() else None
    tampered = restore_check_cells(nb, read_notebook(reference)) if reference is not None else []
    with tempfile.TemporaryDirectory(prefix="kflabs-grade-") as tmp:
        work = Path(tmp)
        from papermill import inspect_notebook

        from helpers.tools.runner import isolated_dirs

        scratch = isolated_dirs(inspect_notebook(str(path)), work)  # e.g. lab 06's WORK_DIR
        prepared = _prepare(nb, {**scratch, "OUTPUT_DIR": str(work / "results"), **(parameters or {})})
        graded = work / path.name
        nbformat.write(prepared, graded)
        outcomes = run_nbval(graded, work, cell_timeout)
    code_number = {}
    for i, cell in enumerate(prepared.cells):
        if cell.cell_type == "code":
            code_number[i] = len(code_number)
    results = []
    checks = set()
    for ex in exercises(prepared):
        passed, message = True, ""
        for i in ex.check_cells:
            checks.add(i)
            outcome, why = outcomes.get(code_number[i], ("failed", "not run (nbval stopped early)"))
            if outcome != "passed" and passed:
                passed, message = False, why or outcome
        answer = [outcomes.get(code_number[i], ("failed", ""))[1] for i in ex.solution_cells
                  if outcomes.get(code_number[i], ("failed", ""))[0] == "failed"]
        if not passed and answer:
            # The answer cell itself failed: that is the more useful thing to tell a student.
            message = f"answer cell failed: {answer[0]}"
        results.append(ExerciseResult(ex.number, ex.title, passed, message))
    exercise_cells = checks | {i for ex in exercises(prepared) for i in ex.solution_cells}
    others = [f"cell {i}: {outcomes[n][1]}" for i, n in code_number.items()
              if i not in exercise_cells and outcomes.get(n, ("passed", ""))[0] == "failed"]
    if tampered:
        others.insert(0, f"{len(tampered)} check cell(s) had been edited; graded with the lab's own checks")
    return GradeReport(str(path), results, others, time.perf_counter() - start)


# --------------------------------------------------------------------------- command line


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.grading student|grade``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m helpers.grading",
                                     description="Student copies and grading of the labs.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write student copies (solutions cleared)")
    student.add_argument("--labs", nargs="*", default=None, help="lab prefixes, e.g. 00 03")
    student.add_argument("--out", default="build/student", help="output folder (default build/student)")
    student.add_argument("--keep-existing", action="store_true",
                         help="write only the missing copies; never overwrite one (it may hold answers)")
    grader = sub.add_parser("grade", help="grade a submitted notebook with nbval")
    grader.add_argument("notebook", nargs="?", default="", help="the submitted .ipynb")
    grader.add_argument("--json", default=None, help="also write the report as JSON here")
    grader.add_argument("--fail-under", type=float, default=0.0,
                        help="exit 1 when the score (percent) is below this (default 0: never)")
    grader.add_argument("--no-reference", action="store_true",
                        help="grade the submission's own check cells, not those of labs/<name>")
    args = parser.parse_args(argv)
    if args.command == "grade" and not 0 <= args.fail_under <= 100:
        parser.error(f"--fail-under is a percentage of the exercises (0-100), got {args.fail_under:g}")
    if args.command == "student":
        for path in write_student_copies(args.labs, args.out, keep_existing=args.keep_existing):
            print(f"student copy: {path}")
        return 0
    if not args.notebook:
        raise GradingError("which notebook? usage: make grade NB=path/to/submission.ipynb")
    report = grade(Path(args.notebook).resolve(), reference=None if args.no_reference else "auto")
    print(f"graded {report.notebook} with nbval in {report.seconds:.1f} s")
    print(report.table())
    if args.json:
        out = paths.resolve(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 1 if report.percent < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
