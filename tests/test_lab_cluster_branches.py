"""Labs 03 and 05 on ``BACKEND="kind"``: the one call each lab makes dispatches to the kind backend.

kind cannot run here, so the kind backend's serving functions (``helpers.backend.kind.serving``)
are replaced by fakes that record their calls; what is tested is :mod:`helpers.serving.deploy`'s
dispatch: which cluster step runs, in which order, with which arguments, what the lab gets back, and that the
clean-up is safe twice. (the kind backend itself is tested against fake executables in
tests/test_cluster_commands.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import backend, versions
from helpers.backend.kind import serving as kind_serving
from helpers.errors import BackendUnavailable, LabError, ManifestError, ModelStoreError
from helpers.kube import names as kube_names
from helpers.serving import deploy, isvc

SIM = backend.make("sim", "test")
KIND = backend.make("kind", "test", kubeconfig="/tmp/kubeconfig-test", context="kind-kflabs")
KWOK = backend.make("kwok", "test")


class FakeForward:
    """Stands in for kubectl_run.PortForward: a local port and a close() that counts."""

    def __init__(self, local_port: int = 43210):
        self.local_port = local_port
        self.args = ["kubectl", "--context", "kind-kflabs", "port-forward", "svc/iris-predictor"]
        self.closed = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """Fake kind serving functions; each appends (step, args...) to the returned list."""
    log: list[tuple] = []

    def upload_model(folder, *, name=None, target=None):
        log.append(("upload", Path(folder), name, target))
        return f"pvc://{kube_names.MODEL_PVC}/{name}/"

    def deploy_inference_service(doc, target, *, timeout):
        log.append(("deploy", doc["metadata"]["name"], target, timeout))
        return {"name": doc["metadata"]["name"], "namespace": doc["metadata"]["namespace"],
                "url": "", "predictor_service": f"{doc['metadata']['name']}-predictor"}

    def port_forward(service, namespace, port, *, target):
        log.append(("forward", service, namespace, port, target))
        forward = FakeForward()
        log.append(("forward-handle", forward))
        return forward

    def delete_inference_service(name, namespace, target=None):
        log.append(("delete", name, namespace, target))
        return sum(1 for c in log if c[0] == "delete") == 1  # found only the first time

    def kubectl(*args, timeout=120.0, **_kw):
        log.append(("kubectl", *args))
        return subprocess.CompletedProcess(["kubectl", *args], 0, "line 1\nModel iris loaded\n", "")

    for name, fake in [("upload_model", upload_model),
                       ("deploy_inference_service", deploy_inference_service),
                       ("port_forward", port_forward),
                       ("delete_inference_service", delete_inference_service),
                       ("kubectl", kubectl)]:
        monkeypatch.setattr(kind_serving, name, fake)
    return log


@pytest.fixture
def store(tmp_path) -> Path:
    """A model store holding one model folder, ``iris/model.json`` (only its version is read)."""
    (tmp_path / "iris").mkdir()
    saved_by = [int(p) for p in versions.pin("kserve_xgboost").split(".")]
    (tmp_path / "iris" / "model.json").write_text(json.dumps({"version": saved_by}))
    return tmp_path


def manifest(name: str = "iris", pvc: str = "model-store", path: str = "iris") -> dict:
    """The lab 05 manifest."""
    return isvc.inference_service(name, isvc.pvc_uri(pvc, path), model_format="xgboost",
                                  protocol_version="v2")


def steps(log: list[tuple]) -> list[str]:
    """The step names in order, without the bookkeeping entries."""
    return [c[0] for c in log if c[0] != "forward-handle"]


# --------------------------------------------------------------------------- lab 03: publish
def test_publish_on_sim_copies_nothing_and_names_the_stand_in_pvc(store, calls, capsys):
    """On sim the local store is the PVC's stand-in: the URI names it, no cluster step runs."""
    assert deploy.publish_model(store / "iris", SIM) == "pvc://model-store/iris/"
    assert calls == []
    assert str(store / "iris") in capsys.readouterr().out


def test_publish_on_kind_uploads_the_folder_to_the_pvc(store, calls):
    """On kind the folder goes onto the PVC under its own name (or the one given)."""
    assert deploy.publish_model(store / "iris", KIND) == "pvc://model-store/iris/"
    assert deploy.publish_model(store / "iris", KIND, name="iris-v2") == "pvc://model-store/iris-v2/"
    assert calls == [("upload", store / "iris", "iris", KIND),
                     ("upload", store / "iris", "iris-v2", KIND)]


def test_publish_checks_the_folder_before_anything_moves(tmp_path, calls):
    """An empty folder is a ModelStoreError, found locally: no upload is attempted."""
    (tmp_path / "iris").mkdir()
    with pytest.raises(ModelStoreError):
        deploy.publish_model(tmp_path / "iris", KIND)
    assert calls == []


def test_kwok_is_refused_by_the_model_labs_with_the_alternatives(store, calls):
    """kwok's nodes run no containers: the message says so and names sim and kind."""
    assert deploy.require_model_backend(SIM) is SIM and deploy.require_model_backend(KIND) is KIND
    for call in (lambda: deploy.require_model_backend(KWOK),
                 lambda: deploy.publish_model(store / "iris", KWOK),
                 lambda: deploy.submit(manifest(), KWOK, store)):
        with pytest.raises(BackendUnavailable, match="runs no containers") as err:
            call()
        assert "BACKEND='sim'" in str(err.value) and "BACKEND='kind'" in str(err.value)
    assert calls == []


# --------------------------------------------------------------------------- lab 05: submit
def test_submit_on_kind_uploads_deploys_and_forwards_in_order(store, calls):
    """Upload the folder the storageUri names, apply and await the ISVC, forward its predictor."""
    server = deploy.submit(manifest(), KIND, store, timeout=60)
    assert steps(calls) == ["upload", "deploy", "forward"]
    assert calls[0] == ("upload", store / "iris", "iris", KIND)
    _, name, target, timeout = calls[1]
    assert (name, target) == ("iris", KIND)
    assert timeout == deploy.CLUSTER_READY_TIMEOUT  # a 60 s lab knob is too short for a pull
    assert calls[2] == ("forward", "iris-predictor", isvc.DEFAULT_NAMESPACE, 80, KIND)
    assert isinstance(server, kind_serving.ClusterDeployment)
    assert server.storage_uri == "pvc://model-store/iris/"
    assert (server.host, server.port, server.url) == ("127.0.0.1", 43210, "http://127.0.0.1:43210")
    assert server.startup_seconds is not None and server.startup_seconds >= 0
    assert "iris" in repr(server) and "http://127.0.0.1:43210" in repr(server)


def test_submit_on_kind_honours_a_longer_timeout(store, calls):
    """The cluster minimum is a floor, not a cap."""
    deploy.submit(manifest(), KIND, store, timeout=900)
    assert calls[1][3] == 900


def test_the_endpoint_talks_to_the_port_forward(store, calls):
    """endpoint() is the same Endpoint client the lab uses on sim, aimed at the forward."""
    server = deploy.submit(manifest("flowers", path="flowers"), KIND,
                           _store_with(store, "flowers"))
    ep = server.endpoint(timeout=(1, 2))
    assert (ep.base_url, ep.model_name, ep.timeout) == ("http://127.0.0.1:43210", "flowers", (1, 2))
    ep.close()


def _store_with(store: Path, name: str) -> Path:
    (store / name).mkdir()
    # UBJSON of {"version": [<the pinned runtime's XGBoost>]}: only the version is read.
    saved_by = b"".join(b"i" + bytes([int(p)]) for p in versions.pin("kserve_xgboost").split("."))
    (store / name / "model.ubj").write_bytes(b"{L" + (7).to_bytes(8, "big") + b"version[#L"
                                             + (3).to_bytes(8, "big") + saved_by + b"}")
    return store


def test_submit_on_kind_refuses_another_pvc_before_touching_the_cluster(store, calls):
    """kind keeps models on one PVC: a manifest naming another is refused with the fix."""
    with pytest.raises(ManifestError, match="PVC_NAME = 'model-store'"):
        deploy.submit(manifest(pvc="kflabs-models"), KIND, store)
    s3 = isvc.inference_service("iris", "s3://models-bucket/iris/")
    with pytest.raises(ManifestError, match="only pvc://"):
        deploy.submit(s3, KIND, store)
    assert calls == []


def test_an_invalid_manifest_never_reaches_the_cluster(store, calls):
    """Validation comes first, as on sim."""
    broken = manifest()
    broken["metadata"]["name"] = "Iris Model"
    with pytest.raises(ManifestError):
        deploy.submit(broken, KIND, store)
    assert calls == []


def test_logs_come_from_the_predictor_container(store, calls):
    """logs() reads the predictor's kserve-container by the InferenceService label."""
    server = deploy.submit(manifest(), KIND, store)
    assert server.logs(tail=4) == "line 1\nModel iris loaded"
    args = calls[-1][1:]
    assert args == ("logs", "-n", isvc.DEFAULT_NAMESPACE, "-l",
                    "serving.kserve.io/inferenceservice=iris", "-c", "kserve-container",
                    "--tail", "4")
    server.logs(tail=None)
    assert calls[-1][-1] == "-1"


LISTENER = ("import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], 0)); "
            "s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)")


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])  # noqa: S104 - bound for the test only
def test_listening_addresses_are_read_from_the_os(store, calls, address):
    """The forward's own sockets, read from the OS: a loopback bind shows as loopback, and a
    wildcard bind would show as such (the lab's assert would then fail)."""
    import sys

    proc = subprocess.Popen([sys.executable, "-c", LISTENER, address], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline())
        server = deploy.submit(manifest(), KIND, store)
        server.forward.local_port, server.forward.args = port, proc.args
        assert server.listening_addresses() == [(address, port)]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with pytest.raises(LabError, match="port-forward to iris-predictor is not running"):
        server.listening_addresses()


def test_not_yet_forwarded_is_a_clear_error():
    """A handle that never started says what starts it."""
    handle = kind_serving.ClusterDeployment(manifest(), KIND)
    with pytest.raises(LabError, match="deploy.submit"):
        _ = handle.url
    assert "not forwarded" in repr(handle)


def test_input_validation_differs_by_runtime(store, calls):
    """The kit's model class validates input; the stock xgbserver on the cluster does not."""
    server = deploy.submit(manifest(), KIND, store)
    assert deploy.validates_input(server) is False
    local = SimpleNamespace(cleanup=lambda: None)  # any non-cluster handle: the local server
    assert deploy.validates_input(local) is True


# --------------------------------------------------------------------------- lab 05: cleanup
def test_cleanup_twice_stops_the_forward_and_deletes_ignoring_not_found(store, calls):
    """The lab's Cleanup cell, run twice: forward closed, ISVC deleted, nothing raises."""
    doc = manifest()
    server = deploy.submit(doc, KIND, store)
    forward = next(c[1] for c in calls if c[0] == "forward-handle")
    deploy.withdraw(doc, KIND, server)
    deploy.withdraw(doc, KIND, server)
    assert forward.closed == 2
    deletes = [c for c in calls if c[0] == "delete"]
    assert deletes == [("delete", "iris", isvc.DEFAULT_NAMESPACE, KIND)] * 2


def test_withdraw_deletes_an_isvc_whose_submit_failed_half_way(store, calls, monkeypatch):
    """Ready timed out: no handle came back, and the Cleanup cell still deletes it by name."""
    def not_ready(doc, target, *, timeout):
        calls.append(("deploy", doc["metadata"]["name"], target, timeout))
        raise LabError("timed out waiting for InferenceService kflabs-serving/iris to be Ready")

    monkeypatch.setattr(kind_serving, "deploy_inference_service", not_ready)
    doc = manifest()
    with pytest.raises(LabError, match="Ready"):
        deploy.submit(doc, KIND, store)
    deploy.withdraw(doc, KIND, None)
    assert steps(calls) == ["upload", "deploy", "delete"]


def test_withdraw_on_sim_stops_the_server_and_touches_no_cluster(calls):
    """On sim, withdraw is the local server's cleanup, safe twice."""
    stopped = []
    local = SimpleNamespace(cleanup=lambda: stopped.append(1))
    deploy.withdraw(manifest(), SIM, local)
    deploy.withdraw(manifest(), SIM, local)
    deploy.withdraw(manifest(), SIM, None)
    assert stopped == [1, 1] and calls == []


# --------------------------------------------------------------------------- the labs' own cells
class FakeKind:
    """A kind cluster in miniature: the PVC is a folder, an InferenceService a local server.

    ``deploy_inference_service`` starts the kit's local model server on the model the PVC
    folder holds, ``port_forward`` hands out its port, ``delete_inference_service`` stops it:
    enough for a lab's cells to run their kind branch end to end in this process.
    """

    def __init__(self, root: Path):
        self.pvc = root / "pvc"
        self.servers: dict[str, object] = {}
        self.log: list[tuple] = []

    def upload_model(self, folder, *, name=None, target=None):
        import shutil

        self.log.append(("upload", name))
        shutil.rmtree(self.pvc / name, ignore_errors=True)
        shutil.copytree(folder, self.pvc / name)
        return f"pvc://{kube_names.MODEL_PVC}/{name}/"

    def deploy_inference_service(self, doc, target, *, timeout):
        from helpers.serving.local import LocalServer

        name = doc["metadata"]["name"]
        self.log.append(("deploy", name, timeout))
        path = doc["spec"]["predictor"]["model"]["storageUri"].split("/", 3)[3].strip("/")
        self.servers[name] = LocalServer(self.pvc / path, name).start(timeout=60)
        return {"name": name, "namespace": doc["metadata"]["namespace"], "url": "",
                "predictor_service": f"{name}-predictor"}

    def port_forward(self, service, namespace, port, *, target):
        self.log.append(("forward", service))
        server = self.servers[service.removesuffix("-predictor")]
        return SimpleNamespace(local_port=server.port, url=server.url, close=lambda: None,
                               args=server.proc.args)  # the server's process stands in for kubectl

    def delete_inference_service(self, name, namespace, target=None):
        self.log.append(("delete", name))
        server = self.servers.pop(name, None)
        if server is not None:
            server.cleanup()
        return server is not None

    def kubectl(self, *args, **_kw):
        name = args[args.index("-l") + 1].split("=", 1)[1]
        return subprocess.CompletedProcess(args, 0, self.servers[name].logs(tail=4), "")

    def install(self, monkeypatch) -> FakeKind:
        from helpers import backend

        for name in ("upload_model", "deploy_inference_service", "port_forward",
                     "delete_inference_service", "kubectl"):
            monkeypatch.setattr(kind_serving, name, getattr(self, name))
        monkeypatch.setattr(backend, "resolve", lambda name, **_kw: KIND)
        return self


def run_lab_cells(lab: str, params: dict, repeat_last: bool = True) -> dict:
    """Run a lab's code cells in this process with ``params`` injected after the parameters
    cell (as papermill does); run the Cleanup cell a second time. Returns the namespace."""
    import matplotlib
    import nbformat

    from helpers import paths

    matplotlib.use("Agg")
    nb = nbformat.read(paths.labs_dir() / f"{lab}.ipynb", as_version=4)
    namespace: dict = {"__name__": "__main__"}
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        exec(compile(cell.source, f"{lab}:{cell.id}", "exec"), namespace)  # noqa: S102
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(params)
    if repeat_last:
        exec(compile(code[-1].source, f"{lab}:cleanup-again", "exec"), namespace)  # noqa: S102
    return namespace


def test_lab05_cells_run_their_kind_branch(tmp_path, monkeypatch):
    """Lab 05 with BACKEND="kind" on the fake cluster: upload, deploy, forward, V1/V2 agree,
    bad input shown without the local server's exact assertions, results pass their check,
    and the Cleanup cell deletes the InferenceService and is safe to run twice."""
    from tests.results_checks import CHECKS

    fake = FakeKind(tmp_path).install(monkeypatch)
    params = {"BACKEND": "kind", "OUTPUT_DIR": str(tmp_path / "results"), "N_LATENCY": 20}
    ns = run_lab_cells("05_serve_with_kserve", params)
    assert isinstance(ns["server"], kind_serving.ClusterDeployment)
    assert [step[0] for step in fake.log] == ["upload", "deploy", "forward", "delete", "delete"]
    assert fake.log[1][2] >= deploy.CLUSTER_READY_TIMEOUT and fake.servers == {}
    assert (fake.pvc / "iris" / "model.json").is_file()  # the model stays on the PVC
    import json

    results = json.loads((tmp_path / "results" / "05_serve_with_kserve.json").read_text())
    assert results["backend"] == "kind" and results["input_validated"] is False
    CHECKS["05_serve_with_kserve"](results, params)


def test_lab03_cells_put_the_model_on_the_pvc(tmp_path, monkeypatch):
    """Lab 03 with BACKEND="kind" on the fake cluster: the saved model lands on the PVC and
    the results record its storageUri."""
    import json

    from tests.results_checks import CHECKS

    fake = FakeKind(tmp_path).install(monkeypatch)
    params = {"BACKEND": "kind", "OUTPUT_DIR": str(tmp_path / "results"),
              "MODEL_STORE": str(tmp_path / "store"), "MODEL_NAME": "iris-kind"}
    run_lab_cells("03_train_iris_xgboost", params)
    assert fake.log == [("upload", "iris-kind")]
    assert sorted(p.name for p in (fake.pvc / "iris-kind").iterdir()) == ["model.json"]
    results = json.loads((tmp_path / "results" / "03_train_iris_xgboost.json").read_text())
    assert results["storage_uri"] == "pvc://model-store/iris-kind/"
    CHECKS["03_train_iris_xgboost"](results, params)
