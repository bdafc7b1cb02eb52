"""Unit tests of the scheduling model: one test (or more) per scheduling rule, plus parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import paths
from helpers.errors import LabError, ManifestError
from helpers.scheduling import default_scheduler, volcano
from helpers.scheduling.model import (
    GPU,
    ApplyStep,
    JobSpec,
    Manifests,
    NodeSpec,
    PodGroupSpec,
    PodSpec,
    QueueSpec,
    SchedulingResult,
    load_manifests,
    make_nodes,
    parse_quantity,
)
from helpers.scheduling.simulate import SimConfig, simulate

MANIFESTS = paths.manifests_dir("scheduling")
REQ = {"cpu": 100, "memory": 64 * 2**20, GPU: 1}


def pods(job: str, n: int, *, scheduler: str = "default-scheduler", group: str | None = None,
         work: float | None = 60.0, priority: int = 0, req: dict | None = None,
         world: int | None = None) -> list[PodSpec]:
    return [PodSpec(name=f"{job}-{i}", job=job, requests=dict(REQ if req is None else req),
                    scheduler_name=scheduler, group=group, world_size=world or n,
                    work_seconds=work, priority=priority)
            for i in range(n)]


def bare(*jobs: list[PodSpec], podgroups=(), queues=(), interleave=False) -> Manifests:
    step = ApplyStep(source="test", podgroups=list(podgroups), queues=list(queues))
    for plist in jobs:
        step.jobs.append(JobSpec(name=plist[0].job, kind="Pods", pods=plist, source="test"))
    if interleave:
        step.bare_pods = [p for i in range(max(map(len, jobs)))
                          for plist in jobs for p in plist[i:i + 1]]
    else:
        step.bare_pods = [p for plist in jobs for p in plist]
    return Manifests([step])


def gang(name: str, n: int, queue: str = "default", min_res: bool = True) -> PodGroupSpec:
    return PodGroupSpec(name=name, min_member=n, queue=queue,
                        min_resources={k: v * n for k, v in REQ.items()} if min_res else None)


# ---------------------------------------------------------------- quantities and parsing

def test_parse_quantity_units():
    assert parse_quantity("100m", resource="cpu", where="x") == 100
    assert parse_quantity("2", resource="cpu", where="x") == 2000
    assert parse_quantity("64Mi", resource="memory", where="x") == 64 * 2**20
    assert parse_quantity("1G", resource="memory", where="x") == 10**9
    assert parse_quantity(3, resource=GPU, where="x") == 3
    with pytest.raises(ManifestError, match="whole number"):
        parse_quantity("500m", resource=GPU, where="x")
    with pytest.raises(ManifestError, match="not a Kubernetes quantity"):
        parse_quantity("lots", resource="cpu", where="f.yaml: field cpu")


@pytest.mark.parametrize("path", sorted(MANIFESTS.rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_manifest_file_parses(path: Path):
    m = load_manifests(path)
    assert len(m.steps) == 1
    step = m.steps[0]
    assert step.jobs or step.podgroups or step.queues or step.namespaces
    for job in m.jobs:
        for p in job.pods:
            assert p.requests[GPU] == 1 and p.world_size >= 1
            assert p.scheduler_name in ("default-scheduler", "volcano")


def test_manifest_images_are_pinned_busybox():
    for path in MANIFESTS.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            if "image:" in line:
                image = line.split("image:")[1].strip()
                assert image.startswith("busybox:") and image != "busybox:latest", (path, image)


def test_directory_loads_in_sorted_file_order():
    m = load_manifests(MANIFESTS / "chapter" / "volcano")
    assert [s.source.rsplit("/", 1)[1] for s in m.steps] == [
        "00-serving.yaml", "10-train-big.yaml", "20-train-small.yaml"]
    big = m.podgroups[0]
    assert (big.name, big.min_member, big.min_resources[GPU], big.vcjob) == ("train-big", 5, 5, "train-big")


def test_interleaved_bare_pods_keep_document_order():
    m = load_manifests(MANIFESTS / "two-jobs" / "default-pods")
    assert [p.name for p in m.steps[0].bare_pods][:4] == ["train-a-0", "train-b-0", "train-a-1", "train-b-1"]
    assert {j.name: len(j.pods) for j in m.jobs} == {"train-a": 4, "train-b": 4}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def test_unsupported_kind_names_file_field_and_supported(tmp_path):
    p = _write(tmp_path, "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError) as err:
        load_manifests(p)
    msg = str(err.value)
    assert "bad.yaml" in msg and "field kind" in msg and "supported:" in msg and "batch/v1/Job" in msg


def test_non_indexed_job_is_rejected(tmp_path):
    text = (MANIFESTS / "two-jobs/default/jobs.yaml").read_text().replace("completionMode: Indexed",
                                                                          "completionMode: NonIndexed")
    with pytest.raises(ManifestError, match=r"spec.completionMode.*supported: Indexed"):
        load_manifests(_write(tmp_path, text))


def test_job_without_completion_mode_says_why_indexed(tmp_path):
    """Kubernetes does not require completionMode (it defaults to NonIndexed): the error says
    the default is what was read, that the model covers Indexed Jobs, and why."""
    text = (MANIFESTS / "two-jobs/default/jobs.yaml").read_text().replace("  completionMode: Indexed\n", "")
    assert "completionMode" not in text
    with pytest.raises(ManifestError) as err:
        load_manifests(_write(tmp_path, text))
    msg = str(err.value)
    assert "'NonIndexed' (the default when unset) is not modelled" in msg
    assert "stable indices" in msg and "`completionMode: Indexed`" in msg and "is required" not in msg


def test_missing_env_and_affinity_are_not_silently_ignored(tmp_path):
    text = (MANIFESTS / "two-jobs/default-pods/pods.yaml").read_text()
    with pytest.raises(ManifestError, match="WORLD_SIZE"):
        load_manifests(_write(tmp_path, text.replace("name: WORLD_SIZE", "name: WORLD")))
    with pytest.raises(ManifestError, match="nodeSelector.*not supported"):
        load_manifests(_write(tmp_path, text.replace("  subdomain: train-a\n",
                                                     "  subdomain: train-a\n  nodeSelector: {a: b}\n", 1)))


def test_bad_yaml_and_missing_path(tmp_path):
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifests(_write(tmp_path, "a: [unclosed\n"))
    with pytest.raises(ManifestError, match=r"not valid YAML: line 3, column 10: mapping values") as err:
        load_manifests(_write(tmp_path, "kind: Pod\nmetadata:\n  name: a: b\n"))
    assert "\n" not in str(err.value)
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifests(tmp_path / "nope.yaml")


def test_vcjob_min_available_above_replicas_is_rejected(tmp_path):
    text = (MANIFESTS / "chapter/volcano/20-train-small.yaml").read_text()
    with pytest.raises(ManifestError, match="spec.minAvailable"):
        load_manifests(_write(tmp_path, text.replace("minAvailable: 3\n  maxRetry",
                                                     "minAvailable: 9\n  maxRetry")))


def test_undefined_podgroup_is_rejected(tmp_path):
    text = (MANIFESTS / "two-jobs/volcano/pods.yaml").read_text()
    docs = [d for d in text.split("\n---\n") if "kind: PodGroup" not in d]
    with pytest.raises(ManifestError, match="PodGroup 'train-a' is not defined"):
        load_manifests(_write(tmp_path, "\n---\n".join(docs)))


def test_volcano_objects_need_volcano():
    m = load_manifests(MANIFESTS / "two-jobs" / "volcano")
    with pytest.raises(ManifestError, match="only exist once Volcano is installed"):
        simulate(m, make_nodes(3, 2), "default")
    with pytest.raises(LabError, match="unknown scheduler"):
        simulate(m, make_nodes(3, 2), "kube-batch")


# ---------------------------------------------------------------- kube-scheduler rules

def test_fit_checks_every_requested_resource_and_pod_limit():
    cluster_key = ((4000, 8 * 2**30, 2), (3950, 0, 2), 0, 110)  # cpu, memory, gpu: 2 of 2 used
    reasons = default_scheduler.fit_failures(type("C", (), {"resources": ["cpu", "memory", GPU]}),
                                             cluster_key, (100, 2**20, 1))
    assert reasons == ["Insufficient cpu", f"Insufficient {GPU}"]
    full = ((4000, 2**30, 0), (0, 0, 0), 1, 1)
    assert default_scheduler.fit_failures(type("C", (), {"resources": ["cpu", "memory", GPU]}),
                                          full, (0, 0, 0)) == ["Too many pods"]


def test_least_allocated_prefers_the_emptier_node():
    alloc = (4000, 8 * 2**30)
    empty = default_scheduler.least_allocated_score(alloc, (0, 0), (1000, 2**30))
    busy = default_scheduler.least_allocated_score(alloc, (2000, 4 * 2**30), (1000, 2**30))
    assert empty == (75 + 87) // 2 and busy < empty
    # a pod without requests is scored with the 100m / 200Mi non-zero defaults
    assert default_scheduler.least_allocated_score(alloc, (0, 0), (0, 0)) == (97 + 97) // 2


def test_extended_resource_decides_placement():
    nodes = [NodeSpec("cpu-only", {"cpu": 64000, "memory": 2**36, GPU: 0}),
             NodeSpec("gpu", {"cpu": 4000, "memory": 2**33, GPU: 1})]
    r = simulate(bare(pods("a", 1, world=1)), nodes, "default")
    assert r.pods["a-0"]["node"] == "gpu"
    r = simulate(bare(pods("a", 2, world=1)), nodes, "default")
    # the cpu-rich node never fits: the second pod waits for the one GPU to be freed
    assert {p["node"] for p in r.pods.values()} == {"gpu"}
    assert r.pods["a-1"]["bound_at"] == r.pods["a-0"]["finished_at"]


def test_priority_orders_the_queue():
    low = pods("low", 1, priority=0, world=1)
    high = pods("high", 1, priority=1000, world=1)
    r = simulate(bare(low, high), make_nodes(1, 1), "default", config=SimConfig(horizon=30))
    assert r.pods["high-0"]["bound_at"] == 0 and r.pods["low-0"]["phase"] == "Pending"


def test_creation_order_breaks_priority_ties_and_retries_follow_freed_resources():
    first, second = pods("first", 1, world=1, work=10), pods("second", 1, world=1, work=10)
    r = simulate(bare(first, second), make_nodes(1, 1), "default")
    assert r.pods["first-0"]["bound_at"] == 0
    # second waited as unschedulable and was retried when first's GPU was freed
    assert r.pods["second-0"]["bound_at"] == r.pods["first-0"]["finished_at"] == 11
    failed = [e for e in r.events if e["type"] == "FailedScheduling"]
    assert failed and "Insufficient example.com/gpu" in failed[0]["message"]


def test_pods_for_another_scheduler_stay_pending_with_a_warning():
    r = simulate(bare(pods("vc", 1, scheduler="volcano", world=1)), make_nodes(1, 1), "default",
                 config=SimConfig(horizon=10))
    assert r.jobs["vc"].state == "pending" and r.warnings


def test_job_controller_slow_start_interleaves_jobs():
    """The model's order for Jobs applied together: slow-start batches in lockstep.

    One order the real, racing controller can produce (a known simplification, see
    helpers.scheduling.simulate); job_controller_batches=False gives the other outcome.
    """
    m = load_manifests(MANIFESTS / "two-jobs" / "default")
    r = simulate(m, make_nodes(3, 2), "default")
    created = [e["object"] for e in r.events if e["type"] == "Created"]
    assert created == ["pod/train-a-0", "pod/train-b-0", "pod/train-a-1", "pod/train-a-2",
                       "pod/train-b-1", "pod/train-b-2", "pod/train-a-3", "pod/train-b-3"]
    sequential = simulate(m, make_nodes(3, 2), "default", config=SimConfig(job_controller_batches=False))
    assert not sequential.gridlocked and sequential.metrics["jobs_completed"] == 2


# ---------------------------------------------------------------- workload semantics

def test_rendezvous_work_and_completion_free_resources():
    r = simulate(bare(pods("a", 2, work=50)), make_nodes(1, 2), "default")
    job = r.jobs["a"]
    assert (job.state, job.started_at, job.finished_at) == ("completed", 1.0, 51.0)
    assert r.metrics["makespan"] == 51.0 and r.metrics["jobs_completed"] == 1
    assert r.metrics["waste_gpu_seconds"] == pytest.approx(2.0)  # 2 GPUs x 1 s container start


def test_gridlock_is_partial_jobs_at_quiescence_and_waste_grows_to_horizon():
    a, b = pods("a", 2), pods("b", 2)
    r = simulate(bare(a, b, interleave=True), make_nodes(1, 2), "default", config=SimConfig(horizon=100))
    assert r.gridlocked and {j.state for j in r.jobs.values()} == {"gridlocked"}
    assert r.metrics["end_time"] == 100 and r.metrics["waste_gpu_seconds"] == pytest.approx(200)
    assert r.metrics["makespan"] is None


def test_never_ending_service_is_running_not_gridlocked():
    r = simulate(bare(pods("svc", 1, work=None, world=1)), make_nodes(1, 1), "default",
                 config=SimConfig(horizon=100))
    assert r.jobs["svc"].state == "running" and not r.gridlocked


def test_same_seed_same_run_and_seed_only_breaks_ties():
    m = load_manifests(MANIFESTS / "chapter" / "default")
    one = simulate(m, make_nodes(4, 2), "default", seed=5).to_dict()
    two = simulate(m, make_nodes(4, 2), "default", seed=5).to_dict()
    assert one == two
    other = simulate(m, make_nodes(4, 2), "default", seed=6).to_dict()
    assert other["jobs"] == one["jobs"] and other["gridlocked"] == one["gridlocked"]


# ---------------------------------------------------------------- Volcano rules

def test_gang_commit_binds_all_members_at_once():
    r = simulate(bare(pods("a", 4, scheduler="volcano", group="a"), podgroups=[gang("a", 4)]),
                 make_nodes(2, 2), "volcano")
    bound = {p["bound_at"] for p in r.pods.values()}
    assert len(bound) == 1 and r.jobs["a"].state == "completed"


def test_gang_discard_leaves_nothing_bound_when_min_member_cannot_fit():
    # no minResources: enqueue admits it, so allocate tries and must discard the statement
    five = pods("a", 5, scheduler="volcano", group="a")
    r = simulate(bare(five, podgroups=[gang("a", 5, min_res=False)]),
                 make_nodes(2, 2), "volcano", config=SimConfig(horizon=60))
    assert all(p["node"] is None for p in r.pods.values())
    assert r.podgroups["a"].phase == "Inqueue" and not r.gridlocked
    assert any("tasks in gang unschedulable" in e["message"] for e in r.events)


def test_enqueue_rejects_by_min_resources_with_overcommit_factor():
    big = [gang("big", 5)]
    r = simulate(bare(pods("big", 5, scheduler="volcano", group="big"), podgroups=big),
                 make_nodes(2, 2), "volcano", config=SimConfig(horizon=60))
    assert r.podgroups["big"].phase == "Pending"  # 5 > 4 GPUs x 1.2 = 4.8
    assert any("overused" in e["message"] for e in r.events)
    r = simulate(bare(pods("big", 5, scheduler="volcano", group="big"), podgroups=big),
                 make_nodes(2, 2), "volcano", config=SimConfig(horizon=60, overcommit_factor=1.25))
    # overcommit now permits (4 x 1.25 = 5), but proportion still rejects: the default
    # queue's real capability is the cluster's 4 GPUs
    assert r.podgroups["big"].phase == "Pending"
    assert any("queue resource quota insufficient" in e["message"] for e in r.events)


def test_queue_capability_blocks_enqueue():
    q = QueueSpec(name="small", weight=1, capability={GPU: 2})
    r = simulate(bare(pods("a", 3, scheduler="volcano", group="a"), podgroups=[gang("a", 3, "small")],
                      queues=[q]), make_nodes(2, 2), "volcano", config=SimConfig(horizon=60))
    assert r.podgroups["a"].phase == "Pending"
    assert any("queue resource quota insufficient" in e["message"] for e in r.events)


def test_queue_weights_share_the_cluster():
    qa, qb = QueueSpec(name="qa", weight=3), QueueSpec(name="qb", weight=1)
    jobs, groups = [], []
    for q in ("qa", "qb"):
        for k in range(4):
            name = f"{q}-{k}"
            jobs.append(pods(name, 2, scheduler="volcano", group=name))
            groups.append(gang(name, 2, q, min_res=False))
    r = simulate(bare(*jobs, podgroups=groups, queues=[qa, qb]), make_nodes(4, 2), "volcano")
    assert r.bound_by_queue(1.0) == {"qa": 6, "qb": 2}
    assert r.metrics["jobs_completed"] == 8


def test_vcjob_pods_are_created_only_after_inqueue():
    r = simulate(load_manifests([MANIFESTS / "namespace.yaml", MANIFESTS / "two-jobs" / "volcano-job"]),
                 make_nodes(3, 2), "volcano")
    b = r.podgroups["train-b"].history
    inqueue_b = next(t for t, p in b if p == "Inqueue")
    assert inqueue_b > 100  # waited for train-a to finish
    assert min(p["created_at"] for n, p in r.pods.items() if p["job"] == "train-b") >= inqueue_b


def test_node_order_score_and_installer_list():
    key = ((4000, 2**33), (0, 0), 0, 110)
    assert volcano.node_order_score(key, (100, 2**26), 0, 1) > 0
    kinds = {k for k, _, _ in volcano.INSTALLER_OBJECTS}
    assert {"Deployment", "Job", "CustomResourceDefinition"} <= kinds
    assert len(volcano.INSTALLER_OBJECTS) == len(set(volcano.INSTALLER_OBJECTS))


def test_priority_class_manifest_sets_pod_priority(tmp_path):
    pc = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: urgent}\nvalue: 1000\n"
    pod = (MANIFESTS / "two-jobs/default-pods/pods.yaml").read_text().split("\n---\n")
    first_pod = next(d for d in pod if "kind: Pod" in d)
    first_pod = first_pod.replace("  schedulerName:", "  priorityClassName: urgent\n  schedulerName:")
    (tmp_path / "a.yaml").write_text(pc)
    (tmp_path / "b.yaml").write_text(first_pod)
    m = load_manifests(tmp_path)
    assert m.jobs[0].pods[0].priority == 1000
    (tmp_path / "a.yaml").unlink()
    with pytest.raises(ManifestError, match="PriorityClass 'urgent' is not defined"):
        load_manifests(tmp_path)


def test_backfill_places_best_effort_volcano_pods():
    be = pods("be", 1, scheduler="volcano", group="be", req={}, world=1)
    r = simulate(bare(be, podgroups=[gang("be", 1, min_res=False)]), make_nodes(1, 0), "volcano")
    assert r.pods["be-0"]["node"] == "node-0" and r.jobs["be"].state == "completed"


def test_select_keeps_named_workloads_and_queues():
    m = load_manifests(MANIFESTS / "queues").select(lambda name: name.endswith("job0"))
    assert sorted(j.name for j in m.jobs) == ["team-a-job0", "team-b-job0"]
    assert sorted(g.name for g in m.podgroups) == ["team-a-job0", "team-b-job0"]
    assert [q.name for q in m.queues] == ["team-a", "team-b"]


def test_restart_always_with_finite_work_is_rejected(tmp_path):
    text = (MANIFESTS / "two-jobs/default-pods/pods.yaml").read_text().replace(
        "restartPolicy: Never", "restartPolicy: Always")
    with pytest.raises(ManifestError, match="restartPolicy: Always restarts a worker"):
        load_manifests(_write(tmp_path, text))


def test_capability_caps_deserved_and_the_rest_flows_to_other_queues():
    qa = QueueSpec(name="qa", weight=3, capability={GPU: 2})
    qb = QueueSpec(name="qb", weight=1)
    jobs, groups = [], []
    for q in ("qa", "qb"):
        for k in range(4):
            name = f"{q}-{k}"
            jobs.append(pods(name, 2, scheduler="volcano", group=name))
            groups.append(gang(name, 2, q, min_res=False))
    r = simulate(bare(*jobs, podgroups=groups, queues=[qa, qb]), make_nodes(4, 2), "volcano")
    # water-filling: qa deserves 6 by weight but is capped at 2; qb gets what qa cannot use
    assert r.bound_by_queue(1.0) == {"qa": 2, "qb": 6}


def test_queue_order_prefers_the_lower_share():
    attr_busy = volcano._QueueAttr("busy", 1, 0, 0, 1)
    attr_idle = volcano._QueueAttr("idle", 1, 0, 1, 1)
    attr_busy.deserved, attr_busy.allocated = [4.0], [3.0]
    attr_idle.deserved, attr_idle.allocated = [4.0], [1.0]
    for a in (attr_busy, attr_idle):
        a.update_share()
    assert (attr_busy.share, attr_idle.share) == (0.75, 0.25)
    assert min([attr_busy, attr_idle], key=volcano._QueueAttr.order).name == "idle"


def test_vcjob_task_errors_name_the_task_field(tmp_path):
    text = (MANIFESTS / "chapter/volcano/20-train-small.yaml").read_text().replace(
        "      replicas: 3\n", "")
    with pytest.raises(ManifestError, match=r"bad.yaml \(document 0\): field spec\.tasks\.0\.replicas"):
        load_manifests(_write(tmp_path, text))


def test_vcjob_completion_deletes_its_podgroup_and_logs_the_job_phases():
    r = simulate(load_manifests([MANIFESTS / "namespace.yaml", MANIFESTS / "two-jobs" / "volcano-job"]),
                 make_nodes(3, 2), "volcano")
    for name in ("train-a", "train-b"):
        g = r.podgroups[name]
        assert [p for _, p in g.history] == ["Pending", "Inqueue", "Running"]
        assert g.deleted_at == r.jobs[name].finished_at is not None
        deleted = [e for e in r.events if e["object"] == f"podgroup/{name}" and e["message"] == "deleted"]
        assert [(e["type"], e["t"]) for e in deleted] == [("podgroup", g.deleted_at)]
        # nothing happens to a deleted PodGroup afterwards (it left Volcano's snapshot)
        assert not [e for e in r.events if e["object"] == f"podgroup/{name}" and e["t"] > g.deleted_at]
        assert r.vcjob_phases(name) == ["Pending", "Running", "Completing", "Completed"]
    assert "(deleted with its Volcano Job)" in r.summary()
    assert SchedulingResult.from_dict(json.loads(json.dumps(r.to_dict()))).podgroups == r.podgroups


def test_hand_made_podgroups_are_not_deleted():
    r = simulate(load_manifests([MANIFESTS / "namespace.yaml", MANIFESTS / "two-jobs" / "volcano"]),
                 make_nodes(3, 2), "volcano")
    assert {g.phase for g in r.podgroups.values()} == {"Completed"}
    assert all(g.deleted_at is None for g in r.podgroups.values())
    assert not [e for e in r.events if e["message"] == "deleted"] and r.vcjob_phases("train-a") == []


def test_share_at_start_counts_a_session_seen_over_several_polls():
    """bound_by_queue_at_start: the whole first allocation, even if its binds are seen late."""
    import copy

    from helpers import scheduling

    run = scheduling.run_scenario("queues", "volcano")
    assert run.bound_by_queue_at_start() == {"team-a": 6, "team-b": 2}
    seen_late = copy.deepcopy(run)
    first_bind = min(p["bound_at"] for p in run.pods.values() if p["bound_at"] is not None)
    first_finish = min(p["finished_at"] for p in run.pods.values() if p["finished_at"] is not None)
    late = next(p for p in seen_late.pods.values() if p["bound_at"] == first_bind
                and seen_late.jobs[p["job"]].queue == "team-a")
    late["bound_at"] = (first_bind + first_finish) / 2  # a poll later, still before any finish
    assert seen_late.bound_by_queue(first_bind) == {"team-a": 5, "team-b": 2}
    assert seen_late.bound_by_queue_at_start() == {"team-a": 6, "team-b": 2}
