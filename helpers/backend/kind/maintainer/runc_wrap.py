#!/usr/bin/env python3
"""A runc wrapper that drops ``CAP_SYS_RESOURCE`` from OCI specs, then runs the real runc.

Some machines (ours among them) withhold ``CAP_SYS_RESOURCE`` from every process, so runc
fails on a ``--privileged`` container (kind's nodes) with ``unable to apply caps: operation
not permitted``. Docker is told to use this file as its default runtime
(``/etc/docker/daemon.json``: ``runtimes`` + ``default-runtime``, see
:mod:`helpers.backend.kind.maintainer.docker`). On ``create`` / ``run`` it edits the bundle's
``config.json`` (the bundle from ``--bundle`` / ``-b``, else the working directory), on
``exec`` the ``--process`` file, and then it replaces itself with the real runc, passing the
arguments through unchanged.

The file is standalone on purpose (stdlib only, no ``helpers`` imports): the installer copies
it out of the repository, and Docker runs it for every container.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: The capability the machine withholds.
DROPPED = "CAP_SYS_RESOURCE"
#: The real runc: this variable if set, else the first of :data:`REAL_RUNC_CANDIDATES` present.
REAL_RUNC_ENV = "KFLABS_REAL_RUNC"
REAL_RUNC_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc")
#: runc's global options that take a value (``runc --root DIR create ...``).
_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def drop_capability(spec: dict, cap: str = DROPPED) -> bool:
    """Delete ``cap`` from every capability list of an OCI spec, in place; True if any changed.

    Handles a full runtime spec (``process.capabilities``) and an exec ``--process`` file
    (``capabilities`` at the top); each of bounding/effective/inheritable/permitted/ambient.
    """
    changed = False
    holders = [spec.get("process"), spec]
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        caps = holder.get("capabilities")
        if not isinstance(caps, dict):
            continue
        for name, values in caps.items():
            if isinstance(values, list) and cap in values:
                caps[name] = [v for v in values if v != cap]
                changed = True
    return changed


def spec_files(argv: list[str], cwd: str) -> list[Path]:
    """Which OCI spec files a runc command line will read (``argv`` excludes the program).

    ``create``/``run``: ``<bundle>/config.json`` (``--bundle X``, ``--bundle=X``, ``-b X``,
    default the working directory); ``exec``: the ``--process`` / ``-p`` file if given.
    """
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # runc's global options
        opt = argv[i].split("=", 1)[0]
        i += 2 if opt in _GLOBAL_WITH_VALUE and "=" not in argv[i] else 1
    if i >= len(argv):
        return []
    command, rest = argv[i], argv[i + 1:]
    wanted = {"create": ("--bundle", "-b"), "run": ("--bundle", "-b"),
              "exec": ("--process", "-p")}.get(command)
    if wanted is None:
        return []
    value = None
    for j, arg in enumerate(rest):
        if arg in wanted and j + 1 < len(rest):
            value = rest[j + 1]
        elif "=" in arg and arg.split("=", 1)[0] in wanted:
            value = arg.split("=", 1)[1]
    if command == "exec":
        return [Path(value)] if value else []
    return [Path(value or cwd) / "config.json"]


def edit_file(path: Path) -> bool:
    """Drop the capability from one spec file, rewriting it only if it changed."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False  # not ours to judge: runc reports a missing/bad spec itself
    if not drop_capability(spec):
        return False
    path.write_text(json.dumps(spec))
    return True


def main(argv: list[str]) -> None:
    """Edit the specs ``argv`` names, then exec the real runc with ``argv`` unchanged."""
    for path in spec_files(argv, os.getcwd()):
        edit_file(path)
    real = real_runc()
    os.execv(real, [real, *argv])  # noqa: S606 - replace this process with runc, argv as given


def real_runc() -> str:
    """The runc binary to run: ``$KFLABS_REAL_RUNC``, else the first candidate that exists."""
    chosen = os.environ.get(REAL_RUNC_ENV)
    if chosen:
        return chosen
    for candidate in REAL_RUNC_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    sys.exit(f"kflabs runc wrapper: no runc found in {REAL_RUNC_CANDIDATES}; "
             f"install Debian's runc or set {REAL_RUNC_ENV}")


if __name__ == "__main__":
    main(sys.argv[1:])
