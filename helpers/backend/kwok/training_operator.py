"""The Kubeflow Training Operator v1 on the kwok control plane, started on request
(:class:`training_operator`, a context manager used by the tests).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from helpers.backend.kwok import supervisor
from helpers.backend.kwok.layout import _tail, bin_dir, kubeconfig_path, state_dir
from helpers.errors import BackendUnavailable
from helpers.kube import client as k8s
from helpers.processes import stop_group
from helpers.scheduling.training_operator import FLAG as GANG_FLAG

# --------------------------------------------------------------------------- Training Operator

#: Network namespace the Training Operator runs in, and its webhook configuration's name.
TRAINING_OPERATOR_NETNS = "kflabs-training-operator"
TRAINING_OPERATOR_WEBHOOK = "validator.training-operator.kubeflow.org"


def _libc_setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _listen_in_netns(netns: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` *inside* network namespace ``netns``.

    Only the short-lived helper thread enters the namespace; a socket keeps the namespace it
    was created in, so the caller can accept on it from the host namespace.
    """
    import threading

    box: dict[str, object] = {}

    def enter_and_listen() -> None:
        try:
            with open(f"/var/run/netns/{netns}") as ns:  # noqa: PTH123 - a namespace handle
                _libc_setns(ns.fileno())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", port))
            sock.listen(16)
            box["sock"] = sock
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=enter_and_listen)
    worker.start()
    worker.join()
    if "error" in box:
        raise BackendUnavailable(f"could not listen inside network namespace {netns}: {box['error']}")
    return box["sock"]  # type: ignore[return-value]


def _forward(listener: socket.socket, port: int, stop) -> None:
    """Relay every connection accepted on ``listener`` to the host's 127.0.0.1:``port``."""
    import threading

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # the other direction closed the pair; nothing left to relay
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            inner, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            outer = socket.create_connection(("127.0.0.1", port), timeout=10)
            outer.settimeout(None)
        except OSError:
            inner.close()  # the client sees a reset and retries; keep accepting the next one
            continue
        for a, b in ((inner, outer), (outer, inner)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def _run_ip(*args: str) -> subprocess.CompletedProcess:
    ip = shutil.which("ip")
    if ip is None:
        raise BackendUnavailable("the Training Operator check needs `ip` (iproute2) to make a "
                                 "network namespace: apt-get install iproute2")
    return subprocess.run([ip, *args], capture_output=True, text=True, check=False)


class training_operator:  # noqa: N801 - used as a context manager, like open()
    """Run the Kubeflow Training Operator v1 against the control plane, as a context manager.

    Started with ``--gang-scheduler-name=volcano --enable-scheme=xgboostjob`` (the setting the
    chapter's Kubeflow install needs). Its webhook server listens on every interface and has
    no flag to change that, so it runs in a network namespace of its own whose only
    interface is loopback; a relay in this process carries its API calls to the host's
    kube-apiserver. Its validating webhook is registered with ``failurePolicy: Ignore``
    (the API server cannot reach into the namespace; the operator still injects its CA).
    Needs root (``ip netns``).

    Example::

        with controlplane.training_operator(api):
            k8s.apply(api, xgboostjob)   # -> PodGroup + gang-scheduled pods
    """

    def __init__(self, api, timeout: float = 90):
        """Args: api: an ``ApiClient`` for the running control plane; timeout: start bound."""
        self.api = api
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.listener: socket.socket | None = None
        self.stop = None
        self.log = state_dir() / "logs" / "training-operator.log"

    def __enter__(self):
        """Create the namespace, relay, webhook configuration; start and await the operator."""
        import threading

        binary = bin_dir() / "training-operator"
        if not binary.is_file():
            raise BackendUnavailable(f"{binary} is missing: run `python -m helpers.controlplane build`")
        supervisor.require_up()
        port = supervisor._load_pids()["kube-apiserver"]["port"]
        _run_ip("netns", "delete", TRAINING_OPERATOR_NETNS)  # a leftover from a killed run
        made = _run_ip("netns", "add", TRAINING_OPERATOR_NETNS)
        if made.returncode != 0:
            raise BackendUnavailable(f"could not create network namespace "
                                     f"{TRAINING_OPERATOR_NETNS}: {made.stderr.strip()}")
        try:
            _run_ip("netns", "exec", TRAINING_OPERATOR_NETNS, "ip", "link", "set", "lo", "up")
            self.listener = _listen_in_netns(TRAINING_OPERATOR_NETNS, port)
            self.stop = threading.Event()
            threading.Thread(target=_forward, args=(self.listener, port, self.stop),
                             daemon=True).start()
            k8s.apply(self.api, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "kubeflow"}})
            k8s.apply(self.api, _operator_webhook_configuration())
            # The operator's install ships this Secret empty; its cert rotator fills it.
            k8s.apply(self.api, {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "training-operator-webhook-cert",
                                              "namespace": "kubeflow"}})
            env = {**os.environ, "MY_POD_NAMESPACE": "kubeflow"}
            with self.log.open("w") as out:
                self.proc = subprocess.Popen(
                    [shutil.which("ip") or "ip", "netns", "exec", TRAINING_OPERATOR_NETNS,
                     str(binary), f"--kubeconfig={kubeconfig_path()}",
                     GANG_FLAG, "--enable-scheme=xgboostjob",
                     "--leader-elect=false", "--metrics-bind-address=0",
                     "--health-probe-bind-address=127.0.0.1:18081"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True)
            deadline = time.monotonic() + self.timeout
            while not self.workers_started():
                _mount_operator_certs(self.api)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BackendUnavailable(
                        f"the Training Operator did not start (inside network namespace "
                        f"{TRAINING_OPERATOR_NETNS}); last lines of {self.log}:\n{_tail(self.log)}")
                time.sleep(0.5)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def workers_started(self) -> bool:
        """True once the XGBoostJob controller (not just the manager) has started its workers.

        The operator registers its job controllers only after its certificates are in place,
        so this line is the first moment a new XGBoostJob is reconciled.
        """
        if not self.log.is_file():
            return False
        return any("Starting workers" in line and "xgboostjob-controller" in line
                   for line in self.log.read_text(errors="replace").splitlines())

    def diagnose(self, lines: int = 30) -> str:
        """Whether the operator still runs, and the last ``lines`` of its log (for a failed wait)."""
        state = ("running" if self.proc is not None and self.proc.poll() is None
                 else f"exited with code {self.proc.returncode}" if self.proc is not None
                 else "never started")
        return f"-- Training Operator: {state}; last lines of {self.log}:\n{_tail(self.log, lines)}"

    def __exit__(self, *exc) -> None:
        """Stop the operator and the relay; remove the namespace and the webhook configuration."""
        if self.proc is not None:
            stop_group(self.proc, grace=15)
        if self.stop is not None:
            self.stop.set()
        if self.listener is not None:
            self.listener.close()
        _run_ip("netns", "delete", TRAINING_OPERATOR_NETNS)
        k8s.delete(self.api, _operator_webhook_configuration())
        # the operator's cert rotator writes its serving certificate here; leave nothing behind
        shutil.rmtree(OPERATOR_CERT_DIR, ignore_errors=True)
        with contextlib.suppress(OSError):  # its parent too, unless something else uses it
            OPERATOR_CERT_DIR.parent.rmdir()


OPERATOR_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108 - its fixed path


def _mount_operator_certs(api) -> None:
    """Play the kubelet's part: put the operator's cert Secret where it waits for it.

    In a cluster the Secret is mounted at the operator's fixed certificate folder; its cert
    rotator fills the Secret and then waits (forever) for the files to appear there.
    """

    try:
        secret = k8s.core(api).read_namespaced_secret(
            "training-operator-webhook-cert", "kubeflow")
    except k8s.ApiException as exc:
        if k8s.status_is(exc, 404):
            return
        raise
    data = secret.data or {}
    if not {"tls.crt", "tls.key"} <= set(data):
        return
    OPERATOR_CERT_DIR.mkdir(parents=True, exist_ok=True)
    for name, value in data.items():
        target = OPERATOR_CERT_DIR / name
        target.write_bytes(base64.b64decode(value))
        target.chmod(0o600)


def _operator_webhook_configuration() -> dict:
    """The webhook configuration the operator's cert rotator injects its CA into."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": TRAINING_OPERATOR_WEBHOOK},
        "webhooks": [{
            "name": "validate-xgboostjob.kubeflow.org", "failurePolicy": "Ignore",
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
            "clientConfig": {"service": {"name": "training-operator", "namespace": "kubeflow",
                                         "path": "/validate-kubeflow-org-v1-xgboostjob"}},
            "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["xgboostjobs"]}],
        }],
    }


