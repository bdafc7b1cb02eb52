"""Unit tests of the control-plane helpers that need neither Go nor a running cluster."""

from __future__ import annotations

import json
import os
import re
import socket
import sys

import pytest
import yaml

from helpers import controlplane, paths, versions
from helpers.backend import scheduling_run
from helpers.backend.kwok import build as kwok_build
from helpers.backend.kwok import layout as kwok_layout
from helpers.backend.kwok import nodes as kwok_nodes
from helpers.backend.kwok import supervisor as kwok_supervisor
from helpers.errors import BackendUnavailable, LabError
from helpers.kube import client as k8s


def test_wrapper_modules_agree_with_versions_yaml():
    """Every go.mod requires exactly the version pinned in cluster/versions.yaml."""
    kwok_build.check_pins()
    kube = kwok_build._gomod_versions(kwok_layout.controlplane_dir() / "kube" / "go.mod")
    want = "v" + versions.pin("kubernetes").lstrip("v")
    assert kube["k8s.io/kubernetes"] == want
    # every staging module is replaced by its published release of the same Kubernetes minor
    staging = {m: v for m, v in kube.items() if m.startswith("k8s.io/") and m != "k8s.io/kubernetes"}
    published = "v0." + want.split(".", 1)[1]
    assert staging["k8s.io/api"] == published
    assert staging["k8s.io/client-go"] == published


def test_check_pins_names_the_disagreeing_module(monkeypatch):
    real = versions.pins()
    monkeypatch.setattr(versions, "pins", lambda: {**real, "kwok": "v0.7.0"})
    with pytest.raises(LabError, match=r"sigs.k8s.io/kwok v0.8.0, versions.yaml pins kwok: v0.7.0"):
        kwok_build.check_pins()


def test_gomod_parser_reads_requires_and_replaces(tmp_path):
    gomod = tmp_path / "go.mod"
    gomod.write_text("module x\n\nrequire (\n\ta.io/b v1.2.3 // indirect\n\tc.io/d v0.1.0\n)\n"
                     "require e.io/f v2.0.0\n\nreplace (\n\ta.io/b => a.io/b v1.2.4\n"
                     "\tg.io/h => ../local\n)\n")
    got = kwok_build._gomod_versions(gomod)
    assert got == {"a.io/b": "v1.2.4", "c.io/d": "v0.1.0", "e.io/f": "v2.0.0"}


def test_default_binary_names_follow_go_build():
    assert kwok_build._default_binary_name("go.etcd.io/etcd/server/v3") == "server"
    assert kwok_build._default_binary_name("k8s.io/kubernetes/cmd/kube-apiserver") == "kube-apiserver"
    assert kwok_build._default_binary_name("volcano.sh/volcano/cmd/scheduler") == "scheduler"


def test_go_builds_cover_every_binary_with_version_ldflags():
    built = {name for spec in kwok_build.go_builds() for name in spec.binaries}
    assert built == {*kwok_build.BINARIES, *kwok_build.OPTIONAL_BINARIES}
    kube = next(s for s in kwok_build.go_builds() if s.module == "kube")
    assert f"-X k8s.io/component-base/version.gitVersion=v{versions.pin('kubernetes').lstrip('v')}" \
        in kube.ldflags
    for spec in kwok_build.go_builds():
        # the Training Operator and Trainer v2 (no package of either holds one) have no
        # version variable to stamp
        assert spec.ldflags or spec.module in ("training-operator", "trainer"), f"{spec.module}: no ldflags"


def test_kwok_stages_never_complete_pods_on_their_own():
    docs = list(yaml.safe_load_all((kwok_layout.controlplane_dir() / "config" /
                                    "kwok-stages.yaml").read_text()))
    conf = docs[0]
    assert conf["kind"] == "KwokConfiguration"
    assert conf["options"]["manageAllNodes"] is False
    assert conf["options"]["manageNodesWithAnnotationSelector"] == "kwok.x-k8s.io/node=fake"
    stages = {d["metadata"]["name"]: d for d in docs[1:]}
    assert set(stages) == {"node-initialize", "node-heartbeat", "pod-ready",
                           "pod-complete-at-run-until", "pod-delete"}
    finishing = [n for n, d in stages.items() if "Succeeded" in str(d["spec"]["next"])]
    assert finishing == ["pod-complete-at-run-until"]
    keys = [e["key"] for e in stages["pod-complete-at-run-until"]["spec"]["selector"]["matchExpressions"]]
    assert f'.metadata.annotations["{kwok_layout.RUN_UNTIL_ANNOTATION}"]' in keys


def test_run_until_is_an_rfc3339_time_that_go_reads_as_a_time():
    """The annotation's value: UTC, microseconds, 'Z' (Go's time.RFC3339Nano parses it)."""
    from datetime import datetime, timezone

    from helpers.backend import scheduling_run

    start = datetime(2026, 12, 2, 1, 59, 58, 500000, tzinfo=timezone.utc)
    assert scheduling_run.run_until(2.25, now=start) == "2026-12-02T02:00:00.750000Z"
    stage = yaml.safe_load_all((kwok_layout.controlplane_dir() / "config" / "kwok-stages.yaml").read_text())
    complete = next(d for d in stage if d.get("metadata", {}).get("name") == "pod-complete-at-run-until")
    assert kwok_layout.RUN_UNTIL_ANNOTATION in complete["spec"]["delay"]["durationFrom"]["expressionFrom"]


def test_volcano_scheduler_conf_has_the_default_actions():
    conf = yaml.safe_load((kwok_layout.controlplane_dir() / "config" /
                           "volcano-scheduler.conf").read_text())
    assert [a.strip() for a in conf["actions"].split(",")] == ["enqueue", "allocate", "backfill"]
    plugins = [p["name"] for tier in conf["tiers"] for p in tier["plugins"]]
    assert "gang" in plugins
    assert "proportion" in plugins


def test_fake_node_is_managed_by_kwok_and_has_gpus():
    node = kwok_nodes.fake_node("n1", gpus=3)
    assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert node["status"]["capacity"]["example.com/gpu"] == "3"
    assert node["status"]["allocatable"] == node["status"]["capacity"]


def test_ports_follow_the_base_and_reject_nonsense(monkeypatch):
    monkeypatch.setenv(kwok_layout.PORT_BASE_ENV, "40000")
    p = kwok_supervisor.ports()
    assert p["kube-apiserver"] == 40043
    assert len(set(p.values())) == len(p)
    monkeypatch.setenv(kwok_layout.PORT_BASE_ENV, "http")
    with pytest.raises(LabError, match="must be a number"):
        kwok_supervisor.ports()


def test_workload_api_is_switched_on_for_the_apiserver_and_the_scheduler(monkeypatch, tmp_path):
    monkeypatch.setattr(kwok_supervisor.ssl, "create_default_context", lambda **_: None)  # no CA yet
    comps = {c.name: c.argv for c in kwok_supervisor._components(tmp_path, kwok_supervisor.ports(), "t")}
    assert "--feature-gates=GenericWorkload=true" in comps["kube-apiserver"]
    assert "--runtime-config=scheduling.k8s.io/v1alpha1=true" in comps["kube-apiserver"]
    assert "--feature-gates=GenericWorkload=true,GangScheduling=true" in comps["kube-scheduler"]
    assert not [a for a in comps["kube-controller-manager"] if a.startswith("--feature-gates")]


def _isolated(monkeypatch, tmp_path, base: int) -> None:
    monkeypatch.setenv("KFLABS_ROOT", str(tmp_path))
    monkeypatch.setenv(kwok_layout.PORT_BASE_ENV, str(base))


def _free_base() -> int:
    """A port base whose whole range is free right now."""
    for base in range(41000, 60000, 200):
        if all(kwok_supervisor.port_free(base + off) for off in kwok_layout.PORT_OFFSETS.values()):
            return base
    pytest.skip("no free port range found")
    return 0


def test_up_reports_a_port_taken_by_another_program(monkeypatch, tmp_path):
    base = _free_base()
    _isolated(monkeypatch, tmp_path, base)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + kwok_layout.PORT_OFFSETS["kube-apiserver"]))
        blocker.listen()
        with pytest.raises(BackendUnavailable) as err:
            kwok_supervisor.up(nodes=0, build_first=False, log=lambda _m: None)
    msg = str(err.value)
    assert f"kube-apiserver 127.0.0.1:{base + 43}" in msg
    assert kwok_layout.PORT_BASE_ENV in msg


def test_a_component_that_dies_reports_its_log_tail_and_port(monkeypatch, tmp_path):
    base = _free_base()
    _isolated(monkeypatch, tmp_path, base)
    monkeypatch.setattr(kwok_build, "binaries_present", lambda: True)
    crash = kwok_supervisor.Component(
        "etcd", [sys.executable, "-c", "print('bind: address already in use'); raise SystemExit(3)"],
        base + 79, ready=lambda: False, timeout=20)
    monkeypatch.setattr(kwok_supervisor, "_components", lambda *_a: [crash])
    with pytest.raises(BackendUnavailable) as err:
        kwok_supervisor.up(nodes=0, build_first=False, log=lambda _m: None)
    msg = str(err.value)
    assert "etcd exited with status 3" in msg
    assert f"127.0.0.1:{base + 79}" in msg
    assert "bind: address already in use" in msg
    assert kwok_supervisor.status() == {}, "a failed start must leave nothing recorded as running"


def test_down_is_safe_when_nothing_runs(monkeypatch, tmp_path):
    _isolated(monkeypatch, tmp_path, _free_base())
    assert kwok_supervisor.down(quiet=True) == []
    assert kwok_supervisor.down(quiet=True) == []
    assert kwok_supervisor.is_up() is False


def test_a_component_that_died_after_start_is_named_with_its_log_tail(monkeypatch, tmp_path):
    """A scheduler that crashed mid-run: the refusal and a run's diagnostics say which, and why."""
    import subprocess

    from helpers.backend.kwok import KwokBackend

    _isolated(monkeypatch, tmp_path, _free_base())
    st = kwok_layout.state_dir()
    (st / "logs").mkdir(parents=True)
    (st / "logs" / "kube-scheduler.log").write_text("I0101 started\npanic: nil map\n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        table = {name: {"pid": alive.pid, "port": 1, "argv": [os.path.realpath(sys.executable)]}
                 for name in kwok_build.BINARIES}
        table["kube-scheduler"] = {"pid": gone.pid, "port": 2, "argv": ["/x/kube-scheduler"]}
        (st / "pids.json").write_text(json.dumps(table))
        found = kwok_supervisor.problems()
        assert len(found) == 1 and found[0].startswith(f"kube-scheduler (pid {gone.pid}) is no "
                                                       "longer running")
        assert "panic: nil map" in found[0]
        assert kwok_supervisor.is_up() is False
        with pytest.raises(BackendUnavailable, match="(?s)kube-scheduler.*panic: nil map.*"
                                                     "make controlplane-up"):
            kwok_supervisor.require_up()
        health = KwokBackend("test").health()
        assert "-- the control plane: kube-scheduler" in health and "panic: nil map" in health
    finally:
        alive.kill()
        alive.wait()


def test_nothing_started_is_one_clear_reason(monkeypatch, tmp_path):
    _isolated(monkeypatch, tmp_path, _free_base())
    assert kwok_supervisor.problems() == ["the control plane is not running"]
    with pytest.raises(BackendUnavailable, match="not up: the control plane is not running"):
        kwok_supervisor.require_up()


def test_go_missing_is_a_clear_skip_reason(monkeypatch):
    monkeypatch.setattr(kwok_build.shutil, "which", lambda _name: None)
    with pytest.raises(BackendUnavailable, match=r"Go is not installed.*BACKEND=\"sim\""):
        kwok_build.go_binary()
    assert controlplane.main(["build", "--if-go"]) == 0


def test_manifest_files_keep_the_models_order(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/20-x.yaml", "b/10-y.yaml", "a.yml"):
        (tmp_path / name).write_text("kind: Namespace\n")
    got = scheduling_run.manifest_files([tmp_path / "b", tmp_path / "a.yml"])
    assert [p.name for p in got] == ["10-y.yaml", "20-x.yaml", "a.yml"]
    with pytest.raises(LabError, match="no such manifest"):
        scheduling_run.manifest_files([tmp_path / "missing"])


def _two_jobs_run(time_scale: float = 1.0):
    from helpers import paths
    from helpers.scheduling import load_manifests

    base = paths.manifests_dir("scheduling")
    manifests = load_manifests([base / "namespace.yaml", base / "two-jobs" / "default-pods"])
    return scheduling_run._Run(manifests, t0=0.0, time_scale=time_scale)


def _track(run, name: str, job: str, **fields):
    t = scheduling_run._PodTrack(name, job, name, created_at=0.0, **fields)
    run.pods[name] = t
    return t


def test_job_states_follow_the_rendezvous():
    run = _two_jobs_run()
    spec = next(j for j in run.manifests.jobs if j.name == "train-a")
    tracks = [_track(run, f"train-a-{i}", "train-a", node="node-0", bound_at=0.0, phase="Running")
              for i in range(3)]
    waiting = scheduling_run._job_result(spec, tracks, run)
    assert (waiting.bound, waiting.pending, waiting.state) == (3, 1, "waiting")
    tracks.append(_track(run, "train-a-3", "train-a", node="node-1", bound_at=1.0,
                         phase="Running"))
    for t in tracks:
        t.working_at = 1.0
    assert scheduling_run._job_result(spec, tracks, run).state == "running"
    for t in tracks:
        t.phase, t.finished_at = "Succeeded", 2.0
    done = scheduling_run._job_result(spec, tracks, run)
    assert (done.bound, done.completed, done.state, done.finished_at) == (0, 4, "completed", 2.0)
    assert scheduling_run._job_result(spec, [], run).state == "pending"


def test_waste_counts_gpu_seconds_bound_but_not_working():
    from helpers.scheduling import make_nodes

    run = _two_jobs_run(time_scale=0.5)  # real seconds are half a lesson second
    _track(run, "train-a-0", "train-a", node="node-0", bound_at=0.0, working_at=1.0,
           finished_at=3.0, phase="Succeeded")
    _track(run, "train-b-0", "train-b", node="node-1", bound_at=1.0, phase="Running")
    waste, util = scheduling_run._waste_and_utilisation(run, make_nodes(3, 2), end=4.0)
    # train-a-0 idles 1 s before its rendezvous; train-b-0 idles from 1 s to the end (3 s)
    assert waste == (1.0 + 3.0) / 0.5
    assert util["capacity"] == 6
    assert max(util["allocated"]) == 2
    assert util["working"][util["t"].index(run.lesson(1.0))] == 1


def test_a_run_is_not_quiet_while_work_is_due():
    run = _two_jobs_run()
    run.last_change = -100.0  # long ago
    assert scheduling_run._quiet(run, settle=3)
    _track(run, "train-a-0", "train-a", node="node-0", bound_at=0.0, phase="Running",
           annotated=True)
    assert not scheduling_run._quiet(run, settle=3)


# -- PhaseTrail: the poll's record, completed by the watch -------------------------------

def _trail_run(sightings, watched_at):
    """Feed PhaseTrail the poll's sightings with the watch's sequence at each one."""
    from helpers.kube.phase_watch import PhaseTrail

    trail, recorded = PhaseTrail(), []
    for current, watched in zip(sightings, watched_at, strict=True):
        recorded.append(trail.see(current, watched))
    return recorded, trail.recorded


def test_phase_trail_restores_a_phase_shorter_than_a_poll():
    """The poll first sees Inqueue; the watch saw Pending before it: both are recorded."""
    steps, whole = _trail_run(["Inqueue", "Inqueue", "Running"],
                              [["Pending", "Inqueue"], ["Pending", "Inqueue"],
                               ["Pending", "Inqueue", "Running"]])
    assert steps == [["Pending", "Inqueue"], [], ["Running"]]
    assert whole == ["Pending", "Inqueue", "Running"]


def test_phase_trail_keeps_flip_flops_the_poll_missed():
    """Inqueue -> Pending -> Inqueue between two polls shows as such."""
    _, whole = _trail_run(["Inqueue", "Inqueue"],
                          [["Inqueue"], ["Inqueue", "Pending", "Inqueue"]])
    assert whole == ["Inqueue", "Pending", "Inqueue"]


def test_phase_trail_with_a_lagging_watch_keeps_the_poll_order():
    """The poll is ahead of the watch: its sighting stands; the watch's later news that
    precedes it cannot be placed, and nothing is recorded twice or out of order."""
    _, whole = _trail_run(["Running", "Running", "Completed"],
                          [[], ["Pending", "Inqueue", "Running"],
                           ["Pending", "Inqueue", "Running", "Completed"]])
    assert whole == ["Running", "Completed"]


def test_phase_trail_without_a_watch_is_the_plain_poll():
    _, whole = _trail_run(["Pending", "Pending", "Inqueue", "Running"], [[], [], [], []])
    assert whole == ["Pending", "Inqueue", "Running"]


def test_phase_readers_default_like_the_controllers():
    from helpers.kube.phase_watch import podgroup_phase, vcjob_phase

    assert podgroup_phase({"metadata": {}}) == "Pending"  # no status yet: Pending
    assert podgroup_phase({"status": {"phase": "Inqueue"}}) == "Inqueue"
    assert vcjob_phase({"status": {}}) is None
    assert vcjob_phase({"status": {"state": {"phase": "Running"}}}) == "Running"


def test_kind_runs_the_workers_work_on_the_run_s_time_scale():
    """On kind the containers really sleep WORK_SECONDS: the run scales it, services stay."""
    from helpers import backend

    docs = k8s.load_manifests(paths.manifests_dir("scheduling") / "chapter/volcano/10-train-big.yaml")
    docs += k8s.load_manifests(paths.manifests_dir("scheduling") / "chapter/volcano/00-serving.yaml")

    def work_values(doc) -> list[str]:
        text = json.dumps(doc)
        return re.findall(r'"name": "WORK_SECONDS", "value": "([^"]+)"', text)

    before = [v for d in docs for v in work_values(d)]
    assert "300" in before and "forever" in before, before
    kind, kwok = backend.make("kind", "t"), backend.make("kwok", "t")
    scaled = kind.adapt_manifests(docs, 0.02)
    after = [v for d in scaled for v in work_values(d)]
    assert after == ["6" if v == "300" else v for v in before], after
    assert [v for d in docs for v in work_values(d)] == before, "the input must not change"
    assert work_values(kind.adapt_manifests(docs[:1], 1e-6)[0]) == ["1"]  # >= 1 s
    assert kwok.adapt_manifests(docs, 0.02) == docs  # nothing runs on kwok's fake nodes
