"""Docker on a maintainer machine: ``docker.io`` from apt, the runc wrapper, ``dockerd`` up.

Every step is idempotent: a package already installed, a wrapper already current, a
``daemon.json`` already naming it and a daemon already answering are each left alone. The
machine may have no systemd, so ``dockerd`` is started in the background with its log in
:data:`DOCKERD_LOG`. Run as root (it installs packages and writes ``/etc/docker``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers.errors import BackendUnavailable

#: Where the wrapper is installed and how Docker's ``daemon.json`` names it.
WRAPPER_PATH = Path("/usr/local/libexec/kflabs/runc-wrap")
RUNTIME_NAME = "kflabs-runc"
DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/kflabs-dockerd.log")
WRAPPER_SOURCE = Path(__file__).with_name("runc_wrap.py")


def daemon_config(existing: dict, wrapper: Path = WRAPPER_PATH, name: str = RUNTIME_NAME) -> dict:
    """``existing`` daemon.json settings plus the wrapper as a runtime and as the default.

    Other settings (and other runtimes) are kept; the result is a new dict.
    """
    config = json.loads(json.dumps(existing))
    runtimes = dict(config.get("runtimes") or {})
    runtimes[name] = {"path": str(wrapper)}
    config["runtimes"] = runtimes
    config["default-runtime"] = name
    return config


def wrapper_text(python: str) -> str:
    """The wrapper as installed: :mod:`.runc_wrap`'s source with ``python`` as its interpreter.

    dockerd runs the wrapper with its own environment, so the shebang names the system Python
    rather than ``env python3`` (which might find a virtualenv).
    """
    lines = WRAPPER_SOURCE.read_text().splitlines(keepends=True)
    return f"#!{python}\n" + "".join(lines[1:] if lines[0].startswith("#!") else lines)


def _run(argv: list[str], timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise BackendUnavailable(f"`{' '.join(argv)}` failed ({proc.returncode}):\n"
                                 f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def _need_root() -> None:
    if os.geteuid() != 0:
        raise BackendUnavailable("the Docker set-up installs packages and writes /etc/docker: "
                                 "run it as root (sudo)")


def ensure_packages(packages: tuple[str, ...] = ("docker.io", "debootstrap")) -> list[str]:
    """``apt-get install`` whichever of ``packages`` is not installed; returns those installed."""
    missing = [p for p in packages
               if _run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout
               != "install ok installed"]
    if missing:
        _need_root()
        print(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                              capture_output=True, text=True, env=env, timeout=1800, check=False)
        if proc.returncode != 0:
            raise BackendUnavailable(f"apt-get install {' '.join(missing)} failed:\n"
                                     f"{proc.stderr.strip()[-2000:]}\nrun `apt-get update` and retry")
    return missing


def install_wrapper(path: Path = WRAPPER_PATH, python: str | None = None) -> bool:
    """Write the runc wrapper to ``path`` (mode 755) unless it is already current."""
    python = python or shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
    text = wrapper_text(python)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return True


def configure_daemon(path: Path = DAEMON_JSON) -> bool:
    """Register the wrapper in ``daemon.json``; True when the file changed."""
    existing = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    wanted = daemon_config(existing)
    if wanted == existing:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n")
    return True


def daemon_answers() -> bool:
    """True when ``docker info`` reaches a daemon."""
    if shutil.which("docker") is None:
        return False
    return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30,
                check=False).returncode == 0


def default_runtime() -> str:
    """The daemon's default runtime, as ``docker info`` reports it."""
    return _run(["docker", "info", "--format", "{{.DefaultRuntime}}"], timeout=30).stdout.strip()


def _dockerd_pids() -> list[int]:
    out = _run(["pgrep", "-x", "dockerd"], check=False).stdout
    return [int(p) for p in out.split()]


def start_dockerd(timeout: float = 60) -> int:
    """Start ``dockerd`` in the background (log: :data:`DOCKERD_LOG`); returns its pid."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise BackendUnavailable("dockerd is missing: install Debian's docker.io (this script "
                                 "does: run it again as root)")
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = DOCKERD_LOG.open("ab")
    proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(1)
    tail = DOCKERD_LOG.read_text(errors="replace")[-2000:]
    raise BackendUnavailable(f"dockerd did not come up within {timeout:.0f} s; the end of "
                             f"{DOCKERD_LOG}:\n{tail}")


def stop_dockerd(timeout: float = 30) -> bool:
    """Stop a ``dockerd`` started here (SIGTERM, then wait); True if one was running."""
    pids = _dockerd_pids()
    for pid in pids:
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while _dockerd_pids() and time.monotonic() < deadline:
        time.sleep(0.5)
    return bool(pids)


def ensure_docker() -> dict:
    """The whole set-up: packages, wrapper, daemon.json, dockerd running with the wrapper.

    A daemon already running with a changed ``daemon.json`` is restarted so it takes the
    wrapper as its default runtime (that stops running containers: said in the message).
    """
    _need_root()
    done: dict = {"installed": ensure_packages()}
    done["wrapper_written"] = install_wrapper()
    done["daemon_json_changed"] = configure_daemon()
    if daemon_answers():
        if default_runtime() != RUNTIME_NAME:
            if not _dockerd_pids():
                raise BackendUnavailable(
                    f"a Docker daemon answers but was not started here and does not use "
                    f"{RUNTIME_NAME}; restart it (e.g. `systemctl restart docker`) so it reads "
                    f"{DAEMON_JSON}")
            print("restarting dockerd so it uses the runc wrapper (running containers stop)")
            stop_dockerd()
            done["dockerd_pid"] = start_dockerd()
        else:
            done["dockerd"] = "already running"
    else:
        done["dockerd_pid"] = start_dockerd()
    done["default_runtime"] = default_runtime()
    return done
