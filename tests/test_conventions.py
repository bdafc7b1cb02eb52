"""The lab conventions of CONVENTIONS.md, enforced on every notebook under labs/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ALL_NOTEBOOKS, LABS, lab_ids

SECTIONS = ["Aim", "Setup", "Parameters", "Your turn", "Summary", "Cleanup"]
MANDATORY_PARAMS = {"BACKEND", "SEED", "OUTPUT_DIR"}
MAX_CODE_LINES = 15
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _nb(path: Path):
    return nbformat.read(path, as_version=4)


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _headings(nb) -> list[tuple[int, str]]:
    """(cell index, title) of every level-2 markdown heading."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found += [(i, m.group(1).strip()) for m in re.finditer(r"^## (.+)$", cell.source, re.M)]
    return found


def test_there_are_labs():
    """The kit has labs: a glob that found nothing would make every check below vacuous."""
    assert len(LABS) >= 1
    assert all(nb in ALL_NOTEBOOKS for nb in LABS)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lab_ids(ALL_NOTEBOOKS))
class TestLab:
    def test_no_outputs_or_execution_counts(self, path):
        """Notebooks are committed clean (tags kept)."""
        for i, cell in enumerate(_nb(path).cells):
            if cell.cell_type == "code":
                assert not cell.outputs, f"cell {i} has outputs"
                assert cell.execution_count is None, f"cell {i} has an execution count"

    def test_committed_in_the_form_jupyterlab_saves(self, path):
        """Byte for byte what JupyterLab writes (jupyter_server saves with ``nbformat.write``), so
        saving a lab leaves git clean: the grader restores check cells from labs/."""
        text = path.read_text(encoding="utf-8")
        saved = nbformat.writes(nbformat.reads(text, as_version=nbformat.NO_CONVERT)) + "\n"
        assert text == saved, (
            f"{path.name} is not in JupyterLab's saved form: rewrite it with nbformat.write(nb, path)")

    def test_summary_makes_no_timing_claim(self, path):
        """Timings differ between machines and are never asserted (they go to `make bench`), so a
        Summary, which claims only what was asserted, says nothing is quicker or slower."""
        summary = next((c.source for c in _nb(path).cells
                        if c.cell_type == "markdown" and c.source.startswith("## Summary")), "")
        claims = re.findall(r"[^.\n]*\b(?:quick|fast|slow)\w*[^.\n]*", summary, re.I)
        assert not claims, f"{path.name}: the Summary claims timings no cell asserts: {claims}"

    def test_kernelspec_is_python3(self, path):
        """papermill and nbval start the kernel the notebook names."""
        assert _nb(path).metadata["kernelspec"]["name"] == "python3"

    def test_exactly_one_parameters_cell_with_typed_commented_knobs(self, path):
        """One `parameters` cell: UPPER_SNAKE literals, annotated, each with a trailing comment."""
        nb = _nb(path)
        tagged = [c for c in nb.cells if "parameters" in _tags(c)]
        assert len(tagged) == 1, f"{len(tagged)} cells tagged parameters"
        source = tagged[0].source
        tree = ast.parse(source)
        names = set()
        for stmt in tree.body:
            assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name), (
                f"line {stmt.lineno}: parameters are `NAME: type = literal  # comment`"
            )
            name = stmt.target.id
            assert UPPER_SNAKE.match(name), f"{name} is not UPPER_SNAKE"
            ast.literal_eval(stmt.value)  # raises if the default is not a literal
            line = source.splitlines()[stmt.lineno - 1]
            assert "#" in line.split("=", 1)[1], f"{name} has no trailing comment"
            names.add(name)
        assert MANDATORY_PARAMS <= names, f"missing {MANDATORY_PARAMS - names}"

    def test_section_order(self, path):
        """Aim -> Setup -> Parameters -> steps -> Your turn -> Summary -> Cleanup."""
        titles = [t for _, t in _headings(_nb(path))]
        positions = []
        for section in SECTIONS:
            matches = [i for i, t in enumerate(titles) if t.lower().startswith(section.lower())]
            assert matches, f"no '## {section}' heading (found {titles})"
            positions.append(matches[0])
        assert positions == sorted(positions), f"sections out of order: {titles}"
        assert titles[-1].lower().startswith("cleanup"), "Cleanup must be the last section"
        steps = titles[positions[2] + 1 : positions[3]]
        assert steps, "no step sections between Parameters and Your turn"

    def test_parameters_cell_sits_under_parameters_heading(self, path):
        """The tagged cell is in the Parameters section, and the BACKEND knob is used."""
        nb = _nb(path)
        heads = _headings(nb)
        idx = next(i for i, c in enumerate(nb.cells) if "parameters" in _tags(c))
        section = [t for i, t in heads if i < idx][-1]
        assert section.lower().startswith("parameters")

    def test_code_cells_are_short_and_import_cleanly(self, path):
        """Logic lives in helpers/: short cells, explicit imports, no sys.path or installs."""
        for i, cell in enumerate(_nb(path).cells):
            if cell.cell_type != "code":
                continue
            lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            assert len(lines) <= MAX_CODE_LINES, f"cell {i} has {len(lines)} code lines"
            assert "sys.path" not in cell.source, f"cell {i} touches sys.path"
            assert not re.search(r"import \*", cell.source), f"cell {i} star-imports"
            assert not re.search(r"^\s*[!%]\s*pip", cell.source, re.M), f"cell {i} installs packages"

    def test_writes_results_and_ends_with_cleanup(self, path):
        """The lab writes its results JSON and its last code cell is the cleanup step."""
        nb = _nb(path)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert any("write_results(" in src for src in code), "no results.write_results(...) call"
        heads = _headings(nb)
        cleanup_at = [i for i, t in heads if t.lower().startswith("cleanup")][-1]
        assert any(c.cell_type == "code" for c in nb.cells[cleanup_at:]), "Cleanup has no code"

    def test_exercises_have_solutions_and_checks(self, path):
        """Your turn: nbgrader-style solution cells and read-only check cells (docstring, asserts)."""
        nb = _nb(path)
        solutions = [c for c in nb.cells if "solution" in _tags(c)]
        checks = [c for c in nb.cells if "check" in _tags(c)]
        assert solutions and checks, "no exercise (tag `solution`) or check cell (tag `check`)"
        for cell in solutions:
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        for cell in checks:
            body = ast.parse(cell.source).body
            first = body[0]
            assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant), (
                "a check cell opens with a one-line docstring"
            )
            assert "\n" not in first.value.value.strip(), "the docstring is one line"
            assert any(isinstance(s, ast.Assert) for s in body[1:]), "a check cell asserts"
            bare = [s.lineno for s in body if isinstance(s, ast.Assert) and s.msg is None]
            assert not bare, (f"check cell {first.value.value.strip()!r}: the assert on line(s) {bare} "
                              "needs a message saying what was expected and what was found")
