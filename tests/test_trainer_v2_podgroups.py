"""helpers.scheduling.trainer_v2: the PodGroup a TrainJob gets, beside the v1 operator's."""

from __future__ import annotations

import copy

import pytest

from helpers.errors import ManifestError
from helpers.scheduling import trainer_v2, training_operator


@pytest.fixture
def jobs():
    return trainer_v2.course_jobs()


def test_course_trainjob_gets_the_same_gang_as_the_xgboostjob(jobs):
    v1_job, trainjob, runtime = jobs
    pg = trainer_v2.trainer_podgroup(trainjob, runtime)
    assert pg["metadata"] == {"name": "iris-train-v2", "namespace": "kflabs-serving"}
    v1 = training_operator.operator_podgroup(v1_job)
    assert pg["spec"]["minMember"] == v1["spec"]["minMember"] == 4
    assert pg["spec"]["minResources"] == v1["spec"]["minResources"] == {"cpu": "400m",
                                                                        "memory": "1024Mi"}
    assert pg["spec"]["queue"] == v1["spec"]["queue"] == "default"


def test_side_by_side_rows(jobs):
    rows = {r["field"]: (r["v1"], r["v2"]) for r in trainer_v2.side_by_side(*jobs)}
    assert rows["PodGroup name"] == ("iris-train", "iris-train-v2")
    assert rows[f"pod annotation {trainer_v2.GROUP_ANNOTATION}"] == rows["PodGroup name"]
    assert rows[f"pod annotation {trainer_v2.TASK_SPEC_ANNOTATION}"] == ("master/worker", None)
    assert rows["pod schedulerName"][1] == "volcano"


def test_num_nodes_and_queue_patch_override_the_runtime(jobs):
    _, trainjob, runtime = jobs
    job = copy.deepcopy(trainjob)
    job["spec"]["trainer"]["numNodes"] = 6
    job["spec"]["runtimePatches"].append(trainer_v2.queue_patch("team-a"))
    pg = trainer_v2.trainer_podgroup(job, runtime)
    assert (pg["spec"]["minMember"], pg["spec"]["queue"]) == (6, "team-a")
    assert pg["spec"]["minResources"]["cpu"] == "600m"


def test_no_queue_annotation_means_no_queue_field(jobs):
    _, trainjob, runtime = jobs
    bare = copy.deepcopy(runtime)
    del bare["spec"]["template"]["metadata"]
    assert "queue" not in trainer_v2.trainer_podgroup(trainjob, bare)["spec"]


def test_a_runtime_without_volcano_policy_gets_no_podgroup(jobs):
    _, trainjob, runtime = jobs
    plain = copy.deepcopy(runtime)
    del plain["spec"]["podGroupPolicy"]
    with pytest.raises(ManifestError, match="podGroupPolicy.volcano"):
        trainer_v2.trainer_podgroup(trainjob, plain)


def test_migration_table_covers_what_the_side_by_side_shows():
    whats = {row["what"] for row in trainer_v2.MIGRATION}
    assert {"turn gang scheduling on", "minMember", "queue", "schedulerName"} <= whats
    assert all(row["v1"] and row["v2"] for row in trainer_v2.MIGRATION)
