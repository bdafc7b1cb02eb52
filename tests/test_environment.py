"""The environment is single-sourced: pyproject.toml, environment.yml and the lock agree."""

from __future__ import annotations

import re
import sys

import yaml
from packaging.requirements import Requirement

from helpers import environment
from tests.conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(req: str) -> str:
    r = Requirement(req)
    extras = f"[{','.join(sorted(r.extras))}]" if r.extras else ""
    marker = f"; {r.marker}" if r.marker else ""
    return f"{r.name.lower().replace('_', '-')}{extras}{r.specifier}{marker}"


def test_environment_yml_matches_pyproject():
    """Every pyproject requirement (runtime + dev) is in environment.yml, and nothing else."""
    project = _pyproject()["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip_section if not r.startswith("-e")}
    assert listed == wanted, (
        f"only in environment.yml: {sorted(listed - wanted)}; only in pyproject: {sorted(wanted - listed)}"
    )
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_lock_satisfies_pyproject():
    """requirements.lock pins a version inside every pyproject range (no stale lock)."""
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins.setdefault(m.group(1).lower().replace("_", "-"), []).append(m.group(3))
    project = _pyproject()["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        r = Requirement(req)
        name = r.name.lower().replace("_", "-")
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        for version in pins[name]:
            assert r.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {name}=={version}, outside {r.specifier}: run `make lock`"
            )


def test_python_support_range():
    """Python 3.10-3.13 are supported, as the README says."""
    assert _pyproject()["project"]["requires-python"] == ">=3.10,<3.14"


def test_xgboost_pin_matches_kserve_runtime():
    """xgboost-cpu is pinned to the 2.1 minor that the pinned kserve-xgbserver ships."""
    from helpers import versions

    deps = _pyproject()["project"]["dependencies"]
    xgb = Requirement(next(d for d in deps if d.startswith("xgboost-cpu")))
    assert xgb.specifier.contains("2.1.4") and not xgb.specifier.contains("2.2.0")
    assert versions.pin("kserve") == "v0.20.0", "re-check the xgbserver's xgboost pin when KServe moves"
    kserve = Requirement(next(d for d in deps if d.startswith("kserve")))
    assert kserve.specifier.contains(versions.pin("kserve").lstrip("v"))


def test_make_help_describes_every_target():
    """`make help` (what lab 00 prints) describes each Makefile target, and only real ones."""
    described, targets = environment.make_help(), environment.make_targets()
    assert set(described) <= targets
    assert targets - set(described) == {"help"}
    assert described["grade"].startswith("NB=path")
