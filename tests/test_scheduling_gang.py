"""Unit tests of the third scheduler: kube-scheduler's GangScheduling plugin (Workload API).

One test per rule of the plugin as modelled (helpers.scheduling.gang_scheduler), on the
kit's manifests and on small hand-built workloads.
"""

from __future__ import annotations

import json

import pytest

from helpers.errors import ManifestError
from helpers.scheduling import gang_scheduler, run_scenario
from helpers.scheduling.__main__ import main
from helpers.scheduling.model import (
    GPU,
    ApplyStep,
    JobSpec,
    Manifests,
    PodSpec,
    WorkloadSpec,
    load_manifests,
    make_nodes,
)
from helpers.scheduling.simulate import simulate

REQ = {"cpu": 100, "memory": 64 * 2**20, GPU: 1}
TIMEOUT = gang_scheduler.PERMIT_TIMEOUT_SECONDS


def gang_pods(job: str, n: int, *, workload: str | None = None, group: str = "workers",
              work: float = 60.0) -> list[PodSpec]:
    return [PodSpec(name=f"{job}-{i}", job=job, requests=dict(REQ), world_size=n, work_seconds=work,
                    workload_ref=(workload or job, group)) for i in range(n)]


def manifests(*jobs: list[PodSpec], workloads=()) -> Manifests:
    step = ApplyStep(source="test", workloads=list(workloads))
    for plist in jobs:
        step.jobs.append(JobSpec(name=plist[0].job, kind="Pods", pods=plist, source="test"))
        step.bare_pods.extend(plist)
    return Manifests([step])


def events(result, kind: str, prefix: str = "") -> list[dict]:
    return [e for e in result.events if e["type"] == kind and e["object"].startswith(f"pod/{prefix}")]


def bound_before(result, job: str, t: float) -> int:
    return sum(1 for p in result.pods.values()
               if p["job"] == job and p["bound_at"] is not None and p["bound_at"] < t)


# --------------------------------------------------------------------------- PreEnqueue
def test_pre_enqueue_holds_pods_until_min_count_exist():
    r = simulate(manifests(gang_pods("a", 3)[:2], workloads=[WorkloadSpec("a", {"workers": 3})]),
                 make_nodes(2, 2), "gang")
    assert r.jobs["a"].state == "pending" and r.jobs["a"].bound == 0
    assert not events(r, "FailedScheduling") and not events(r, "WaitingOnPermit")
    quorum = f"Gated: GangScheduling PreEnqueue: {gang_scheduler.MSG_QUORUM}"
    assert set(r.pending_reasons().values()) == {quorum}


def test_quorum_met_binds_the_whole_gang_at_once():
    r = simulate(manifests(gang_pods("a", 3), workloads=[WorkloadSpec("a", {"workers": 3})]),
                 make_nodes(2, 2), "gang")
    assert r.jobs["a"].state == "completed"
    assert {p["bound_at"] for p in r.pods.values()} == {0.0}
    assert len(events(r, "WaitingOnPermit")) == 2  # the third pod completes the quorum


def test_pods_naming_a_missing_workload_wait_without_an_event():
    r = run_scenario("gang-bad-input", "gang-missing-workload")
    assert r.jobs["orphan"].state == "pending" and r.jobs["orphan"].pending == 2
    assert not events(r, "FailedScheduling")
    reasons = r.pending_reasons()
    assert reasons["orphan-0"] == ('Gated: GangScheduling PreEnqueue: waiting for pods\'s workload '
                                   '"no-such-workload" to appear in scheduling queue')
    assert any("no-such-workload" in w and "no manifest creates" in w for w in r.warnings)


def test_a_workload_created_later_releases_its_pods():
    pods = gang_pods("late", 2)
    steps = [ApplyStep(source="pods", jobs=[JobSpec("late", "Pods", pods, "pods")], bare_pods=pods),
             ApplyStep(source="workload", workloads=[WorkloadSpec("late", {"workers": 2})])]
    r = simulate(Manifests(steps), make_nodes(1, 2), "gang")
    assert r.jobs["late"].state == "completed"
    assert {p["bound_at"] for p in r.pods.values()} == {1.0}  # the second apply step


def test_unknown_pod_group_is_named():
    r = simulate(manifests(gang_pods("a", 2, group="other"), workloads=[WorkloadSpec("a", {"workers": 2})]),
                 make_nodes(1, 2), "gang")
    assert r.pending_reasons()["a-0"].endswith('pod group "other" doesn\'t exist for a workload "a"')


def test_min_count_above_the_pod_count_stays_pending_and_is_named():
    r = run_scenario("gang-bad-input", "gang-min-count")
    assert r.jobs["short"].pending == 3 and not events(r, "WaitingOnPermit")
    assert "minCount pods from a gang to appear" in r.pending_reasons()["short-2"]
    assert any("minCount 4 but only 3 pods" in w for w in r.warnings)


# --------------------------------------------------------------------------- Permit, timeout
def test_a_gang_bigger_than_the_cluster_is_rejected_whole_every_five_minutes():
    r = run_scenario("gang-bad-input", "gang-too-big")
    assert r.jobs["huge"].bound == 0 and r.jobs["huge"].pending == 8
    timeouts = [e for e in events(r, "FailedScheduling") if "rejected due to timeout" in e["message"]]
    times = sorted({e["t"] for e in timeouts})
    assert times[:3] == [1 + TIMEOUT, 1 + 2 * TIMEOUT, 1 + 3 * TIMEOUT]  # applied at 1 s
    assert all(sum(1 for e in timeouts if e["t"] == t) == 6 for t in times)  # all 6 waiting, together
    assert any("needs 8 example.com/gpu" in w and "the cluster has 6" in w for w in r.warnings)
    # The held GPUs are waste: 6 GPUs held and idle for the whole window.
    assert r.metrics["waste_gpu_seconds"] == pytest.approx(6 * r.metrics["end_time"], rel=0.01)


def test_chapter_gang_holds_the_free_gpus_for_five_minutes_then_requeues():
    r = run_scenario("chapter", "gang")
    assert r.jobs["train-big"].bound == 0 and r.jobs["train-big"].completed == 0  # never partial
    assert bound_before(r, "train-small", 300) == 0  # the small job waits behind the reservation
    first = [e for e in events(r, "FailedScheduling", "train-big") if "timeout" in e["message"]]
    assert first and {e["t"] for e in first[:3]} == {2.0 + TIMEOUT}
    assert not r.gridlocked


def test_two_job_deadlock_does_not_happen_with_the_gang_plugin():
    r = run_scenario("two-jobs", "gang")
    default = run_scenario("two-jobs", "default-pods")
    assert default.gridlocked and not r.gridlocked
    assert r.jobs["train-a"].state == r.jobs["train-b"].state == "completed"
    assert r.jobs["train-a"].finished_at < r.jobs["train-b"].started_at
    waiting_b = [e for e in events(r, "WaitingOnPermit", "train-b") if e["t"] == 1.0]
    assert len(waiting_b) == 2  # b's first two pods hold the 2 free GPUs until a finishes
    assert r.metrics["end_time"] == r.metrics["makespan"] == 243.0  # a cancelled timer ends nothing


def test_basic_policy_and_plain_pods_are_scheduled_one_at_a_time():
    r = simulate(manifests(gang_pods("b", 3), workloads=[WorkloadSpec("b", {"workers": None})]),
                 make_nodes(1, 2), "gang")
    assert r.jobs["b"].bound == 2 and r.gridlocked  # like the default scheduler
    assert not events(r, "WaitingOnPermit")


def test_same_outcome_as_the_default_scheduler_without_workloads():
    for variant in ("default", "default-pods"):
        a = run_scenario("two-jobs", variant)
        from helpers.scheduling.scenarios import scenario
        sc = scenario("two-jobs")
        b = simulate(load_manifests(sc.paths(variant)), make_nodes(sc.nodes, sc.node_gpus), "gang")
        assert {k: (j.bound, j.pending, j.completed) for k, j in a.jobs.items()} == \
               {k: (j.bound, j.pending, j.completed) for k, j in b.jobs.items()}


# --------------------------------------------------------------------------- input checks
def test_workloads_need_the_gang_scheduler():
    from helpers.scheduling.scenarios import scenario
    with pytest.raises(ManifestError, match="GenericWorkload.*scheduler='gang'"):
        simulate(load_manifests(scenario("two-jobs").paths("gang")), make_nodes(3, 2), "default")
    r = simulate(load_manifests(scenario("gang-bad-input").paths("gang-missing-workload")),
                 make_nodes(3, 2), "default")
    assert any("workloadRef is dropped" in w for w in r.warnings) and r.jobs["orphan"].completed == 2


WORKLOAD = """apiVersion: scheduling.k8s.io/v1alpha1
kind: Workload
metadata: {name: w, namespace: kflabs-scheduling}
spec:
  podGroups:
    - name: workers
      policy: %s
"""


@pytest.mark.parametrize(("policy", "needle"), [
    ("{gang: {minCount: 0}}", "minCount: must be a positive integer"),
    ("{gang: {minCount: 2}, basic: {}}", "exactly one of `basic`, `gang`"),
    ("{}", "exactly one of `basic`, `gang`"),
])
def test_bad_workloads_are_refused_like_the_api_server_would(tmp_path, policy, needle):
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD % policy)
    with pytest.raises(ManifestError, match=needle):
        load_manifests(path)


def test_workload_ref_of_a_volcano_pod_is_refused(tmp_path):
    from helpers import paths
    text = (paths.manifests_dir("scheduling") / "two-jobs/gang/pods.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("schedulerName: default-scheduler", "schedulerName: volcano", 1))
    with pytest.raises(ManifestError, match="only kube-scheduler reads it"):
        load_manifests(path)


def test_cli_offers_the_gang_scheduler(capsys):
    from helpers import paths
    base = paths.manifests_dir("scheduling")
    assert main(["--manifests", str(base / "namespace.yaml"), str(base / "two-jobs/gang"),
                 "--nodes", "3", "--node-gpus", "2", "--scheduler", "gang", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scheduler"] == "gang" and out["metrics"]["jobs_completed"] == 2
