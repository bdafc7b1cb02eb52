"""The local KServe model server end to end: endpoints, bad input, binding, lifecycle.

One server (module fixture) serves every endpoint and bad-input test; the lifecycle
tests start their own processes. The model is trained with helpers.training, like the lab.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from helpers import training
from helpers.errors import BackendUnavailable, ManifestError
from helpers.serving.client import Endpoint, EndpointError
from helpers.serving.local import LocalServer, ServerError

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model store with the Iris booster saved as JSON, and the booster's own answers."""
    store = tmp_path_factory.mktemp("store")
    result = training.train(seed=42)
    path = training.save_model(result.model, store, name="iris", fmt="json")
    expected = result.model.get_booster().inplace_predict(np.asarray(ROWS, dtype=np.float32))
    return path.parent, np.asarray(expected)


@pytest.fixture(scope="module")
def server(trained):
    """One running server for the whole module, stopped at the end."""
    srv = LocalServer(trained[0], "iris", max_batch_rows=2_000)
    srv.start(timeout=120)
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def ep(server):
    """An Endpoint client on the module's server."""
    client = server.endpoint()
    yield client
    client.close()


# -- every endpoint, both protocols -----------------------------------------------------

def test_v2_health_and_metadata(ep):
    """V2 live, ready, model ready, server and model metadata all answer."""
    assert ep.live() is True
    assert ep.ready() is True
    assert ep.model_ready() is True
    meta = ep.server_metadata()
    assert meta["name"] == "kserve" and meta["version"] == "0.20.0"
    assert ep.model_metadata()["name"] == "iris"


def test_v1_list_and_status(ep):
    """V1 lists the model and reports it ready."""
    assert ep.list_models() == ["iris"]
    assert ep.model_status_v1() == {"name": "iris", "ready": True}


def test_v1_and_v2_predictions_match_the_booster(ep, trained):
    """Both protocols return the booster's own probabilities, N x 3, same labels."""
    expected = trained[1]
    v1 = ep.predict_v1(ROWS)
    v2 = ep.infer_v2(ROWS)
    assert v1.shape == v2.shape == (3, 3)
    np.testing.assert_allclose(v1, expected, rtol=1e-6)
    np.testing.assert_allclose(v2, expected, rtol=1e-6)
    assert ep.labels(ROWS, "v1").tolist() == ep.labels(ROWS, "v2").tolist() == [1, 0, 2]


def test_v2_raw_response_shape(ep):
    """The V2 answer carries model_name and one output-0 FP32 tensor of shape [N, 3]."""
    resp = ep.request("POST", "/v2/models/iris/infer", ep.v2_request(ROWS[:2]))
    assert resp.status == 200
    assert resp.body["model_name"] == "iris"
    (out,) = resp.body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("output-0", [2, 3], "FP32")


def test_numeric_datatypes_accepted(ep):
    """Integers and FP64 are numbers too: served, not refused."""
    assert ep.infer_v2([[6, 3, 5, 1]], datatype="INT64").shape == (1, 3)
    assert ep.infer_v2(ROWS, datatype="FP64").shape == (3, 3)
    assert ep.predict_v1([[6, 3, 5, 1]]).shape == (1, 3)


def test_thousand_row_batch_is_served(ep, trained):
    """A 1,000-row batch is within the limit and comes back whole."""
    rows = np.tile(np.asarray(ROWS), (334, 1))[:1000]
    assert ep.predict_v1(rows).shape == (1000, 3)
    assert ep.infer_v2(rows).shape == (1000, 3)


# -- the bad-input matrix ----------------------------------------------------------------

V1 = "/v1/models/iris:predict"
V2 = "/v2/models/iris/infer"


def _v2(data, shape, datatype="FP32"):
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


BAD_INPUTS = [
    # (id, path, json body or None, raw text or None, expected status, words in the message)
    ("v1-malformed-json", V1, None, '{"instances": [[1, 2', 400, ["JSON", "instances"]),
    ("v1-nan-literal", V1, None, '{"instances": [[NaN, 1, 2, 3]]}', 400, ["NaN"]),
    ("v1-wrong-width", V1, {"instances": [[1, 2, 3]]}, None, 400, ["shape [1, 3]", "N x 4"]),
    ("v1-3d", V1, {"instances": [[[1, 2, 3, 4]]]}, None, 400, ["shape [1, 1, 4]"]),
    ("v1-ragged", V1, {"instances": [[1, 2, 3, 4], [1, 2]]}, None, 400, ["different lengths"]),
    ("v1-text", V1, {"instances": [["a", 2, 3, 4]]}, None, 400, ["text", "numbers"]),
    ("v1-numeric-text", V1, {"instances": [["5.1", 2, 3, 4]]}, None, 400, ["text"]),
    ("v1-bool", V1, {"instances": [[True, 2, 3, 4]]}, None, 400, ["true/false"]),
    ("v1-overflow", V1, {"instances": [[1e39, 2, 3, 4]]}, None, 400, ["infinite"]),
    ("v1-empty", V1, {"instances": []}, None, 400, ["empty"]),
    ("v1-no-instances", V1, {"rows": [[1, 2, 3, 4]]}, None, 400, ["instances"]),
    ("v1-not-a-list", V1, {"instances": 5}, None, 400, ["instances"]),
    ("v2-malformed-json", V2, None, '{"inputs": [', 400, ["inputs", "JSON"]),
    ("v2-wrong-shape", V2, _v2([1, 2, 3], [1, 3]), None, 400, ["shape [1, 3]"]),
    ("v2-shape-mismatch", V2, _v2([1, 2, 3, 4], [2, 4]), None, 400, ["does not match"]),
    ("v2-text", V2, _v2(["a", 2, 3, 4], [1, 4]), None, 400, ["text"]),
    ("v2-bytes-dtype", V2, _v2(["a", "b", "c", "d"], [1, 4], "BYTES"), None, 400, ["FP32"]),
    ("v2-nan", V2, None, json.dumps(_v2([float("nan"), 2, 3, 4], [1, 4])), 400, ["NaN"]),
    ("v2-inf", V2, None, json.dumps(_v2([float("inf"), 2, 3, 4], [1, 4])), 400, ["infinite"]),
    ("v2-empty", V2, _v2([], [0, 4]), None, 400, ["empty"]),
    ("v2-no-inputs", V2, {"inputs": []}, None, 400, ["one input"]),
    ("v2-not-inference-request", V2, {"rows": 1}, None, 400, ["inputs"]),
    ("v1-unknown-model", "/v1/models/nope:predict", {"instances": ROWS}, None, 404, ["nope"]),
    ("v2-unknown-model", "/v2/models/nope/infer", _v2(ROWS, [3, 4]), None, 404, ["nope"]),
    ("v1-oversized", V1, {"instances": [[1, 2, 3, 4]] * 2001}, None, 413, ["2001", "2000"]),
    ("v2-oversized", V2, _v2([[1, 2, 3, 4]] * 2001, [2001, 4]), None, 413, ["limit"]),
    ("huge-body", V1, {"instances": [[1.5, 2.5, 3.5, 4.5]] * 500_000}, None, 413, ["bytes"]),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_4xx_with_message_and_server_keeps_serving(ep, case):
    """Each bad request gets its 4xx and a message naming what was expected."""
    _, path, body, raw, status, words = case
    resp = ep.request("POST", path, body, data=raw)
    assert resp.status == status, resp.body
    for word in words:
        assert word in resp.error, (word, resp.error)
    # ... and the next good request is still served.
    assert ep.predict_v1(ROWS[:1]).shape == (1, 3)


def test_client_error_carries_server_message(ep):
    """Endpoint.call raises EndpointError with the status and the server's message."""
    with pytest.raises(EndpointError) as info:
        ep.predict_v1([[1, 2, 3]])
    assert info.value.status == 400
    assert "N x 4" in info.value.server_message
    assert "HTTP 400" in str(info.value)


def test_bad_requests_are_logged_as_one_line(server, ep):
    """A client mistake is a warning line in the log, not a server stack trace."""
    ep.request("POST", V1, {"instances": [[1, 2, 3]]})
    time.sleep(0.2)
    tail = server.logs(tail=30)
    assert "-> 400" in tail
    assert "Traceback" not in tail


# -- an independent V2 client -------------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_speaks_v2_to_the_server(server, trained, binary):
    """NVIDIA's tritonclient (HTTP) is an independent V2 client: health, metadata, infer."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"{server.host}:{server.port}",
                                              connection_timeout=5, network_timeout=10)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.get_model_metadata("iris")["name"] == "iris"
        x = np.asarray(ROWS, dtype=np.float32)
        tensor = httpclient.InferInput("input-0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        # kserve 0.20 reads a body without Content-Type as the binary extension, and
        # tritonclient sends none for a JSON-only request: name it, as a caller must
        # against the cluster runtime too (the same kserve code serves there).
        headers = None if binary else {"Content-Type": "application/json"}
        result = client.infer("iris", [tensor], headers=headers)
        np.testing.assert_allclose(result.as_numpy("output-0"), trained[1], rtol=1e-6)
    finally:
        client.close()


# -- binding and lifecycle -----------------------------------------------------------------

def test_server_listens_on_loopback_only(server):
    """The server's listening socket is bound to 127.0.0.1, never 0.0.0.0."""
    listening = [c for c in psutil.Process(server.pid).connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening, "the server has no listening socket"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    assert {c.laddr.port for c in listening} == {server.port}  # REST only: gRPC is off


def test_missing_model_dir_exits_nonzero_with_message(tmp_path):
    """A missing directory: exit code 2 and a message naming the path (before kserve loads)."""
    proc = subprocess.run([sys.executable, "-m", "helpers.serving", "--model-dir",
                           str(tmp_path / "absent"), "--model-name", "iris", "--http-port", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "absent" in proc.stderr


def test_ambiguous_model_dir_exits_nonzero_with_message(tmp_path, trained):
    """Two model files: refused like KServe's xgbserver, with both names in the message."""
    model = trained[0] / "model.json"
    (tmp_path / "model.json").write_bytes(model.read_bytes())
    (tmp_path / "model.bst").write_bytes(model.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "helpers.serving", "--model-dir", str(tmp_path),
                           "--http-port", "1"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert "more than one model file" in proc.stderr and "model.bst" in proc.stderr


def test_handle_reports_startup_failure_with_log_tail(tmp_path):
    """LocalServer.start raises ServerError holding the child's own message."""
    srv = LocalServer(tmp_path / "nothing-here")
    with pytest.raises(ServerError, match="does not exist"):
        srv.start(timeout=60)
    assert not srv.running


def test_start_stop_leaves_no_process(trained):
    """start -> stop: the server and any child are gone, exit code 0; stop is idempotent."""
    srv = LocalServer(trained[0], access_log=False).start(timeout=120)
    proc = psutil.Process(srv.pid)
    family = [proc, *proc.children(recursive=True)]
    assert srv.endpoint().ready()
    assert srv.stop() == 0
    assert srv.stop() == 0
    time.sleep(0.2)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    srv.cleanup()
    srv.cleanup()


LAUNCHER = textwrap.dedent("""
    import signal, sys, time
    # A notebook kernel turns SIGINT into KeyboardInterrupt, even where pytest was started
    # in the background (which leaves SIGINT ignored for every child).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from helpers.serving.local import LocalServer
    srv = LocalServer(sys.argv[1], log_path=sys.argv[2])  # a killed process cleans nothing
    try:
        srv.start(timeout=120)
        print("ready", flush=True)
        time.sleep(600)
    except KeyboardInterrupt:
        print("interrupted; server exited:", srv.proc.poll() is not None, flush=True)
""")


def _launch(model_dir: Path, log: Path) -> tuple[subprocess.Popen, psutil.Process]:
    """Run LAUNCHER (a stand-in for a notebook kernel) and return it with its server child."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(model_dir), str(log)],
                                stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kids = psutil.Process(launcher.pid).children()
        if kids:
            return launcher, kids[0]
        time.sleep(0.05)
    launcher.kill()
    raise AssertionError("the launcher never started a server process")


def _gone(proc: psutil.Process, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_interrupt_while_starting_stops_the_server(trained, tmp_path):
    """A kernel interrupt (SIGINT) during start(): the handle stops the server itself."""
    launcher, child = _launch(trained[0], tmp_path / "server.log")
    try:
        time.sleep(0.5)
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=60)
        assert "server exited: True" in out
        assert _gone(child)
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_server_exits_when_its_parent_is_killed(trained, tmp_path):
    """A kernel killed outright (SIGKILL, no cleanup runs): the server still exits."""
    launcher, child = _launch(trained[0], tmp_path / "server.log")
    try:
        time.sleep(0.5)
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)
        assert _gone(child), f"server pid {child.pid} outlived its parent"
    finally:
        if child.is_running():
            child.kill()


def test_host_header_for_port_forwarded_gateways(server):
    """An Endpoint sending a Host header (as through an ingress port-forward) still works."""
    ep = Endpoint(server.url, "iris", host_header="iris.kflabs-serving.example.com")
    try:
        assert ep.ready() and ep.predict_v1(ROWS[:1]).shape == (1, 3)
    finally:
        ep.close()


def test_onnx_model_served_over_http_matches_xgboost(tmp_path, trained):
    """The ONNX conversion, served by `python -m helpers.serving` (format auto), agrees."""
    from helpers import serialization

    result = training.train(seed=42)
    onnx_dir = serialization.save_onnx(serialization.to_onnx(result.model), tmp_path,
                                       name="iris-onnx").parent
    with LocalServer(onnx_dir, "iris-onnx", access_log=False) as srv:
        ep = srv.endpoint()
        assert "ONNXModel" in srv.logs(tail=None)
        np.testing.assert_allclose(ep.predict_v1(ROWS), trained[1], atol=1e-5)
        np.testing.assert_allclose(ep.infer_v2(ROWS), trained[1], atol=1e-5)
        assert ep.request("POST", "/v1/models/iris-onnx:predict",
                          {"instances": [[1, 2, 3]]}).status == 400
        ep.close()


def test_submit_on_sim_serves_the_manifest(tmp_path, trained):
    """deploy.submit: the manifest's name and pvc:// path select what the local server runs."""
    from helpers import backend
    from helpers.serving import deploy, isvc

    store = trained[0].parent
    manifest = isvc.inference_service("iris", isvc.pvc_uri("model-store", trained[0].name))
    assert deploy.local_model_dir(manifest, store) == trained[0]
    with pytest.raises(BackendUnavailable, match="runs no containers"):
        deploy.submit(manifest, backend.make("kwok", "test"), store)
    s3 = isvc.inference_service("iris", "s3://models-bucket/iris/")
    with pytest.raises(ManifestError, match="only pvc://"):
        deploy.submit(s3, backend.make("sim", "test"), store)


def test_bench_measurements_have_their_shape(server, ep):
    """measure_latency / measure_throughput return complete summaries (figures not asserted)."""
    from helpers.serving import bench

    lat = bench.measure_latency(ep, ROWS[:1], n=20, protocol="v2", warmup=2)
    assert lat["n"] == len(lat["samples_ms"]) == 20
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    conc = bench.measure_throughput(server.url, "iris", ROWS[:1], clients=2, requests_per_client=5)
    assert conc["requests"] == 10 and conc["errors"] == [] and conc["rps"] > 0


THREAD_LAUNCHER = textwrap.dedent("""
    import sys, threading, time
    from helpers.serving.local import LocalServer
    srv = LocalServer(sys.argv[1], access_log=False, log_path=sys.argv[2])
    worker = threading.Thread(target=srv.start, kwargs={"timeout": 120})
    worker.start()
    worker.join()
    time.sleep(1.5)
    print("alive after its starting thread ended:", srv.running, flush=True)
    time.sleep(600)
""")


def test_server_started_from_a_worker_thread_outlives_the_thread_not_the_process(trained, tmp_path):
    """Started from a worker thread: survives that thread's end, dies with the process."""
    launcher = subprocess.Popen([sys.executable, "-c", THREAD_LAUNCHER, str(trained[0]),
                                 str(tmp_path / "server.log")],
                                stdout=subprocess.PIPE, text=True)
    try:
        line = launcher.stdout.readline()
        assert line.strip() == "alive after its starting thread ended: True", line
        (child,) = psutil.Process(launcher.pid).children()
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)
        assert _gone(child), f"server pid {child.pid} outlived its parent"
    finally:
        if launcher.poll() is None:
            launcher.kill()
