"""Child processes and the CPUs they share: stopping a process group, tying a child to its
parent's life, counting CPUs."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> int | None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace`` s; return exit code.

    ``proc`` must have been started with ``start_new_session=True`` (its pid is its group).
    Safe to call on a process that has already ended.
    """
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # exited between poll() and killpg()
        return proc.wait()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it finished after all: wait() below collects it
        return proc.wait(timeout=grace)


def cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def stop_processes(procs: list[subprocess.Popen], pgid: int, grace: float = 5.0,
                   ) -> list[int]:
    """SIGTERM process group ``pgid``, SIGKILL it after ``grace`` s; reap every one of ``procs``.

    For several children started into one group (the first with ``start_new_session=True``,
    the rest with ``process_group=`` its pid): unlike :func:`stop_group`, it signals the
    group even when its leader has already exited. Safe to call twice.

    Returns:
        The exit codes of ``procs``, in order.
    """
    def signal_group(sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # every member has exited (the group is gone)

    if any(p.poll() is None for p in procs):
        signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(signal.SIGKILL)
            proc.wait(timeout=grace)
    return [p.returncode for p in procs]


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, use_prctl: bool = True) -> str:
    """Arrange for this process to receive SIGTERM when its parent exits.

    Args:
        parent_pid: the pid expected as parent; if it is already gone, exit now.
        use_prctl: on Linux, ask the kernel (``PR_SET_PDEATHSIG``): immediate, but it fires
            when the *thread* that started this process ends. Pass ``False`` when a worker
            thread started it; a thread here then polls the parent pid twice a second.

    Returns:
        The mechanism used: ``"prctl"`` or ``"watch-thread"``.
    """
    mechanism = "watch-thread"
    if use_prctl and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            mechanism = "prctl"
    expected = parent_pid if parent_pid is not None else os.getppid()
    if os.getppid() != expected:  # the parent died before we got here
        os.kill(os.getpid(), signal.SIGTERM)
    if mechanism != "prctl":
        def watch() -> None:
            while os.getppid() == expected:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return mechanism


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
