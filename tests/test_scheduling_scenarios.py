"""Scenario tests (gridlock under default, none under Volcano), the CLI, explorer and plots."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import pytest

from helpers import paths, scheduling
from helpers.errors import BackendUnavailable, LabError
from helpers.scheduling import __main__ as cli
from helpers.scheduling import explorer, plots, training_operator

matplotlib.use("Agg")
SCHED = paths.manifests_dir("scheduling")


def test_chapter_case_gridlocks_default_not_volcano():
    d = scheduling.run_scenario("chapter", "default")
    v = scheduling.run_scenario("chapter", "volcano")
    assert d.gridlocked and d.jobs["train-big"].bound == 3 and d.jobs["train-small"].state == "pending"
    assert not v.gridlocked and v.jobs["train-big"].bound == 0 and v.jobs["train-small"].state == "completed"
    assert d.metrics["waste_gpu_seconds"] > 10_000 > v.metrics["waste_gpu_seconds"]


@pytest.mark.parametrize("variant", ["default", "default-pods"])
def test_two_jobs_gridlock_under_default(variant):
    r = scheduling.run_scenario("two-jobs", variant)
    assert r.gridlocked and r.metrics["jobs_completed"] == 0
    assert sorted(j.bound for j in r.jobs.values()) == [3, 3]


@pytest.mark.parametrize("variant", ["volcano", "volcano-job"])
def test_two_jobs_never_gridlock_under_volcano(variant):
    for seed in range(3):
        r = scheduling.run_scenario("two-jobs", variant, seed=seed)
        assert not r.gridlocked and r.metrics["jobs_completed"] == 2
        if variant == "volcano":  # hand-made PodGroups reach Completed
            assert all(g.phase == "Completed" and g.deleted_at is None for g in r.podgroups.values())
        else:  # vc-controller-manager deletes a Volcano Job's PodGroup when the job completes
            for name, g in r.podgroups.items():
                assert g.phase == "Running" and g.deleted_at == r.jobs[name].finished_at
                assert r.vcjob_phases(name) == ["Pending", "Running", "Completing", "Completed"]


def test_result_round_trips_through_json():
    r = scheduling.run_scenario("two-jobs", "volcano")
    data = json.loads(json.dumps(r.to_dict()))
    assert set(data) >= {"backend", "scheduler", "gridlocked", "jobs", "podgroups", "metrics", "events"}
    assert set(data["metrics"]) >= {"jobs_completed", "makespan", "waste", "utilisation", "waste_gpu_seconds"}
    assert scheduling.SchedulingResult.from_dict(data).to_dict() == data


def test_cluster_backend_dispatch_and_unknown_names():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        scheduling.run_scenario("chapter", "default", "minikube")
    with pytest.raises(LabError, match="unknown scenario"):
        scheduling.run_scenario("nope")
    with pytest.raises(LabError, match="no 'volcano-job' variant"):
        scheduling.run_scenario("chapter", "volcano-job")


def test_cli_summary_json_and_errors(capsys):
    args = ["--manifests", str(SCHED / "namespace.yaml"), str(SCHED / "two-jobs/volcano"),
            "--nodes", "3", "--node-gpus", "2", "--scheduler", "volcano"]
    assert cli.main(args) == 0
    assert "gridlocked=False" in capsys.readouterr().out
    assert cli.main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gridlocked"] is False and data["jobs"]["train-a"]["state"] == "completed"
    with pytest.raises(SystemExit) as exc:
        cli.main([*args[:-1], "default"])
    assert exc.value.code == 2 and "Volcano is installed" in capsys.readouterr().err


def test_cli_runs_as_module_with_node_resources():
    proc = subprocess.run([sys.executable, "-m", "helpers.scheduling", "--manifests",
                           str(SCHED / "two-jobs/default"), "--nodes", "3", "--node-gpus", "2",
                           "--node-cpu", "8", "--node-memory", "16Gi", "--scheduler", "default",
                           "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["gridlocked"] is True
    assert data["nodes"]["node-0"]["allocatable"]["cpu"] == 8000
    bad = subprocess.run([sys.executable, "-m", "helpers.scheduling", "--manifests", "/nonexistent",
                          "--nodes", "1", "--node-gpus", "1", "--scheduler", "default"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "no such manifest" in bad.stderr


def test_explorer_orders_and_widget_builds():
    assert explorer.explore(order="interleaved", scheduler="default").gridlocked
    assert not explorer.explore(order="A first", scheduler="default").gridlocked
    assert not explorer.explore(order="interleaved", scheduler="volcano").gridlocked
    with pytest.raises(LabError):
        explorer.two_jobs(0, 1, "interleaved", "default")
    widget = explorer.explorer()
    assert len(widget.children) == 5


def test_explorer_redraws_outside_a_kernel():
    """`explorer(seed=42).redraw()` in a plain Python draws, without plt.show(fig)'s TypeError."""
    widget = explorer.explorer(seed=42)
    widget.redraw()
    assert "gridlocked: True" in widget.children[3].value


def test_explorer_is_shown_only_where_a_frontend_draws_widgets(monkeypatch):
    """auto: shown in a kernel a Jupyter server session started, hidden in papermill's or none."""
    import IPython

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not explorer.should_show("auto")  # no kernel here
    kernel_shell = type("Shell", (), {"kernel": object()})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: kernel_shell)
    assert not explorer.should_show("auto")  # a kernel, but papermill's: no session
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/my-labs/01_gridlock_vs_gang.ipynb")
    assert explorer.should_show("auto")
    assert explorer.should_show("yes") and not explorer.should_show("no")
    with pytest.raises(LabError, match="choose one of auto, yes, no"):
        explorer.should_show("True")


def test_plots_render_headless():
    d = scheduling.run_scenario("two-jobs", "default")
    fig = plots.compare({"default": d, "volcano": scheduling.run_scenario("two-jobs", "volcano")})
    assert len(fig.axes) >= 4
    ax = plots.gantt(d.to_dict()).axes[0]
    assert len(ax.get_yticklabels()) == 6  # 3 nodes x 2 GPU lanes
    assert "GRIDLOCKED" in ax.get_title()


def test_compared_panels_share_one_time_axis_and_keep_every_gpu_lane():
    """Side by side, both columns span the same time; an unused GPU still has its lane; the
    "allocated" curve stays visible where "working" runs on top of it."""
    two = {"default": scheduling.run_scenario("two-jobs", "default-pods"),
           "volcano": scheduling.run_scenario("two-jobs", "volcano")}
    assert two["default"].metrics["end_time"] != two["volcano"].metrics["end_time"]
    fig = plots.compare(two)
    assert len({ax.get_xlim() for ax in fig.axes if ax.get_xlabel() == "time (s)"}) == 1
    volcano = two["volcano"]
    gpus = sum(n["allocatable"]["example.com/gpu"] for n in volcano.to_dict()["nodes"].values())
    # One of the 6 GPUs is never used in this run: it keeps its (empty) lane.
    assert len(plots.gantt(volcano).axes[0].get_yticklabels()) == gpus
    lines = {ln.get_label(): ln for ln in plots.utilisation(volcano).axes[0].get_lines()}
    assert lines["allocated"].get_linewidth() > lines["working"].get_linewidth()
    assert lines["working"].get_linestyle() == "--"
    plt.close("all")


def test_training_operator_patch_targets_the_deployment_template():
    patch = training_operator.gang_scheduler_patch()
    assert patch == [{"op": "add", "path": "/spec/template/spec/containers/0/command/1",
                      "value": "--gang-scheduler-name=volcano"}]
    pg = training_operator.operator_podgroup(training_operator.xgboost_job(workers=3))
    assert pg["spec"]["minMember"] == 4 and pg["spec"]["minResources"]["cpu"] == "2000m"
    with pytest.raises(LabError):
        training_operator.apply_json_patch({"spec": {}}, patch)


def test_gantt_colours_by_queue():
    fig = plots.gantt(scheduling.run_scenario("queues", "volcano"), color_by="queue")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["team-a", "team-b", "held, idle"]
    with pytest.raises(ValueError, match="color_by"):
        plots.gantt(scheduling.run_scenario("queues", "volcano"), color_by="node")


def test_cluster_backends_go_through_cluster_run_with_the_same_manifests(monkeypatch):
    from helpers import backend
    from helpers.backend import scheduling_run

    seen = {}

    def fake_run(manifest_paths, nodes, **kwargs):
        seen.update(paths=list(manifest_paths), nodes=nodes, **kwargs)
        return scheduling.run_scenario("chapter", "volcano")

    monkeypatch.setattr(scheduling_run, "run", fake_run)
    kwok = backend.make("kwok", "test", kubeconfig="/nonexistent")
    result = scheduling.run_scenario("chapter", "volcano", kwok, seed=3)
    assert result.scheduler == "volcano"
    assert seen["paths"] == scheduling.scenario("chapter").paths("volcano")
    assert len(seen["nodes"]) == 4 and seen["nodes"][0].allocatable["example.com/gpu"] == 2
    assert seen["scheduler"] == "volcano" and seen["backend"] is kwok and seen["seed"] == 3


def test_cluster_runs_are_logged_when_asked_and_only_then(monkeypatch, tmp_path):
    """KFLABS_RUN_LOG: each cluster run appends its whole result; the model's runs never do."""
    from helpers import backend
    from helpers.backend import scheduling_run
    from helpers.scheduling import scenarios

    monkeypatch.setattr(scheduling_run, "run",
                        lambda *a, **k: scheduling.run_scenario("two-jobs", "default-pods"))
    kwok = backend.make("kwok", "test", kubeconfig="/nonexistent")
    log = tmp_path / "runs.jsonl"
    scheduling.run_scenario("two-jobs", "default-pods", kwok)  # no log asked for
    assert not log.exists()
    monkeypatch.setenv(scenarios.RUN_LOG_ENV, str(log))
    scheduling.run_scenario("chapter", "volcano")  # the model: not a cluster run
    first = scheduling.run_scenario("two-jobs", "default-pods", kwok)
    scheduling.run_scenario("chapter", "volcano", kwok, nodes=2)
    records = scenarios.logged_runs(log)
    assert [(r["scenario"], r["variant"], r["nodes"]) for r in records] == \
        [("two-jobs", "default-pods", 3), ("chapter", "volcano", 2)]
    assert records[0]["result"] == first  # the whole result, events included


def test_cluster_events_use_the_models_types_and_names(monkeypatch):
    """scheduling_run writes the real schedulers' events as the model logs its own."""
    from types import SimpleNamespace as NS

    from kubernetes import client

    from helpers.backend import scheduling_run

    def event(reason, kind, name, message, component=None, uid="u1"):
        return NS(reason=reason, message=message, reporting_component=component,
                  source=NS(component=component),
                  involved_object=NS(kind=kind, name=name, uid=uid))

    items = [event("Scheduled", "Pod", "serving-5d-x1", "Successfully assigned ns/serving-5d-x1 "
                   "to node-2", "default-scheduler"),
             event("Unschedulable", "PodGroup", "train-b-uid", "resource in cluster is overused"),
             event("Pulled", "Pod", "serving-5d-x1", "image pulled")]
    fake = NS(list_namespaced_event=lambda ns: NS(items=items))
    monkeypatch.setattr(client, "CoreV1Api", lambda api: fake)
    assert scheduling_run._scheduler_events(None, "ns") == [
        ("Scheduled", "pod/serving-5d-x1", "default-scheduler: bound to node-2"),
        ("Unschedulable", "podgroup/train-b-uid", "resource in cluster is overused")]


def test_cluster_events_about_an_earlier_runs_objects_are_dropped(monkeypatch):
    """A late event about a pod of the previous run, posted into the same-named namespace the
    next run re-made, is not this run's: only the UIDs the run saw count."""
    from types import SimpleNamespace as NS

    from kubernetes import client

    from helpers.backend import scheduling_run

    def failed(name, uid):
        return NS(reason="FailedScheduling", message="0/3 nodes are available",
                  reporting_component=None, source=None,
                  involved_object=NS(kind="Pod", name=name, uid=uid))

    items = [failed("huge-6", "old-run"), failed("worker-0", "this-run")]
    fake = NS(list_namespaced_event=lambda ns: NS(items=items))
    monkeypatch.setattr(client, "CoreV1Api", lambda api: fake)
    assert scheduling_run._scheduler_events(None, "ns", {"this-run"}) == [
        ("FailedScheduling", "pod/worker-0", "0/3 nodes are available")]
    assert len(scheduling_run._scheduler_events(None, "ns")) == 2  # no UIDs given: all kept


def test_summary_counts_training_jobs_and_names_the_service_apart():
    """The chapter's always-on service is not counted as an unfinished job."""
    first = scheduling.run_scenario("chapter", "default").summary().splitlines()[0]
    assert "training jobs completed=0/2 (+1 always-on service)" in first
    assert "training jobs completed=2/2 " in scheduling.run_scenario("two-jobs", "volcano").summary()


def test_bare_pod_gangs_skip_a_written_inqueue_that_volcano_jobs_show():
    """Volcano sets Inqueue in its session and recomputes the phase at session close (Running
    once minMember pods are placed): bare pods are there to place in that same session, a
    Volcano Job's pods are created only after it, so only the Volcano Job shows Inqueue."""
    bare = scheduling.run_scenario("two-jobs", "volcano").podgroups["train-a"].history
    vcjob = scheduling.run_scenario("two-jobs", "volcano-job").podgroups["train-a"].history
    assert [p for _, p in bare][:2] == ["Pending", "Running"] and bare[0][0] == bare[1][0]
    assert [p for _, p in vcjob][:3] == ["Pending", "Inqueue", "Running"]
