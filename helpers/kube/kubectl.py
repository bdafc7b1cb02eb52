"""The ``kubectl``/``kind``/``docker`` runner: argument lists, bounded waits, transient retries.

It drives the commands a learner would type, so each step can be read, repeated by hand, and
tested against fake executables (``tests/test_cluster_commands.py``). :class:`PortForward`
reaches a Service from this machine through ``kubectl port-forward`` on 127.0.0.1.
"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helpers import versions
from helpers.errors import BackendUnavailable, LabError
from helpers.kube.names import KIND_CONTEXT as CONTEXT
from helpers.kube.names import MODEL_NAMESPACE

#: What a component's webhook says while it is still starting (or its certificate is not
#: yet injected): worth waiting and retrying, unlike a real rejection.
TRANSIENT_ERRORS = (
    "connection refused",
    "x509",
    "failed calling webhook",
    "no endpoints available",
    "context deadline exceeded",
    "i/o timeout",
    "ensure crds are installed first",
    "the server is currently unable to handle the request",
    "service unavailable",
    "connection reset by peer",
    # Volcano's scheduler creates the default queue just after it starts; until then the
    # job webhook answers this (or that the queue is not Open yet).
    "unable to find job queue",
    "can only submit job to queue with state `open`",
)

#: How to get each command the kind backend (and ``make cluster-up``) needs; ``{kind}`` is its pin.
TOOL_FIXES = {
    "docker": "install Docker (https://docs.docker.com/get-docker/) and start it",
    "kind": "install kind {kind} (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/)",
    "git": "install git: kubectl fetches the Training Operator's kustomization with it",
}


class CommandFailed(LabError):
    """A ``kind``/``kubectl``/``docker`` command exited non-zero or timed out.

    Attributes:
        args: the command line.
        returncode: its exit status (None for a timeout).
        stderr: what it printed on standard error.
    """

    def __init__(self, message: str, args: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr


# --------------------------------------------------------------------------- commands
def tool_fix(tool: str) -> str:
    """What to do about a missing command (``install ...``), from :data:`TOOL_FIXES`."""
    return TOOL_FIXES.get(tool, f"install {tool}").format(kind=versions.pin("kind"))


_fix = tool_fix


def require_tools(*tools: str) -> dict[str, str]:
    """Check that each command is on PATH.

    Returns:
        ``{tool: path}``.

    Raises:
        BackendUnavailable: one message naming every missing tool and how to get it.
    """
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        fixes = "; ".join(f"{tool}: {_fix(tool)}" for tool in missing)
        raise BackendUnavailable(
            f"{', '.join(missing)} not found on PATH. Fix: {fixes}. Then run `make cluster-up`; "
            'or run the labs with BACKEND="sim", which needs none of them.')
    return {tool: str(path) for tool, path in found.items()}


def _short(args: Sequence[str]) -> str:
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


def run(args: Sequence[str], *, input_text: str | None = None, timeout: float = 120.0,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run one command (an argument list, never a shell string) and capture its output.

    Args:
        args: the command line, e.g. ``["kind", "get", "clusters"]``.
        input_text: text to send on standard input (``kubectl apply -f -``).
        timeout: seconds before the command is stopped.
        check: raise :class:`CommandFailed` on a non-zero exit.

    Raises:
        BackendUnavailable: the program is not installed.
        CommandFailed: it exited non-zero (with ``check``) or ran past ``timeout``.
    """
    args = [str(a) for a in args]
    # No input: stdin is /dev/null, so a tool can never sit waiting for a prompt's answer.
    feed: dict[str, Any] = ({"input": input_text} if input_text is not None
                            else {"stdin": subprocess.DEVNULL})
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              check=False, **feed)
    except FileNotFoundError:
        tool = Path(args[0]).name
        raise BackendUnavailable(f"{tool} not found: {_fix(tool)}; "
                                 'or run the labs with BACKEND="sim"') from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"`{_short(args)}` did not finish within {timeout:g} s",
                            args, None, str(exc.stderr or "")) from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip()
        tail = "\n".join(err.splitlines()[-12:])
        raise CommandFailed(f"`{_short(args)}` failed (exit {proc.returncode}):\n{tail}",
                            args, proc.returncode, proc.stderr or "")
    return proc


def kubectl(*args: str, input_text: str | None = None, timeout: float = 120.0,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``kubectl --context kind-kflabs ARGS``: always the kit's context, never the current one."""
    return run(["kubectl", "--context", CONTEXT, *args], input_text=input_text,
               timeout=timeout, check=check)


def is_transient(message: str) -> bool:
    """True when an error is a webhook or API server that is still starting up."""
    low = message.lower()
    return any(marker in low for marker in TRANSIENT_ERRORS)


def retry_transient(args: Sequence[str], *, what: str, timeout: float,
                    input_text: str | None = None, interval: float = 5.0,
                    sleep=time.sleep) -> subprocess.CompletedProcess:
    """Run a command until it succeeds, retrying only webhook start-up errors, for ``timeout`` s.

    Right after an install, admission webhooks refuse connections (their pod is not up) or
    fail x509 checks (cert-manager has not injected the CA yet). Those errors are retried;
    any other failure is raised at once.

    Raises:
        CommandFailed: a non-transient failure, or transient ones for longer than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            return run(args, input_text=input_text, timeout=max(30.0, min(timeout, 300.0)))
        except CommandFailed as exc:
            if not is_transient(exc.stderr or str(exc)):
                raise
            if time.monotonic() >= deadline:
                raise CommandFailed(
                    f"{what}: still failing after {timeout:g} s with a webhook start-up error. "
                    "Check that the webhook's pods are Running (diagnostics below) and that "
                    f"cert-manager is installed; then run `make cluster-up` again.\n{exc}",
                    exc.args_list, exc.returncode, exc.stderr) from None
            if not announced:
                print(f"  {what}: webhook not ready yet ({_first_line(exc.stderr)}); retrying "
                      f"for up to {timeout:g} s")
                announced = True
            sleep(interval)


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:160]
    return "no message"


# --------------------------------------------------------------------------- diagnostics
def diagnostics(namespace: str, *, events: int = 15) -> str:
    """What a namespace looks like now, for a failed wait: pods, recent events, PodGroups.

    Never raises: a part that cannot be read says so instead.
    """
    parts = [f"-- diagnostics for namespace {namespace} (context {CONTEXT}):"]
    probes = [
        ("pods", ["get", "pods", "-n", namespace, "-o", "wide"]),
        ("recent events", ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
        ("podgroups", ["get", "podgroups.scheduling.volcano.sh", "-n", namespace, "-o",
                       "custom-columns=NAME:.metadata.name,PHASE:.status.phase,"
                       "MINMEMBER:.spec.minMember,CONDITIONS:.status.conditions[*].message"]),
    ]
    for title, args in probes:
        try:
            out = kubectl(*args, timeout=30).stdout.strip()
        except (CommandFailed, BackendUnavailable) as exc:
            out = f"(could not read: {_first_line(getattr(exc, 'stderr', '') or str(exc))})"
        lines = out.splitlines()
        if title == "recent events" and len(lines) > events + 1:
            lines = lines[:1] + lines[-events:]
        parts.append(f"{title}:\n" + ("\n".join(f"  {ln}" for ln in lines) or "  (none)"))
    return "\n".join(parts)


def rollout(namespace: str, deployment: str, timeout: float) -> None:
    """Wait (bounded) until a Deployment has rolled out; on timeout raise with diagnostics."""
    try:
        kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace,
                f"--timeout={int(timeout)}s", timeout=timeout + 30)
    except CommandFailed as exc:
        raise CommandFailed(f"deployment {namespace}/{deployment} did not become available "
                            f"within {timeout:g} s.\n{exc}\n{diagnostics(namespace)}",
                            exc.args_list, exc.returncode, exc.stderr) from None


class PortForward:
    """A managed ``kubectl port-forward`` to a Service, bound to 127.0.0.1, that comes back.

    ``kubectl port-forward svc/...`` picks one of the Service's pods and ends when that pod
    goes away (a rollout, a crash, a deleted pod). This one then starts kubectl again on the
    same local port, so the URL stays valid and a client's retries find the new pod once the
    Deployment has replaced it. ``restarts`` counts those, ``last_error`` holds what the last
    failed attempt said.

    Use as a context manager, or call :meth:`close` (safe twice). ``url`` is the local base
    URL for :class:`helpers.serving.client.Endpoint`.
    """

    _LINE = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")
    #: Seconds between attempts to start kubectl again after it ended.
    RESTART_DELAY = 1.0

    def __init__(self, service: str, namespace: str, port: int = 80, *, local_port: int = 0,
                 context: str = CONTEXT, kubeconfig: str | None = None, timeout: float = 30.0):
        self._base = ["kubectl", "--context", context]
        if kubeconfig:
            self._base += ["--kubeconfig", str(kubeconfig)]
        self._service, self._namespace, self._port = service, namespace, int(port)
        self._context, self._timeout = context, timeout
        self.local_port: int | None = None
        self.restarts = 0
        self.last_error = ""
        self._closed = threading.Event()
        self._lock = threading.Lock()
        require_tools("kubectl")
        self._proc, self.local_port = self._spawn(local_port)
        threading.Thread(target=self._keep_alive, daemon=True).start()

    def _argv(self, local_port: int) -> list[str]:
        return [*self._base, "port-forward", "-n", self._namespace, f"svc/{self._service}",
                f"{local_port or ''}:{self._port}", "--address", "127.0.0.1"]

    def _spawn(self, local_port: int) -> tuple[subprocess.Popen, int]:
        """Start kubectl and wait for its "Forwarding from" line; raise what it said if none."""
        args = self._argv(local_port)
        self.args = args
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            match = self._LINE.search(line or "")
            if match:
                return proc, int(match.group(1))
            if line is None or time.monotonic() >= deadline:
                err = self._end(proc)
                raise CommandFailed(
                    f"`{_short(args)}` did not start forwarding within {self._timeout:g} s: "
                    f"{_first_line(err)}. Is the Service there and its pod Running? "
                    f"(kubectl --context {self._context} get pods -n {self._namespace})",
                    args, proc.returncode, err)

    def _keep_alive(self) -> None:
        """Start kubectl again, on the same local port, whenever it ends before :meth:`close`."""
        while not self._closed.is_set():
            self._proc.wait()
            if self._closed.is_set():
                return
            with self._lock:
                self.last_error = _first_line(self._end(self._proc))
            while not self._closed.wait(self.RESTART_DELAY):
                try:
                    proc, _ = self._spawn(self.local_port or 0)
                except CommandFailed as exc:
                    self.last_error = _first_line(exc.stderr or str(exc))
                    continue
                with self._lock:
                    if self._closed.is_set():
                        self._end(proc)
                        return
                    self._proc = proc
                    self.restarts += 1
                break

    @staticmethod
    def _end(proc: subprocess.Popen) -> str:
        """End one kubectl process (SIGTERM, then SIGKILL after 10 s); return its stderr."""
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # stdout belongs to the pump thread; stderr is ours, and the process has ended.
        try:
            return proc.stderr.read() if proc.stderr else ""
        except ValueError:  # already closed
            return ""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local port>``."""
        return f"http://127.0.0.1:{self.local_port}"

    def close(self) -> None:
        """Stop the port-forward process, and its restarts (safe to call twice)."""
        self._closed.set()
        with self._lock:
            self._end(self._proc)
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def port_forward(service: str, namespace: str = MODEL_NAMESPACE, port: int = 80, *,
                 target: Any = None, local_port: int = 0,
                 timeout: float = 30.0) -> PortForward:
    """Forward a local port on 127.0.0.1 to a Service (e.g. ``iris-predictor`` port 80).

    kind has no load balancer, so the predictor is reached this way from the laptop; in
    Standard mode the predictor Service answers directly, without a ``Host`` header.

    Args:
        target: a backend (its ``kubeconfig`` and ``context``); None: the kind cluster's.

    Returns:
        A running :class:`PortForward`; its ``url`` feeds ``Endpoint(base_url=...)``.
    """
    context = target.context if target is not None and target.context else CONTEXT
    kubeconfig = target.kubeconfig if target is not None else None
    return PortForward(service, namespace, port, local_port=local_port, context=context,
                       kubeconfig=kubeconfig, timeout=timeout)


