"""Child processes and the CPUs they share: stopping a process group, counting CPUs."""

from __future__ import annotations

import os
import signal
import subprocess


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
