"""Distributed training: the launchers' environments, and real local groups of 1, 2 and 4
workers through XGBoost's collective (helpers.distributed, helpers.distributed_local)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from helpers import distributed, training
from helpers import distributed_local as dl
from helpers.backend.kind import training as kind_training
from helpers.errors import LabError
from helpers.kube import names as kube_names

# --------------------------------------------------------------- environment parsing ---

OPERATOR_V1 = {"MASTER_ADDR": "iris-train-master-0", "MASTER_PORT": "9999",
               "WORLD_SIZE": "4", "RANK": "2", "PYTHONUNBUFFERED": "0",
               "WORKER_PORT": "9999",
               "WORKER_ADDRS": "iris-train-worker-0,iris-train-worker-1,iris-train-worker-2"}
TRAINER_V2 = {"DMLC_TRACKER_URI": "iris-node-0-0.iris", "DMLC_TRACKER_PORT": "29500",
              "DMLC_TASK_ID": "3", "DMLC_NUM_WORKER": "4"}


def test_training_operator_v1_environment_is_read():
    rdv = distributed.from_env(OPERATOR_V1)
    assert rdv == distributed.Rendezvous("iris-train-master-0", 9999, 2, 4, "training-operator-v1")


def test_trainer_v2_environment_is_read():
    rdv = distributed.from_env(TRAINER_V2)
    assert rdv == distributed.Rendezvous("iris-node-0-0.iris", 29500, 3, 4, "trainer-v2")


def test_no_launcher_environment_means_training_alone():
    assert distributed.from_env({"PATH": "/usr/bin", "HOME": "/tmp"}) is None


def test_the_local_launcher_sets_exactly_the_operators_variables():
    rdv = distributed.Rendezvous("127.0.0.1", 4321, 1, 4)
    env = rdv.operator_env()
    assert set(env) == set(distributed.OPERATOR_V1_ENV)
    assert distributed.from_env(env) == distributed.Rendezvous(
        "127.0.0.1", 4321, 1, 4, "training-operator-v1")


@pytest.mark.parametrize("env, needle", [
    ({"MASTER_ADDR": "m", "MASTER_PORT": "9999"}, "not ['WORLD_SIZE', 'RANK']"),
    ({**OPERATOR_V1, "RANK": "4"}, "rank 4 of a world of 4"),
    ({**OPERATOR_V1, "WORLD_SIZE": "four"}, "WORLD_SIZE='four'"),
    ({**OPERATOR_V1, "MASTER_PORT": "0"}, "not a usable TCP port"),
    ({**TRAINER_V2, "DMLC_TASK_ID": "-1"}, "rank -1"),
])
def test_a_broken_environment_is_a_clear_error(env, needle):
    with pytest.raises(LabError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        distributed.from_env(env)


def test_shards_stride_the_split_so_every_worker_sees_every_species():
    X, y, _, _ = training.load_iris()
    _, _, y_train, _ = training.split(X, y, seed=42)
    shards = [y_train[distributed.shard(len(y_train), r, 4)] for r in range(4)]
    assert sum(len(s) for s in shards) == len(y_train)
    assert all(set(s.tolist()) == {0, 1, 2} for s in shards)
    with pytest.raises(LabError, match="at most one worker per row"):
        distributed.shard(3, 0, 4)


def test_booster_params_match_the_estimators():
    params = training.booster_params({**training.DEFAULT_PARAMS, "random_state": 7})
    assert "n_estimators" not in params
    assert params["eta"] == training.DEFAULT_PARAMS["learning_rate"]
    assert params["seed"] == 7 and params["nthread"] == 1


# --------------------------------------------------------------- real local groups ---

def _test_split():
    X, y, _, _ = training.load_iris()
    return training.split(X, y, seed=42)


@pytest.fixture(scope="module")
def single() -> training.TrainResult:
    return training.train(seed=42)


def _no_orphans(run: dl.LocalRun) -> None:
    alive = [pid for pid in run.pids if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"workers still running: {alive}"
    assert dl.port_is_free(run.tracker_port), f"port {run.tracker_port} still bound"


@pytest.mark.parametrize("n_workers", [1, 2, 4])
def test_local_workers_train_the_single_process_model(n_workers, tmp_path, single):
    """1, 2 and 4 workers: the group forms, rank 0 saves, the model is the single one."""
    run = dl.train_local(n_workers, store_dir=tmp_path, join_timeout=60)
    assert run.ok, run.errors()
    assert sorted(run.reports) == list(range(n_workers))
    assert all(r["world_size"] == n_workers for r in run.reports.values() if n_workers > 1)
    # Every rank trained on its own shard, together covering the training split ...
    assert sum(r["n_train"] for r in run.reports.values()) == len(single.y_train)
    # ... only rank 0 saved, and every rank ended with the same accuracy.
    assert run.model_path == tmp_path / "iris" / "model.json"
    assert [r["model_path"] is None for r in run.reports.values()] == [False] + [True] * (
        n_workers - 1)
    assert {r["accuracy"] for r in run.reports.values()} == {single.accuracy}
    booster = training.load_model(run.model_path.parent)
    _, X_test, _, _ = _test_split()
    _, probabilities = training.predict(booster, X_test)
    # Histograms are summed over the group and Iris has far fewer distinct values per
    # feature than max_bin, so the cut points, the trees and the predictions are the same.
    np.testing.assert_allclose(probabilities, single.model.predict_proba(X_test), atol=1e-6)
    _no_orphans(run)


def test_a_missing_worker_times_out_naming_it(tmp_path):
    """3 of 4 workers: they wait at the tracker for the bound, then fail naming rank 3."""
    run = dl.train_local(4, ranks=[0, 1, 2], store_dir=tmp_path, join_timeout=3)
    assert not run.ok
    assert run.exit_codes == {0: 2, 1: 2, 2: 2}
    assert run.missing_ranks == [3]
    for rank, message in run.errors().items():
        assert message.startswith(f"rank {rank}: the collective of 4 workers did not form "
                                  "within 3 s")
        assert "ranks [3] of 4 never arrived" in message
    assert "error: rank 0:" in run.logs[0] and "Traceback" not in run.logs[0]
    assert not (tmp_path / "iris").exists(), "a partial gang must not save a model"
    assert run.seconds >= 3, "the workers gave up before their bound"
    _no_orphans(run)


def test_a_worker_whose_rank_0_never_starts_names_rank_0(tmp_path):
    run = dl.train_local(2, ranks=[1], store_dir=tmp_path, join_timeout=2)
    assert run.exit_codes == {1: 2} and run.missing_ranks == [0]
    assert "the tracker (rank 0) at 127.0.0.1" in run.errors()[1]
    _no_orphans(run)


def test_interrupting_the_wait_stops_the_whole_group(tmp_path):
    """A kernel interrupt while waiting (here a SIGINT to this process) leaves no worker."""
    workers = dl.LocalTraining(4, ranks=[0, 1], store_dir=tmp_path, join_timeout=60).start()
    pids = [p.pid for p in workers.procs.values()]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = subprocess.Popen([sys.executable, "-c",
                              f"import os, signal, time; time.sleep(1.5); "
                              f"os.kill({os.getpid()}, signal.SIGINT)"])
    try:
        with pytest.raises(KeyboardInterrupt):
            workers.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        timer.wait()
        workers.cleanup()
    time.sleep(0.2)
    assert [pid for pid in pids if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE] == []
    assert dl.port_is_free(workers.tracker_port)


def test_workers_exit_when_their_launcher_dies(tmp_path):
    """A crashed kernel: the launcher process is SIGKILLed; its workers follow it."""
    code = ("import sys, time; from helpers import distributed_local as dl; "
            f"w = dl.LocalTraining(2, ranks=[0], store_dir={str(tmp_path)!r}, "
            "join_timeout=120).start(); "
            "print(*[p.pid for p in w.procs.values()], flush=True); time.sleep(120)")
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker_pids = [int(p) for p in launcher.stdout.readline().split()]
    time.sleep(1.0)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in worker_pids):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) for p in worker_pids)


def test_onnx_is_refused_in_a_distributed_run(tmp_path):
    env = {**os.environ, **distributed.Rendezvous("127.0.0.1", 1, 0, 2).operator_env()}
    proc = subprocess.run([sys.executable, "-m", "helpers.train", "--output-dir", str(tmp_path),
                           "--onnx"], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "--onnx converts a single-process model" in proc.stderr


# --------------------------------------------------------------- the cluster's wiring ---

def _operator_env(job: dict, role: str, index: int) -> dict[str, str]:
    """The variables the Training Operator v1 gives one replica (its SetPodEnv, in Python)."""
    specs = job["spec"]["xgbReplicaSpecs"]

    def port(spec: dict) -> int:
        (container,) = [c for c in spec["template"]["spec"]["containers"]
                        if c["name"] == "xgboost"]  # the operator's DefaultContainerName
        (found,) = [p["containerPort"] for p in container["ports"]
                    if p["name"] == "xgboostjob-port"]  # ... and DefaultPortName
        return found

    rank = index + (specs["Master"]["replicas"] if role == "Worker" else 0)
    return {"MASTER_ADDR": f"{job['metadata']['name']}-master-0",
            "MASTER_PORT": str(port(specs["Master"])),
            "WORLD_SIZE": str(sum(s["replicas"] for s in specs.values())), "RANK": str(rank)}


def test_every_replica_of_the_xgboostjob_is_one_rank_of_one_group():
    """Static wiring of the kit's XGBoostJob: the operator's env makes ranks 0..3 of 4,
    every replica runs `python -m helpers.train` (distributed when that env is set),
    and only rank 0, the Master, has the model volume it saves to."""
    from helpers import train

    job = kind_training.training_job_manifest("kflabs-train:abc", seed=42)
    specs = job["spec"]["xgbReplicaSpecs"]
    seen = []
    for role, spec in specs.items():
        for index in range(spec["replicas"]):
            rdv = distributed.from_env(_operator_env(job, role, index))
            assert rdv.launcher == "training-operator-v1" and rdv.world_size == 4
            assert rdv.tracker_host == "iris-train-master-0" and rdv.tracker_port == 9999
            seen.append((role, rdv.rank))
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "helpers.train"]
        args = train.build_parser().parse_args(container["args"])
        assert not args.onnx, "--onnx is refused in a distributed run"
    assert sorted(seen) == [("Master", 0), ("Worker", 1), ("Worker", 2), ("Worker", 3)]
    assert job["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 4
    master_volume = specs["Master"]["template"]["spec"]["volumes"][0]
    assert master_volume["persistentVolumeClaim"]["claimName"] == kube_names.MODEL_PVC


def test_the_training_image_runs_a_distributed_self_test():
    from helpers import paths

    text = (paths.cluster_dir() / "kind" / "train.Dockerfile").read_text()
    assert "COPY helpers/ /app/helpers/" in text
    assert "python -m helpers.distributed_local --workers 2" in text


def test_rank_0_on_a_port_in_use_says_so():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as held:
        rdv = distributed.Rendezvous("127.0.0.1", held.getsockname()[1], 0, 2)
        with pytest.raises(LabError, match="another process holds the port"):
            with distributed.collective_group(rdv, join_timeout=5):
                pass


def test_the_roll_call_records_arrivals_and_answers_who():
    rollcall = distributed.RollCall("127.0.0.1", 0)
    try:
        port = rollcall._sock.getsockname()[1]
        rollcall.tracker_port = 12345
        rdv = distributed.Rendezvous("127.0.0.1", port, 2, 4)
        assert distributed.wait_for_tracker(rdv, timeout=5) == 12345
        assert distributed._missing(rdv, None) == [0, 1, 3]
    finally:
        rollcall.close()


def test_trainer_v2_variables_train_the_same_group(tmp_path):
    """Trainer v2's DMLC_* variables alone are enough for the same command to train as a group."""
    run = dl.train_local(2, store_dir=tmp_path, launcher="trainer-v2")
    assert run.ok, run.errors()
    assert {r["launcher"] for r in run.reports.values()} == {"trainer-v2"}
    assert run.model_path.is_file()
    _no_orphans(run)


def test_the_local_command_reports_a_partial_gang(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "helpers.distributed_local", "--workers", "2",
                           "--start", "1", "--join-timeout", "2", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert '"missing_ranks": [1]' in proc.stdout
    assert "ranks [1] of 2 never arrived" in proc.stderr
