"""The import contract of ``helpers/`` (README, "How the kit is built"), read from the source.

Every ``import`` and ``from ... import`` is parsed with :mod:`ast`, at module level and inside
functions alike (a lazy import is still a dependency). Only an entry point's own block,
``if __name__ == "__main__":``, is left out: a program sits on top of every layer.

The rules:

* only ``helpers.kube`` imports the kubernetes client (its API model types, ``V1ObjectMeta``
  and friends, and quantity parsing are fine anywhere);
* ``helpers.scheduling`` and ``helpers.serving`` are pure models: they import neither
  ``helpers.kube`` (except :mod:`helpers.kube.names`, constants only) nor ``helpers.backend``;
* only ``helpers.tools`` imports ``helpers.tools``;
* no import cycles among the ``helpers`` modules;
* no module is longer than :data:`MAX_LINES`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: About 700 lines: a module a reader can hold in their head.
MAX_LINES = 750
PURE = ("helpers.scheduling", "helpers.serving")
#: What the pure packages may take from the kubernetes client: API model types and quantities.
KUBERNETES_ALLOWED = ("kubernetes.client.models", "kubernetes.utils")


@dataclass(frozen=True)
class Import:
    """One import statement's target as the importing module sees it."""

    module: str  # the importing module, e.g. helpers.serving.isvc
    target: str  # the imported module, resolved (helpers.kube.client, kubernetes.client, ...)
    names: tuple[str, ...]  # for ``from X import a, b``: (a, b); () for ``import X``
    line: int
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: never runs, so no cycle


def module_name(path: Path, root: Path) -> str:
    """``helpers/serving/isvc.py`` -> ``helpers.serving.isvc`` (``__init__`` is its package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__"
                    for c in node.test.comparators))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _walk_skipping_main(tree: ast.AST):
    """(node, under TYPE_CHECKING) for every node outside ``if __name__ == "__main__":``."""
    stack = [(tree, False)]
    while stack:
        node, typing_only = stack.pop()
        yield node, typing_only
        inner = typing_only or _is_type_checking(node)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node) if not _is_main_guard(child))


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    """Every import in ``path`` (functions included, ``__main__`` blocks excluded), resolved.

    ``from helpers import training`` names the module ``helpers.training``; ``from
    helpers.kube.names import GPU_RESOURCE`` names ``helpers.kube.names``; relative imports
    are resolved against the importing module's package.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, typing_only in _walk_skipping_main(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, a.name, (), node.lineno, typing_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            if submodules:
                found += [Import(name, sub, (sub.rpartition(".")[2],), node.lineno, typing_only)
                          for sub in submodules]
                rest = tuple(n for n in names if f"{base}.{n}" not in modules)
                if rest:
                    found.append(Import(name, base, rest, node.lineno, typing_only))
            else:
                found.append(Import(name, base, names, node.lineno, typing_only))
    return found


def scan(root: Path, package: str = "helpers") -> dict[str, list[Import]]:
    """``{module: its imports}`` for every module of ``package`` under ``root``."""
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, root, modules) for f in files}


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _kubernetes_allowed(imp: Import) -> bool:
    if any(_within(imp.target, ok) for ok in KUBERNETES_ALLOWED):
        return True
    # ``from kubernetes.client import V1ObjectMeta``: model classes re-exported by the client.
    return imp.target == "kubernetes.client" and bool(imp.names) and all(
        n.startswith(("V1", "V2")) for n in imp.names)


def violations(graph: dict[str, list[Import]]) -> list[str]:
    """Every broken rule, one line each (``module:line imports target: why``)."""
    problems = []
    for module, imps in graph.items():
        pure = any(_within(module, p) for p in PURE)
        kube = _within(module, "helpers.kube")
        for imp in imps:
            where = f"{module}:{imp.line} imports {imp.target}"
            if not kube and _within(imp.target, "kubernetes") and not _kubernetes_allowed(imp):
                problems.append(f"{where}: only helpers.kube uses the kubernetes client")
            if pure and _within(imp.target, "helpers.kube") and imp.target != "helpers.kube.names":
                problems.append(f"{where}: a pure model package talks to an API server")
            if pure and _within(imp.target, "helpers.backend"):
                problems.append(f"{where}: a pure model package depends on a backend")
            if _within(imp.target, "helpers.tools") and not _within(module, "helpers.tools"):
                problems.append(f"{where}: nothing below tools/ may import it")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Import cycles among the scanned modules (one representative path per cycle found)."""
    edges = {m: sorted({i.target for i in imps
                        if i.target in graph and i.target != m and not i.typing_only})
             for m, imps in graph.items()}
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


# --------------------------------------------------------------------------- the contract
def test_the_import_contract_holds():
    problems = violations(scan(ROOT))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", sorted((ROOT / "helpers").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_longer_than_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it"


def test_the_scan_sees_lazy_imports_and_the_real_packages():
    """The checker reads the kit itself: lazy imports count, ``__main__`` blocks do not."""
    graph = scan(ROOT)
    targets = {i.target for i in graph["helpers.backend.kind"]}
    assert "helpers.backend.kind.serving" in targets  # imported inside a verb
    assert graph["helpers.runner"] == [Import("helpers.runner", "sys", (), 7)]  # a CLI shim


# --------------------------------------------------------------------------- the checker
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, list[Import]]:
    for rel, text in files.items():
        path = tmp_path / "helpers" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in (tmp_path / "helpers").rglob("*.py")}:
        (folder / "__init__.py").touch()
    return scan(tmp_path)


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    graph = _package(tmp_path, {
        "serving/bad.py": ("def f():\n    from kubernetes import client\n"
                           "    from helpers.kube import client as k\n"),
        "scheduling/bad.py": "from helpers.backend import kind\n",
        "kube/client.py": "from kubernetes import client\n", "kube/names.py": "",
        "backend/kind.py": "from kubernetes.client.exceptions import ApiException\n",
        "training.py": "def bench():\n    from helpers.tools import runner\n",
        "tools/runner.py": "",
        "a.py": "from helpers import b\n", "b.py": "def f():\n    from helpers import a\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from helpers import d\n",
        "d.py": "from helpers import c\n",
    })
    problems = "\n".join(violations(graph))
    assert not any(p.startswith("helpers.kube.client:") for p in problems.splitlines()), "kube/ may"
    assert "helpers.serving.bad:2 imports kubernetes: only helpers.kube uses the kubernetes" in problems
    assert "helpers.backend.kind:1 imports kubernetes.client.exceptions: only helpers.kube" in problems
    assert "helpers.serving.bad:3 imports helpers.kube.client: a pure model package talks" in problems
    assert "helpers.scheduling.bad:1 imports helpers.backend.kind: a pure model package depends" in problems
    assert "helpers.training:2 imports helpers.tools.runner: nothing below tools/" in problems
    assert "import cycle: helpers.a -> helpers.b -> helpers.a" in problems
    assert "helpers.c" not in problems, "a TYPE_CHECKING import never runs: it makes no cycle"


def test_the_checker_allows_what_the_contract_allows(tmp_path):
    graph = _package(tmp_path, {
        "serving/ok.py": ("from kubernetes.client import V1ObjectMeta\nfrom kubernetes.utils import "
                          "parse_quantity\nimport kubernetes.client.models\nfrom helpers.kube.names "
                          "import GPU_RESOURCE\n"),
        "kube/names.py": "",
        "tools/bench.py": "from helpers.tools import runner\n", "tools/runner.py": "",
        "runner.py": "import sys\nif __name__ == '__main__':\n    from helpers.tools.runner import main\n",
    })
    assert violations(graph) == []
