"""Unit tests of the foundation helpers: paths, errors, results, backend, runner, model store."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import backend, course, environment, model_store, paths, results, versions
from helpers.errors import BackendUnavailable, LabError, ModelStoreError, cli_errors
from helpers.tools import runner
from tests.conftest import ROOT


def test_paths_resolve_against_repo_root(monkeypatch, tmp_path):
    """Relative paths never depend on the working directory."""
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("build/results") == ROOT / "build" / "results"
    assert paths.resolve(tmp_path) == tmp_path
    assert (paths.labs_dir() / "00_setup.ipynb").is_file()


def test_lab_error_renders_without_traceback():
    """In IPython a LabError shows its message alone."""
    err = BackendUnavailable("no cluster: run make cluster-up")
    assert err._render_traceback_() == ["BackendUnavailable: no cluster: run make cluster-up"]


def test_cli_errors_exit_2_with_message(capsys):
    """CLIs turn a LabError into exit status 2 and a one-line message on stderr."""

    @cli_errors
    def main():
        raise LabError("the manifest is bad: fix field x")

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "the manifest is bad: fix field x" in capsys.readouterr().err


def test_cli_errors_turn_ctrl_c_into_exit_130_and_one_line(capsys):
    """Ctrl-C in a CLI: exit 130 and one line saying a re-run carries on, no traceback."""

    @cli_errors
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted:") and "run the same command again" in err
    assert "Traceback" not in err


def test_write_results_is_json_with_lab_key(tmp_path):
    """write_results writes <dir>/<lab>.json with plain JSON values."""
    np = pytest.importorskip("numpy")
    path = results.write_results("99_demo", {"x": np.float32(1.5), "arr": np.arange(3),
                                             "bad": float("nan")}, tmp_path)
    data = json.loads(path.read_text())
    assert data == {"lab": "99_demo", "x": 1.5, "arr": [0, 1, 2], "bad": None}
    assert results.read_results("99_demo", tmp_path) == data


class TestBackend:
    def test_sim_is_always_available(self, capsys):
        chosen = backend.resolve("sim")
        assert (chosen.name, chosen.is_cluster) == ("sim", False)
        assert capsys.readouterr().out.startswith("backend: sim - ")

    def test_unknown_backend_names_choices(self):
        with pytest.raises(BackendUnavailable, match="choose one of sim, kind, kwok, auto"):
            backend.resolve("minikube")

    def test_kind_without_kubeconfig_names_the_fix(self, tmp_path):
        with pytest.raises(BackendUnavailable) as exc:
            backend.resolve("kind", kubeconfig=str(tmp_path / "missing"), announce=False)
        message = str(exc.value)
        assert "no kubeconfig" in message and 'BACKEND="sim"' in message

    def test_kind_reports_missing_tools(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
        with pytest.raises(BackendUnavailable, match="docker, kind and kubectl are not on PATH"):
            backend.resolve("kind", kubeconfig=str(tmp_path / "missing"), announce=False)

    def test_kind_names_only_the_missing_tool_in_one_sentence(self, tmp_path, monkeypatch):
        """With Docker and kubectl installed, only kind is named, and only its fix is given."""
        for tool in ("docker", "kubectl"):
            (tmp_path / tool).write_text("#!/bin/sh\n")
            (tmp_path / tool).chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(BackendUnavailable) as exc:
            backend.resolve("kind", kubeconfig=str(tmp_path / "missing"), announce=False)
        message = str(exc.value)
        assert "and kind is not on PATH: install kind" in message
        assert "Docker" not in message and "install kubectl" not in message and "Fix:" not in message
        assert message.count(". ") == 0 and message.endswith('BACKEND="sim".')

    def test_kind_context_missing(self, tmp_path):
        cfg = tmp_path / "config"
        cfg.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
            "contexts:\n- name: other\n  context: {cluster: c, user: u}\ncurrent-context: other\n"
            "users:\n- name: u\n  user: {token: t}\n"
        )
        with pytest.raises(BackendUnavailable, match="context 'kind-kflabs' not in"):
            backend.resolve("kind", kubeconfig=str(cfg), announce=False)

    def test_unreachable_api_server(self, tmp_path):
        cfg = tmp_path / "config"
        cfg.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
            "contexts:\n- name: kind-kflabs\n  context: {cluster: c, user: u}\ncurrent-context: kind-kflabs\n"
            "users:\n- name: u\n  user: {token: t}\n"
        )
        with pytest.raises(BackendUnavailable, match="API server not reachable"):
            backend.resolve("kind", kubeconfig=str(cfg), announce=False)

    def test_kwok_unreachable_names_controlplane_up(self, tmp_path):
        with pytest.raises(BackendUnavailable, match="controlplane-up"):
            backend.resolve("kwok", kubeconfig=str(tmp_path / "none"), announce=False)

    def test_auto_without_request_is_sim(self, monkeypatch, capsys):
        monkeypatch.delenv(backend.AUTO_ENV, raising=False)
        assert backend.resolve("auto").name == "sim"
        assert "no cluster requested" in capsys.readouterr().out

    def test_auto_with_unreachable_request_falls_back(self, monkeypatch, tmp_path, capsys):
        monkeypatch.setenv(backend.AUTO_ENV, "kind")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
        chosen = backend.resolve("auto")
        assert chosen.name == "sim"
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and "requested but unusable" in out


class TestModelStore:
    def test_missing_directory(self, tmp_path):
        with pytest.raises(ModelStoreError, match="does not exist: expected a folder holding one"):
            model_store.find_model_file(tmp_path / "nope")

    def test_no_model_file_lists_what_is_there(self, tmp_path):
        (tmp_path / "notes.txt").write_text("x")
        with pytest.raises(ModelStoreError, match="found notes.txt"):
            model_store.find_model_file(tmp_path)

    def test_two_model_files_are_ambiguous(self, tmp_path):
        (tmp_path / "model.json").write_text("{}")
        (tmp_path / "model.ubj").write_bytes(b"x")
        with pytest.raises(ModelStoreError, match="more than one model file"):
            model_store.find_model_file(tmp_path)

    def test_empty_file(self, tmp_path):
        (tmp_path / "model.json").write_text("")
        with pytest.raises(ModelStoreError, match="is empty"):
            model_store.find_model_file(tmp_path)

    def test_the_one_file(self, tmp_path):
        (tmp_path / "model.ubj").write_bytes(b"x")
        (tmp_path / "README").write_text("other files are fine")
        assert model_store.find_model_file(tmp_path) == tmp_path / "model.ubj"


def test_versions_single_source():
    """Pins are read from cluster/versions.yaml; an unknown one is a clear error."""
    assert versions.pin("volcano").startswith("v1.")
    with pytest.raises(LabError, match="no pin for 'nope'"):
        versions.pin("nope")


def test_every_objective_maps_to_a_lab_file():
    """The chapter map in lab 00 points only at labs that exist (or will, see present)."""
    assert len(course.OBJECTIVES) >= 6
    labs = {p.stem for p in paths.labs_dir().glob("[0-9][0-9]_*.ipynb")}
    named = {lab for o in course.OBJECTIVES for lab in o.labs}
    assert "00_setup" in labs
    assert all(lab[:2].isdigit() for lab in named)


def test_environment_check_reads_pyproject():
    """Lab 00's package table covers the runtime dependencies and flags nothing here."""
    rows = environment.package_rows()
    names = {r["package"] for r in rows}
    assert {"xgboost-cpu", "kserve", "papermill", "nbval"} <= names
    assert all(r["ok"] for r in rows)


def test_runner_table_and_exit_status(tmp_path):
    """The batch runner runs a lab, prints progress and a table, and fails on a failing lab."""
    runs = runner.run_all("sim", ["00"], tmp_path)
    assert [r.status for r in runs] == ["ok"]
    assert (tmp_path / "labs" / "00_setup.ipynb").is_file()
    assert (tmp_path / "results" / "00_setup.json").is_file()
    table = runner.format_table([*runs, runner.LabRun("x", "failed", 1.0, "boom")], wall=2.5)
    assert "00_setup" in table and "failed" in table and "sum" in table
    assert table.splitlines()[-1].split() == ["wall", "2.5"]


def test_runner_runs_labs_in_parallel_and_keeps_lab_order(tmp_path):
    """With two workers the runs come back in lab order, each with its own results file."""
    stream = io.StringIO()
    runs = runner.run_all("sim", ["00", "01", "02"], tmp_path, jobs=2, stream=stream)
    assert [r.lab for r in runs] == ["00_setup", "01_gridlock_vs_gang", "02_volcano_jobs_and_queues"]
    lines = stream.getvalue().splitlines()
    started = [i for i, line in enumerate(lines) if line.startswith("  started ")]
    assert [lines[i].split()[1] for i in started] == [r.lab for r in runs]  # one lab per line
    assert started[2] > min(i for i, line in enumerate(lines) if line.startswith("[1/3]")), (
        "the third lab is announced only once a worker is free")
    assert all(r.status == "ok" for r in runs), [r.error for r in runs]
    assert {p.name for p in (tmp_path / "results").iterdir()} == {
        "00_setup.json", "01_gridlock_vs_gang.json", "02_volcano_jobs_and_queues.json"}


def test_isolated_dirs_covers_folder_knobs(tmp_path):
    """Folder knobs (``*_DIR``, ``*_STORE``) get fresh folders; OUTPUT_DIR and others don't."""
    got = runner.isolated_dirs(["WORK_DIR", "MODEL_STORE", "OUTPUT_DIR", "SEED"], tmp_path)
    assert got == {"WORK_DIR": str(tmp_path / "work_dir"), "MODEL_STORE": str(tmp_path / "model_store")}


def test_runner_cli_exit_code_on_failure(tmp_path, monkeypatch, capsys):
    """A lab that fails makes `python -m helpers.runner` exit non-zero, with the cause."""
    monkeypatch.setattr(runner, "run_lab", lambda notebook, **kw: runner.LabRun(
        notebook.stem, "failed", 0.1, "cell 3: BackendUnavailable: boom"))
    assert runner.main(["--labs", "00", "--jobs", "1", "--build-dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "failed" in out.out and "BackendUnavailable" in out.out and "00_setup" in out.err


def test_runner_refuses_a_bad_backend_before_running_anything(tmp_path):
    """`--backend minikube` exits 2 with the choices and leaves the executed notebooks alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "labs").mkdir()
    good = tmp_path / "labs" / "00_setup.ipynb"
    good.write_text("a good run's notebook")
    proc = subprocess.run([sys.executable, "-m", "helpers.runner", "--labs", "00",
                           "--backend", "minikube", "--build-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "minikube" in proc.stderr and "sim, kind, kwok, auto" in proc.stderr
    assert "Traceback" not in proc.stderr and "running" not in proc.stdout
    assert good.read_text() == "a good run's notebook"


@pytest.mark.parametrize("module", ["runner", "grading", "bench", "train", "scheduling.__main__",
                                    "serving.__main__", "cluster", "controlplane"])
def test_every_command_names_itself_as_the_readme_does(module, capsys):
    """`--help` shows `usage: python -m helpers.<name>`, the form the README uses.

    ``helpers.runner``, ``.grading`` and ``.bench`` are entry points only; their ``main`` lives
    in :mod:`helpers.tools`, which nothing else imports."""
    import importlib

    where = f"helpers.tools.{module}" if module in ("runner", "grading", "bench") else f"helpers.{module}"
    with pytest.raises(SystemExit):
        importlib.import_module(where).main(["--help"])
    name = module.removesuffix(".__main__")
    assert capsys.readouterr().out.startswith(f"usage: python -m helpers.{name} ")


def test_runner_unknown_lab_is_clear(tmp_path):
    with pytest.raises(LabError, match="no lab matches"):
        runner.run_all("sim", ["zz"], tmp_path)


def test_repo_has_no_committed_outputs_dirs():
    """build/ and .venv/ are ignored, never committed."""
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "build/" in ignored and ".venv/" in ignored
    assert Path(ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_lab_kernels_never_inherit_a_jupyter_session(tmp_path, monkeypatch):
    """A run started inside JupyterLab still runs headless: its kernel gets no session name."""
    import nbformat

    monkeypatch.setenv(runner.SESSION_ENV, "/home/me/my-labs/01_gridlock_vs_gang.ipynb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import os\nassert {runner.SESSION_ENV!r} not in os.environ, os.environ[{runner.SESSION_ENV!r}]")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    run = runner.run_lab(tmp_path / "probe.ipynb", parameters={}, output_notebook=tmp_path / "out.ipynb")
    assert run.status == "ok", run.error


def test_kwok_tests_are_one_scheduling_unit_and_the_rest_are_single_tests():
    """`make test`'s scheduler: every kwok module -> the one "kwok" unit; other tests alone."""
    from tests.conftest import KWOK_MODULES, kwok_scope

    for module in KWOK_MODULES:
        assert (ROOT / "tests" / module).is_file(), f"KWOK_MODULES names a missing file: {module}"
        assert kwok_scope(f"tests/{module}::test_x[param]") == "kwok"
    other = "tests/test_layering.py::test_no_cycles"
    assert kwok_scope(other) == other
    assert "-n 3 --dist loadgroup" in (ROOT / "Makefile").read_text()
