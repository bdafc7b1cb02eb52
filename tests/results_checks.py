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


def check_01_gridlock_vs_gang(results: dict, params: dict) -> None:
    """Lab 01: the default scheduler gridlocks the chapter's case and the two-job case; Volcano doesn't."""
    assert results["backend"] == params.get("BACKEND", "sim")
    d, v = results["default"], results["volcano"]
    assert d["gridlocked"] is True and d["jobs_completed"] == 0
    assert v["gridlocked"] is False and v["jobs_completed"] == 1
    assert d["waste"] > 100 * max(v["waste"], 1.0), (d["waste"], v["waste"])
    two = results["two_jobs"]
    assert two["default"]["gridlocked"] is True and two["default"]["jobs_completed"] == 0
    assert two["volcano"]["gridlocked"] is False and two["volcano"]["jobs_completed"] == 2
    assert two["volcano"]["makespan"] is not None and two["volcano"]["makespan"] > 0


def check_02_volcano_jobs_and_queues(results: dict, params: dict) -> None:
    """Lab 02: installer objects listed, a VolcanoJob's PodGroup phases, queues share 3:1."""
    assert results["backend"] == params.get("BACKEND", "sim")
    kinds = results["installer_kinds"]
    assert {"Deployment", "CustomResourceDefinition", "Job"} <= set(kinds)
    assert set(results["installer_deployments"]) == {
        "volcano-admission", "volcano-controllers", "volcano-scheduler"}
    assert results["vcjob_phases"] == ["Pending", "Inqueue", "Running", "Completed"]
    share = results["queue_gpus_at_start"]
    assert share["team-a"] == 3 * share["team-b"] > 0, share
    assert results["queue_jobs_completed"] == 8
    assert results["team_b_alone_max_gpus"] == 4
    patch = results["training_operator_patch"]
    assert patch[0]["value"] == "--gang-scheduler-name=volcano"
    assert patch[0]["path"].startswith("/spec/template/spec/containers/0/")


CHECKS: dict[str, Callable[[dict, dict], None]] = {
    "00_setup": check_00_setup,
    "01_gridlock_vs_gang": check_01_gridlock_vs_gang,
    "02_volcano_jobs_and_queues": check_02_volcano_jobs_and_queues,
}
