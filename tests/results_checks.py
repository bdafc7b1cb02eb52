"""Assertions on each lab's results JSON, keyed by lab name.

Every lab must have an entry (tests/test_labs_papermill.py fails otherwise). Each check
receives the results dict and the parameter set the lab ran with.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def check_00_setup(results: dict, params: dict) -> None:
    """Lab 00: environment verified, backend reported, every objective mapped to a lab."""
    requested = params.get("BACKEND", "sim")
    if requested == "auto" and not os.environ.get("KFLABS_BACKEND"):
        assert results["backend"] == "sim", "auto without a request must choose sim"
        assert "no cluster requested" in results["backend_reason"]
    elif requested != "auto":
        assert results["backend"] == requested
    assert results["environment_ok"] is True
    assert results["packages"], "no package versions recorded"
    assert all(row["ok"] for row in results["packages"]), results["packages"]
    objectives = results["objectives"]
    assert len(objectives) >= 6
    assert all(o["labs"] for o in objectives), "an objective has no lab"


CHECKS: dict[str, Callable[[dict, dict], None]] = {
    "00_setup": check_00_setup,
}
