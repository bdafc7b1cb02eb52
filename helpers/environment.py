"""Lab 00's environment check: Python, the pinned packages, and the cluster tools on PATH."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

DISTRIBUTION = "kubeflow-integrations-labs"
PYTHON_RANGE = ((3, 10), (3, 14))
CLUSTER_TOOLS = ("docker", "kind", "kubectl", "go")


def package_rows(include_dev: bool = False) -> list[dict]:
    """Each requirement of the kit with the installed version and whether it satisfies the range.

    The requirements are read from the installed package's metadata, i.e. from
    pyproject.toml, so this check never repeats a version number.
    """
    rows = []
    for text in metadata.requires(DISTRIBUTION) or []:
        req = Requirement(text)
        is_dev = req.marker is not None and "extra" in str(req.marker)
        if is_dev and not include_dev:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": "dev"}):
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            installed = None
        ok = installed is not None and req.specifier.contains(Version(installed), prereleases=True)
        rows.append({"package": req.name, "required": str(req.specifier) or "any",
                     "installed": installed or "missing", "ok": ok})
    return rows


def python_row() -> dict:
    """The running interpreter against the supported range."""
    lo, hi = PYTHON_RANGE
    ok = lo <= sys.version_info[:2] < hi
    return {"package": "python", "required": f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}",
            "installed": sys.version.split()[0], "ok": ok}


def tool_rows() -> list[dict]:
    """Which cluster tools are on PATH (only the kind/kwok backends need them)."""
    rows = []
    for tool in CLUSTER_TOOLS:
        path = shutil.which(tool)
        version = ""
        if path:
            args = {"go": ["version"], "kubectl": ["version", "--client"],
                    "docker": ["--version"], "kind": ["version"]}[tool]
            try:
                proc = subprocess.run([path, *args], capture_output=True, text=True, timeout=10,
                                      check=False)
                version = (proc.stdout or proc.stderr).strip().splitlines()[0][:80]
            except (OSError, subprocess.TimeoutExpired, IndexError):
                version = "(version unknown)"
        rows.append({"tool": tool, "found": bool(path), "version": version})
    return rows


def check_environment() -> dict:
    """Python and package rows plus cluster tools, and ``ok`` when every package row is ok."""
    packages = [python_row(), *package_rows()]
    return {"ok": all(r["ok"] for r in packages), "packages": packages, "tools": tool_rows()}


def format_rows(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table of ``rows`` restricted to ``columns`` (for notebook output)."""
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join([head, "-" * len(head), *body])


def make_help() -> dict[str, str]:
    """What ``make help`` says of each target: ``{target: description}``, in its order.

    Read from the Makefile's ``help`` recipe (its ``@echo "make <target> ..."`` lines); a
    target described twice (``make jupyter`` and ``make jupyter INSTRUCTOR=1``) keeps its
    first description.
    """
    import re

    from helpers import paths

    text = (paths.ROOT / "Makefile").read_text()
    described: dict[str, str] = {}
    for target, rest in re.findall(r'^\t@echo "make ([a-z][a-z0-9-]*)\s+(.*)"$', text, re.M):
        described.setdefault(target, rest.strip())
    return described


def make_targets() -> set[str]:
    """The targets the kit's Makefile defines (lab 00 tells which cluster commands exist)."""
    import re

    from helpers import paths

    text = (paths.ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))
