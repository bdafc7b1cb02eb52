"""The Docker-less control plane behind ``BACKEND="kwok"``: build it, start it, stop it.

What it runs (real kube-apiserver, schedulers, Volcano and kwok on fake nodes; no container
ever runs) is described once, in :mod:`helpers.backend.kwok`.

Command line (the Makefile's ``controlplane-up`` / ``controlplane-down`` call it)::

    python -m helpers.controlplane build|up|down|status [--nodes N --node-gpus G]

Files: binaries in ``cluster/controlplane/.bin/`` (ignored, reused while the go.mod, go.sum,
Go version and flags are unchanged); state, logs and the kubeconfig in
``build/controlplane/`` (:func:`helpers.kube.names.kwok_kubeconfig` reads it from there).

This module is the command line; the work is done by the ``kwok`` backend,
:mod:`helpers.backend.kwok` (build, PKI, supervisor, nodes, Training Operator, Trainer v2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from helpers.backend.kwok.build import build
from helpers.backend.kwok.layout import bin_dir
from helpers.backend.kwok.supervisor import down, status, up
from helpers.errors import BackendUnavailable, LabError, cli_errors


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.controlplane build|up|down|status``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.controlplane",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    parser.add_argument("--nodes", type=int, default=4, help="fake nodes to create (up)")
    parser.add_argument("--node-gpus", type=int, default=2, help="example.com/gpu per node")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached (build)")
    parser.add_argument("--if-go", action="store_true",
                        help="build: without Go (or on a failed build) say why and exit 0, so "
                             "`make test` goes on and the kwok tests skip or report it")
    args = parser.parse_args(argv)
    if args.nodes < 0 or args.node_gpus < 0:
        raise LabError("--nodes and --node-gpus must be >= 0")
    if args.command == "build":
        try:
            spent = build(force=args.force)
        except BackendUnavailable as exc:
            if not args.if_go:
                raise
            print(f"control plane not built: {exc}\n(tests marked kwok will skip or report "
                  "this)", file=sys.stderr)
            return 0
        print(f"binaries in {bin_dir()}: " + ", ".join(
            f"{m} {'reused' if s == 0 else f'{s} s'}" for m, s in spent.items()))
    elif args.command == "up":
        info = up(args.nodes, args.node_gpus)
        if info["already_running"]:
            print(f"control plane already running; kubeconfig {info['kubeconfig']}")
        print(f'use it with BACKEND="kwok" (or KUBECONFIG={info["kubeconfig"]} kubectl ...)')
    elif args.command == "down":
        down()
    else:
        table = status()
        if not table:
            print("control plane not running")
        for name, entry in table.items():
            state = "running" if entry["running"] else "stopped"
            restarts = f"  restarted {entry['restarts']}x" if entry["restarts"] else ""
            print(f"{name:24} {state:8} pid {entry['pid']:>7}  127.0.0.1:{entry['port']}{restarts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
