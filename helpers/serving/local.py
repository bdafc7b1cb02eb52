"""Start, watch and stop the local KServe model server from a notebook.

``ModelServer.start()`` calls ``asyncio.run``, which cannot run inside a Jupyter kernel's
own event loop, so the server runs as a child process (``python -m helpers.serving``).
:class:`LocalServer` is the kernel's handle on it:

- picks a free port on 127.0.0.1 and passes it to the child;
- waits for ``/v2/health/ready`` with a time bound, and fails early (with the log tail)
  if the child exits first, e.g. on a missing model directory;
- writes the child's output to a log file and shows it (:meth:`LocalServer.logs`);
- stops it cleanly: SIGTERM to its process group, SIGKILL after a grace period.

No orphan is left behind: the child runs in its own process group (so its whole tree is
signalled), a ``weakref.finalize`` stops it when the handle is collected or the
interpreter exits, an interrupt while waiting stops it at once, and the child itself
exits if the kernel dies (``PR_SET_PDEATHSIG``, :func:`helpers.processes.die_with_parent`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from helpers import paths
from helpers.errors import LabError
from helpers.processes import free_port, stop_group
from helpers.serving.client import Endpoint, EndpointError


class ServerError(LabError):
    """The local model server failed to start, or stopped unexpectedly."""


class LocalServer:
    """KServe's Python model server running the model in ``model_dir``, on 127.0.0.1.

    Args:
        model_dir: the directory holding exactly one model file (.json/.ubj/.bst/.onnx).
        model_name: the name in the URLs (``/v2/models/<name>/infer``).
        host: the bind address; loopback unless you know why not.
        port: a fixed port, or ``None`` to pick a free one.
        model_format: ``auto``, ``xgboost`` or ``onnx``.
        max_batch_rows: rows per request above which the server answers 413.
        access_log: one log line per request (off for benchmarks).
        log_path: where the child's output goes; default a temporary file.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (safe to call twice).
    Started from the main thread, the child uses Linux's parent-death signal (instant);
    from a worker thread it polls its parent pid instead, because that signal would fire
    as soon as the starting thread ended.
    """

    #: The kit's model class checks shape, type, NaN and batch size (answers 4xx).
    validates_input = True

    def __init__(self, model_dir: str | os.PathLike[str], model_name: str = "iris", *,
                 host: str = "127.0.0.1", port: int | None = None, model_format: str = "auto",
                 max_batch_rows: int = 10_000, access_log: bool = True,
                 log_path: str | os.PathLike[str] | None = None):
        self.model_dir = paths.resolve(model_dir)
        self.model_name = model_name
        self.host = host
        self.port = port
        self.model_format = model_format
        self.max_batch_rows = max_batch_rows
        self.access_log = access_log
        self._log_path = Path(log_path) if log_path else None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self.startup_cpu_seconds: float | None = None
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise ServerError("the server has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process id, or ``None`` before start."""
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        """The argument list that starts the server (never a shell string)."""
        cmd = [sys.executable, "-m", "helpers.serving", "--model-dir", str(self.model_dir),
               "--model-name", self.model_name, "--http-port", str(self.port),
               "--host", self.host, "--format", self.model_format,
               "--max-batch-rows", str(self.max_batch_rows), "--parent-pid", str(os.getpid()),
               # PR_SET_PDEATHSIG follows the launching thread: from a worker thread (e.g.
               # a controller loop), watch the process instead.
               "--parent-watch",
               "prctl" if threading.current_thread() is threading.main_thread() else "thread"]
        return cmd + ([] if self.access_log else ["--no-access-log"])

    def start(self, timeout: float = 60.0) -> LocalServer:
        """Start the server process and wait until it reports ready.

        Args:
            timeout: the most seconds to wait for readiness.

        Returns:
            ``self``, ready to serve.

        Raises:
            ServerError: the process exited during start-up (the message holds its log
                tail, e.g. a missing model file) or was not ready within ``timeout``.
        """
        if self.running:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        if self._log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="kserve-local-")
            self._log_path = Path(self._tmpdir.name) / "server.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self._log_path, "ab") as log:  # noqa: PTH123 - the child inherits the fd
            # A file, not a pipe: nobody drains a pipe between cells, and a full pipe
            # would block the server mid-request.
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=paths.ROOT,
                                         start_new_session=True)
        self._finalizer = weakref.finalize(self, stop_group, self.proc)
        try:
            self._wait_ready(timeout)
        except BaseException:
            # Includes KeyboardInterrupt (a kernel interrupt while waiting): never leave
            # a half-started server behind.
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        self.startup_cpu_seconds = self._cpu_seconds()
        return self

    def _cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far: start-up cost without the
        noise of a busy machine."""
        import psutil

        try:
            times = psutil.Process(self.proc.pid).cpu_times()
        except psutil.NoSuchProcess:
            return None
        return round(times.user + times.system, 3)

    def _wait_ready(self, timeout: float) -> None:
        endpoint = Endpoint(self.url, self.model_name, timeout=(0.5, 2.0))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(f"the model server exited with code {self.proc.returncode} "
                                      f"during start-up:\n{self.logs(tail=15)}")
                try:
                    if endpoint.ready():
                        return
                except EndpointError:
                    pass  # not listening yet: keep polling until the deadline
                time.sleep(0.1)
        finally:
            endpoint.close()
        raise ServerError(f"the model server was not ready after {timeout:.0f} s "
                          f"(pid {self.proc.pid}); last log lines:\n{self.logs(tail=15)}")

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace`` s). Safe to call twice.

        Returns:
            The exit code, or ``None`` if it was never started.
        """
        if self.proc is None:
            return None
        code = stop_group(self.proc, grace)
        if self._finalizer is not None:
            self._finalizer.detach()
        return code

    def cleanup(self) -> None:
        """Stop the server and delete its temporary log directory. Safe to call twice."""
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- use -----------------------------------------------------------------------------
    def endpoint(self, **kwargs) -> Endpoint:
        """An :class:`Endpoint` client for this server (kwargs go to ``Endpoint``)."""
        return Endpoint(self.url, self.model_name, **kwargs)

    def logs(self, tail: int | None = 40) -> str:
        """The server's output (last ``tail`` lines; ``None`` for all)."""
        if self._log_path is None or not self._log_path.is_file():
            return ""
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines if tail is None else lines[-tail:])

    def rss_bytes(self) -> int:
        """Resident memory of the server process (and its children), in bytes."""
        import psutil

        if not self.running:
            raise ServerError("the server is not running: no memory to measure")
        proc = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])

    def listening_addresses(self) -> list[tuple[str, int]]:
        """The (address, port) pairs the server process listens on, read from the OS."""
        import psutil

        if not self.running:
            raise ServerError("the server is not running: it listens on nothing")
        conns = psutil.Process(self.proc.pid).connections(kind="inet")
        return sorted({(c.laddr.ip, c.laddr.port) for c in conns
                       if c.status == psutil.CONN_LISTEN})

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        port = self.port if self.port is not None else "-"
        return f"LocalServer({self.model_name!r}, {self.host}:{port}, {state})"


def serve_local(model_dir: str | os.PathLike[str], model_name: str = "iris",
                timeout: float = 60.0, **kwargs) -> LocalServer:
    """Start a :class:`LocalServer` and return it once ready (stop it with ``.cleanup()``).

    Args:
        model_dir: the directory with one model file.
        model_name: the served name.
        timeout: seconds to wait for readiness.
        **kwargs: other :class:`LocalServer` options.
    """
    return LocalServer(model_dir, model_name, **kwargs).start(timeout=timeout)
