"""Serving pieces without a server process: validation, model classes, client, contrast server."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from helpers import serialization, training
from helpers.errors import LabError, ModelStoreError
from helpers.serving.client import Endpoint, EndpointError
from helpers.serving.handwritten import HandwrittenServer

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A model store with the XGBoost JSON model and its ONNX conversion, plus expectations."""
    root = tmp_path_factory.mktemp("store")
    result = training.train(seed=7)
    xgb_path = training.save_model(result.model, root, name="iris", fmt="json")
    onnx_path = serialization.save_onnx(serialization.to_onnx(result.model), root, name="iris-onnx")
    expected = result.model.predict_proba(np.asarray(ROWS))
    return xgb_path.parent, onnx_path.parent, expected


@pytest.fixture(scope="module")
def models():
    """The kserve-importing module (slow import, once)."""
    from helpers.serving import models as m

    return m


def test_rows_to_matrix_accepts_numbers(models):
    """Ints, floats and numpy arrays become a float32 N x 4 matrix."""
    out = models.rows_to_matrix([[1, 2, 3, 4], [5.5, 6, 7, 8]])
    assert out.dtype == np.float32 and out.shape == (2, 4)
    flat = models.rows_to_matrix([1, 2, 3, 4, 5, 6, 7, 8], shape=[2, 4])
    assert flat.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert models.rows_to_matrix(np.ones((3, 4))).shape == (3, 4)


@pytest.mark.parametrize(("data", "shape", "words"), [
    ([], None, "empty"),
    ("abc", None, "list of rows"),
    ([[1, 2, 3]], None, "shape [1, 3]"),
    ([1, 2, 3, 4], None, "shape [4]"),
    ([[1, 2, 3, 4], [1]], None, "different lengths"),
    ([["1", 2, 3, 4]], None, "text"),
    ([[None, 2, 3, 4]], None, "mixed"),
    ([[False, 2, 3, 4]], None, "true/false"),
    ([[float("nan"), 2, 3, 4]], None, "NaN"),
    ([1, 2, 3, 4], [2, 4], "does not match"),
    ([1, 2, 3, 4], [-1, 4], "does not match"),
])
def test_rows_to_matrix_refuses(models, data, shape, words):
    """Every refusal is InvalidInput naming what was wrong and showing the expected form."""
    from kserve.errors import InvalidInput

    with pytest.raises(InvalidInput) as info:
        models.rows_to_matrix(data, shape)
    assert words in str(info.value)
    assert "N x 4" in str(info.value)


def test_batch_limit_is_its_own_error(models):
    """Above max_rows: BatchTooLarge (answered 413), still an InvalidInput."""
    with pytest.raises(models.BatchTooLarge, match="limit of 5 rows"):
        models.rows_to_matrix([[1, 2, 3, 4]] * 6, max_rows=5)


def test_xgboost_model_predicts_like_the_classifier(models, store):
    """XGBoostModel.predict (V1 dict) returns the classifier's probabilities."""
    model = models.XGBoostModel("iris", store[0])
    assert model.load() is True and model.ready
    out = model.predict({"instances": ROWS})
    np.testing.assert_allclose(out["predictions"], store[2], rtol=1e-5)


def test_onnx_model_matches_xgboost_over_v1_and_v2(models, store):
    """ONNXModel on onnxruntime answers in the same shape and agrees with XGBoost."""
    from kserve import InferInput, InferRequest

    model = models.model_for_dir("iris", store[1])
    assert isinstance(model, models.ONNXModel)
    model.load()
    v1 = np.asarray(model.predict({"instances": ROWS})["predictions"])
    np.testing.assert_allclose(v1, store[2], atol=1e-5)
    request = InferRequest("iris", [InferInput("input-0", [2, 4], "FP32", data=ROWS)])
    response = model.predict(request)
    (output,) = response.outputs
    assert output.name == "output-0" and output.shape == [2, 3]
    np.testing.assert_allclose(np.asarray(output.data).reshape(2, 3), store[2], atol=1e-5)


def test_model_refuses_empty_and_ambiguous_dirs(models, store, tmp_path):
    """Like xgbserver: no model file or several -> ModelStoreError naming the files."""
    with pytest.raises(ModelStoreError, match="no model file"):
        models.XGBoostModel("iris", tmp_path).load()
    src = store[0] / "model.json"
    (tmp_path / "model.json").write_bytes(src.read_bytes())
    (tmp_path / "model.ubj").write_bytes(src.read_bytes())
    with pytest.raises(ModelStoreError, match="more than one model file"):
        models.XGBoostModel("iris", tmp_path).load()
    with pytest.raises(ValueError, match="unknown model format"):
        models.model_for_dir("iris", store[0], "pytorch")


def test_client_connection_refused_is_explained():
    """No server on the port: EndpointError saying so, no status."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ep = Endpoint(f"http://127.0.0.1:{port}", timeout=(0.5, 0.5))
    with pytest.raises(EndpointError, match="cannot connect") as info:
        ep.ready()
    assert info.value.status is None


def test_client_times_out_on_a_silent_server():
    """A server that accepts but never answers: the read timeout fires."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # the kernel completes the handshake; nobody ever answers
        ep = Endpoint(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=(0.5, 0.3))
        with pytest.raises(EndpointError, match="timed out"):
            ep.live()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_retries_carry_a_request_to_a_server_that_comes_back():
    """With retries, a refused connection (a predictor pod being replaced) and a 503 (not
    ready yet) are sent again, with a growing wait, until the server answers."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    answers = [503, 200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            status = answers.pop(0)
            body = json.dumps({"live": True} if status == 200 else {"error": "not ready"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = _free_port()
    servers = []

    def come_up_late():
        server = HTTPServer(("127.0.0.1", port), Handler)
        servers.append(server)
        server.serve_forever()

    timer = threading.Timer(0.4, come_up_late)
    timer.start()
    try:
        ep = Endpoint(f"http://127.0.0.1:{port}", timeout=(0.5, 2), retries=8, retry_delay=0.1)
        assert ep.live() is True
        assert ep.retried >= 2 and answers == []  # refused at least once, then the 503
    finally:
        while timer.is_alive() and not servers:  # the server thread serves until shut down
            timer.join(0.05)
        if servers:
            servers[0].shutdown()
            servers[0].server_close()
        timer.join()


def test_client_retries_are_bounded_and_say_so():
    """No server ever: the error names the attempts; timeouts and HTTP errors are not retried."""
    ep = Endpoint(f"http://127.0.0.1:{_free_port()}", timeout=(0.5, 0.5), retries=2, retry_delay=0.05)
    with pytest.raises(EndpointError, match=r"cannot connect.*after 3 attempts over") as info:
        ep.ready()
    assert info.value.transient and ep.retried == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        silent = Endpoint(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=(0.5, 0.3), retries=3)
        with pytest.raises(EndpointError, match="timed out"):
            silent.live()
        assert silent.retried == 0
    with pytest.raises(LabError, match="retries"):
        Endpoint("http://127.0.0.1:1", retries=-1)


def test_client_refuses_a_bad_base_url_and_sets_host_header():
    """base_url needs a scheme; a Host header is sent on every request when given."""
    with pytest.raises(LabError, match="http://"):
        Endpoint("127.0.0.1:8080")
    ep = Endpoint("http://127.0.0.1:1", host_header="iris.kflabs-serving.example.com")
    assert ep.session.headers["Host"] == "iris.kflabs-serving.example.com"
    assert ep.v2_request(ROWS)["inputs"][0]["shape"] == [2, 4]


def test_handwritten_server_shows_the_missing_pieces(store):
    """The contrast server: fine on good input, drops the connection on bad, no health."""
    srv = HandwrittenServer(store[0])
    try:
        ep = Endpoint(srv.url, timeout=(1, 5))
        good = ep.request("POST", "/predict", {"instances": ROWS})
        assert good.status == 200 and len(good.body["predictions"]) == 2
        with pytest.raises(EndpointError, match="without an HTTP answer"):
            ep.request("POST", "/predict", {"instances": [[1, 2, 3]]})
        assert srv.errors_seen and "mismatch" in srv.errors_seen[0]
        assert ep.request("GET", "/v2/health/ready").status >= 400
        assert srv.handles_concurrent_requests is False
        assert srv.host == "127.0.0.1"
    finally:
        srv.stop()
        srv.stop()


def test_architecture_picture_names_every_stage():
    """The architecture figure draws the five stages and the kit's two runtimes."""
    from helpers.serving import diagram

    fig = diagram.plot_architecture()
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert set(diagram.STAGES) <= texts
    assert {"XGBoost\n(xgbserver)", "ONNX\n(Triton)"} <= texts


def test_architecture_boxes_keep_apart_and_arrows_show_the_request_path():
    """No two boxes touch, and arrows lead client -> pre-process -> predict -> post-process."""
    from matplotlib.patches import FancyBboxPatch

    from helpers.serving import diagram

    ax = diagram.plot_architecture().axes[0]
    boxes = [p.get_bbox() for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == 1 + len(diagram.STAGES) + len(diagram.RUNTIMES) + len(diagram.LAYERS)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = (a.x1 + 0.01 <= b.x0 or b.x1 + 0.01 <= a.x0 or a.y1 + 0.01 <= b.y0
                     or b.y1 + 0.01 <= a.y0)
            assert apart, f"boxes touch: {a} and {b}"
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) >= 6


def test_latency_table_and_picture():
    """The lab's latency table has one row per result; the picture draws each series."""
    from helpers.serving import bench

    runs = [{"protocol": p, "rows": 1, "n": 4, "p50_ms": 2.0, "p90_ms": 3.0, "p99_ms": 4.0,
             "max_ms": 4.5, "samples_ms": [1.5, 2.0, 3.0, 4.5]} for p in ("v1", "v2")]
    table = bench.latency_table(runs)
    assert table.count("\n") == 3 and "| v2 | 1 | 4 | 2.00 |" in table
    fig = bench.plot_latency(runs)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("v1") for label in labels) and "p99 target" in labels
    assert bench.percentile([1, 2, 3, 4, 5], 50) == 3


def test_stage_counts_reads_the_model_label():
    """stage_counts picks each stage's _count for the named model, 0 when absent."""
    from helpers.serving.client import stage_counts

    text = "\n".join([
        '# TYPE request_predict_seconds histogram',
        'request_predict_seconds_count{model_name="iris"} 12.0',
        'request_predict_seconds_count{model_name="other"} 99.0',
        'request_preprocess_seconds_count{model_name="iris"} 14.0',
    ])
    assert stage_counts(text, "iris") == {"preprocess": 14, "predict": 12, "postprocess": 0,
                                          "explain": 0}
    assert stage_counts(text, "other")["predict"] == 99
