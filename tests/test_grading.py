"""Grading: student copies (nbgrader's preprocessors) and the nbval grade report.

The per-lab tests are the nbgrader validation rules, applied to every lab present:
the instructor copy passes every check (asserted on its papermill run, which already
executes it), the student copy fails every check (the inverted validation: a check that
passes without an answer checks nothing), and a partly solved notebook scores exactly the
exercises that were solved.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers.tools import grading
from helpers.tools.grading import GradingError
from tests.conftest import LABS, ROOT, lab_ids


def _code(source: str, *tags: str):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _toy_notebook() -> nbformat.NotebookNode:
    """Three exercises; the second depends on nothing, the third reuses a set-up variable."""
    nb = new_notebook(cells=[
        new_markdown_cell("## Parameters"),
        _code('OUTPUT_DIR: str = "build/results"  # where results go', "parameters"),
        _code("base = 10"),
        _code("### BEGIN SOLUTION\nanswer_one = 1\n### END SOLUTION", "solution"),
        _code('"""Check that answer_one is one"""\nassert answer_one == 1', "check"),
        _code("### BEGIN SOLUTION\nanswer_two = 2\n### END SOLUTION", "solution"),
        _code('"""Check that answer_two is two"""\nassert answer_two == 2', "check"),
        _code('"""Check that answer_two is even"""\nassert answer_two % 2 == 0', "check"),
        _code("prefix = 3\n### BEGIN SOLUTION\nanswer_three = base + prefix\n### END SOLUTION", "solution"),
        _code('"""Check that answer_three adds base and prefix"""\nassert answer_three == 13', "check"),
        _code("print('done')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


# --------------------------------------------------------------------------- no kernel


def test_exercises_group_checks_under_their_solution():
    """Check cells belong to the exercise above them; titles come from the docstring."""
    found = grading.exercises(_toy_notebook())
    assert [(ex.solution_cells, ex.check_cells) for ex in found] == [([3], [4]), ([5], [6, 7]), ([8], [9])]
    assert [ex.title for ex in found] == ["Check that answer_one is one", "Check that answer_two is two",
                                          "Check that answer_three adds base and prefix"]


def test_check_before_any_exercise_is_an_error():
    """A check cell grading nothing is a lab bug the grader names."""
    nb = _toy_notebook()
    nb.cells.insert(2, _code('"""Check that nothing"""\nassert True', "check"))
    with pytest.raises(GradingError, match="no exercise cell"):
        grading.exercises(nb)


def test_notebook_without_checks_is_an_error():
    """Grading a notebook with nothing to grade says so."""
    nb = new_notebook(cells=[_code("x = 1")])
    with pytest.raises(GradingError, match="nothing to grade"):
        grading.exercises(nb)


def test_student_copy_clears_solutions_and_locks_checks():
    """nbgrader's ClearSolutions/LockCells: answers gone, code around them kept, checks read-only."""
    nb = _toy_notebook()
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[3].execution_count = 4
    student = grading.student_copy(nb)
    assert len(student.cells) == len(nb.cells)
    for i in (3, 5, 8):
        assert "BEGIN SOLUTION" not in student.cells[i].source
        assert "raise NotImplementedError()" in student.cells[i].source
        assert student.cells[i].metadata["nbgrader"]["solution"] is True
        assert student.cells[i].metadata["tags"] == ["solution"]
    assert student.cells[8].source.startswith("prefix = 3\n"), "code outside the markers is kept"
    assert "answer_one" not in student.cells[3].source
    for i in (4, 6, 7, 9):
        meta = student.cells[i].metadata
        assert meta["editable"] is False and meta["deletable"] is False
        assert meta["nbgrader"]["grade"] is True and meta["nbgrader"]["points"] == 1
        assert student.cells[i].source == nb.cells[i].source, "checks stay as written"
    assert student.cells[3].outputs == [] and student.cells[3].execution_count is None
    assert "editable" not in student.cells[2].metadata, "ordinary cells stay editable"
    assert "BEGIN SOLUTION" in nb.cells[3].source, "the instructor copy is not modified"


def test_student_copy_carries_valid_nbgrader_metadata():
    """nbgrader's own validator accepts the cells' metadata (schema 3), so nbgrader can take over."""
    from nbgrader.nbgraderformat import MetadataValidator

    student = grading.student_copy(_toy_notebook())
    MetadataValidator().validate_nb(student)  # raises ValidationError on a bad cell
    ids = [c.metadata["nbgrader"]["grade_id"] for c in student.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)) == 7


def test_unterminated_solution_is_a_clear_error():
    """A solution region without its END line is refused with the fix."""
    nb = _toy_notebook()
    nb.cells[3].source = "### BEGIN SOLUTION\nanswer_one = 1"
    with pytest.raises(GradingError, match="END SOLUTION"):
        grading.student_copy(nb)


def test_restore_check_cells_undoes_edits_and_counts_them():
    """An edited check cell is graded with the lab's own source."""
    reference = _toy_notebook()
    submission = copy.deepcopy(reference)
    submission.cells[6].source = '"""Check that answer_two is two"""\nassert True'
    assert grading.restore_check_cells(submission, reference) == [6]
    assert submission.cells[6].source == reference.cells[6].source
    del submission.cells[6]
    with pytest.raises(GradingError, match="check cells must stay"):
        grading.restore_check_cells(submission, reference)


def test_parse_junit_reads_nbval_cells(tmp_path: Path):
    """Per-cell outcomes and the exception line come out of pytest's JUnit report."""
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="x.ipynb" name="Cell 0" time="0.1"/>'
        '<testcase classname="x.ipynb" name="Cell 1" time="0.1"><failure message="failed">'
        "#x1B[94mTraceback:#x1B[0m\n#x1B[31mNameError#x1B[39m: name 'a' is not defined\n"
        "</failure></testcase>"
        '<testcase classname="x.ipynb" name="Cell 2"><skipped message="skip"/></testcase>'
        "</testsuite></testsuites>")
    assert grading.parse_junit(report) == {
        0: ("passed", ""), 1: ("failed", "NameError: name 'a' is not defined"), 2: ("skipped", "")}


def test_grade_cli_without_notebook_exits_2(capsys):
    """`make grade` without NB= tells the user what to pass."""
    with pytest.raises(SystemExit) as exc:
        grading.main(["grade"])
    assert exc.value.code == 2
    assert "make grade NB=" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["150", "-5"])
def test_fail_under_outside_0_100_is_refused(value, capsys):
    """--fail-under is a percentage: 150 could never be met, so it is refused, not accepted."""
    with pytest.raises(SystemExit) as info:
        grading.main(["grade", "x.ipynb", "--fail-under", value])
    assert info.value.code == 2
    assert "percentage of the exercises (0-100)" in capsys.readouterr().err


def test_grade_missing_file_names_it(tmp_path: Path):
    """A wrong path is named in the error."""
    with pytest.raises(GradingError, match="no notebook at"):
        grading.grade(tmp_path / "nope.ipynb")


def test_report_table_and_score():
    """The table lists every exercise and ends with the score."""
    report = grading.GradeReport("x.ipynb", [
        grading.ExerciseResult(1, "Check one", True),
        grading.ExerciseResult(2, "Check two", False, "AssertionError"),
    ], [], 1.0)
    text = report.table()
    assert "PASS" in text and "FAIL  AssertionError" in text
    assert text.splitlines()[-1] == "score: 1/2 (50%)"
    assert report.to_dict()["percent"] == 50.0


def test_report_table_wraps_long_titles_and_messages():
    """A long title or message wraps inside its column: no word of it is cut off."""
    title = "Check that the ONNX InferenceService is valid and served by Triton from its own folder"
    message = ("AssertionError: expected an onnx model on KServe's Triton runtime; "
               "found format 'xgboost', runtime 'kserve-xgbserver'")
    report = grading.GradeReport("x.ipynb", [grading.ExerciseResult(1, title, False, message)], [], 1.0)
    rows = report.table().splitlines()[2:-2]
    assert len(rows) > 1 and rows[0].startswith(" 1  ")
    words = " ".join(rows).split()
    assert all(word in words for word in title.split() + message.split())
    assert max(len(row) for row in rows) <= 2 + 2 + 44 + 2 + 64


# --------------------------------------------------------------------------- with a kernel


@pytest.mark.notebook
def test_grade_toy_notebook_keeps_going_after_a_failure(tmp_path: Path):
    """An unanswered exercise fails alone: the exercises after it are still graded."""
    student = grading.student_copy(_toy_notebook())
    student.cells[8].source = _toy_notebook().cells[8].source  # answer only the third
    path = tmp_path / "toy.ipynb"
    nbformat.write(student, path)
    report = grading.grade(path, reference=None)
    assert [ex.passed for ex in report.exercises] == [False, False, True]
    assert report.exercises[0].message == "answer cell failed: NotImplementedError"
    assert (report.score, report.total) == (1, 3)
    assert report.other_failures == []


@pytest.mark.notebook
def test_wrong_answer_reports_what_was_expected_and_found(tmp_path: Path):
    """A wrong answer fails with the check's own message, not a bare AssertionError."""
    reference = _toy_notebook()
    reference.cells[4].source = ('"""Check that answer_one is one"""\n'
                                 'assert answer_one == 1, f"expected the first count; found {answer_one!r}"')
    ref_path = tmp_path / "ref.ipynb"
    nbformat.write(reference, ref_path)
    submission = copy.deepcopy(reference)
    submission.cells[3].source = "answer_one = 7"
    sub_path = tmp_path / "sub.ipynb"
    nbformat.write(submission, sub_path)
    report = grading.grade(sub_path, reference=ref_path)
    assert report.exercises[0].message == "AssertionError: expected the first count; found 7"
    assert "found 7" in report.table()


@pytest.mark.notebook
def test_grade_uses_reference_checks_not_edited_ones(tmp_path: Path):
    """Weakening a check in the submission does not earn the point."""
    reference = _toy_notebook()
    ref_path = tmp_path / "ref.ipynb"
    nbformat.write(reference, ref_path)
    submission = grading.student_copy(reference)
    submission.cells[4].source = '"""Check that answer_one is one"""\nassert True'
    sub_path = tmp_path / "sub.ipynb"
    nbformat.write(submission, sub_path)
    report = grading.grade(sub_path, reference=ref_path)
    assert report.score == 0
    assert "edited" in report.other_failures[0]


# --------------------------------------------------------------------------- every lab


def _solved_positions(n: int) -> list[int]:
    """Exercises a 'partly solved' submission answers: the 1st, 3rd, ... (never all of them)."""
    return list(range(0, n, 2)) if n > 1 else []


@pytest.mark.notebook
@pytest.mark.parametrize("lab", LABS, ids=lab_ids(LABS))
class TestLabGrading:
    # That the instructor copy passes every check is asserted on the papermill run every lab
    # already gets (tests/test_labs_papermill.py, assert_every_check_passed): not run again here.
    def test_student_copy_fails_every_check(self, lab: Path, tmp_path: Path):
        """Inverted validation: with the answers cleared, every check fails."""
        path = tmp_path / lab.name
        nbformat.write(grading.student_copy(grading.read_notebook(lab)), path)
        report = grading.grade(path)
        passing = [ex.title for ex in report.exercises if ex.passed]
        assert not passing, f"{lab.stem}: these checks pass without an answer: {passing}"
        assert report.total >= 1

    def test_partly_solved_scores_exactly_the_solved_exercises(self, lab: Path, tmp_path: Path):
        """Answer every other exercise: exactly those pass, whatever fails before them."""
        instructor = grading.read_notebook(lab)
        found = grading.exercises(instructor)
        solved = _solved_positions(len(found))
        if not solved:
            pytest.skip(f"{lab.stem} has one exercise: it cannot be partly solved")
        student = grading.student_copy(instructor)
        for pos in solved:
            for i in found[pos].solution_cells:
                student.cells[i].source = instructor.cells[i].source
        path = tmp_path / lab.name
        nbformat.write(student, path)
        report = grading.grade(path)
        assert [ex.passed for ex in report.exercises] == [i in solved for i in range(len(found))]
        assert report.score == len(solved)


# --------------------------------------------------------------------------- the learner's JupyterLab


def test_keep_existing_never_overwrites_a_learners_copy(tmp_path: Path):
    """`make jupyter` builds the missing student copies and leaves the learner's work alone."""
    mine = tmp_path / LABS[0].name
    mine.write_text("my answers")
    written = grading.write_student_copies(out_dir=tmp_path, keep_existing=True)
    assert mine.read_text() == "my answers"
    assert mine not in written and len(written) == len(LABS) - 1
    assert all("### BEGIN SOLUTION" not in p.read_text() for p in written)


def _make_dry_run(*args: str) -> str:
    return subprocess.run(["make", "-n", "jupyter", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_make_jupyter_opens_student_copies_and_instructor_copies_on_a_flag():
    """Learners land on their own copies, with the learner config; INSTRUCTOR=1 opens labs/."""
    learner = _make_dry_run()
    assert "helpers.grading student --keep-existing" in learner
    assert f'JUPYTER_CONFIG_PATH="{ROOT}/jupyter-config/learner"' in learner
    assert "--notebook-dir=labs" not in learner and "--ip=127.0.0.1" in learner
    instructor = _make_dry_run("INSTRUCTOR=1")
    assert "--notebook-dir=labs" in instructor and "JUPYTER_CONFIG_PATH" not in instructor
    assert "make jupyter INSTRUCTOR=1" in (ROOT / "README.md").read_text()


def test_learner_config_switches_off_everything_nbgrader_installs():
    """Every nbgrader server extension the install enables, and its JupyterLab extension, are off."""
    server_d = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    installed = json.loads((server_d / "nbgrader.json").read_text())
    enabled = {name for name, on in installed["ServerApp"]["jpserver_extensions"].items() if on}
    learner = ROOT / "jupyter-config" / "learner"
    config = json.loads((learner / "jupyter_server_config.d" / "kflabs-learner.json").read_text())
    switched = config["ServerApp"]["jpserver_extensions"]
    assert enabled and all(switched.get(name) is False for name in enabled), enabled - set(switched)
    labext = json.loads((Path(sys.prefix) / "share/jupyter/labextensions/@jupyter/nbgrader/package.json")
                        .read_text())["name"]
    page = json.loads((learner / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"].get(labext) is True
