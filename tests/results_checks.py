"""Assertions on each lab's results JSON, keyed by lab name.

Every lab must have an entry (tests/test_labs_papermill.py fails otherwise). Each check
receives the results dict and the parameter set the lab ran with.
"""

from __future__ import annotations

from collections.abc import Callable


def check_00_setup(results: dict, params: dict) -> None:
    """Lab 00: environment verified, backend reported, every objective mapped to a lab."""
    assert results["backend"] == params.get("BACKEND", "sim")
    assert results["environment_ok"] is True
    assert results["packages"], "no package versions recorded"
    assert all(row["ok"] for row in results["packages"]), results["packages"]
    objectives = results["objectives"]
    assert len(objectives) >= 6
    assert all(o["labs"] for o in objectives), "an objective has no lab"


CHECKS: dict[str, Callable[[dict, dict], None]] = {
    "00_setup": check_00_setup,
}
