"""``python -m helpers.cluster up|down|status|image``: the kind cluster's command line.

Behind ``make cluster-up`` / ``make cluster-down``: create or reuse the kind cluster from
``cluster/kind/kind-config.yaml``, patch fake GPUs (``example.com/gpu``) onto the workers,
install Volcano, cert-manager, KServe (Standard mode) and the Training Operator (with
``--gang-scheduler-name=volcano``) at the versions pinned in ``cluster/versions.yaml``, and
build + load the kit's training image. The work is done by the ``kind`` backend,
:mod:`helpers.backend.kind` (lifecycle, installs, images, training, serving); the commands it
runs go through :mod:`helpers.kube.kubectl`.
"""

from __future__ import annotations

import argparse
import json
import sys

from helpers.backend.kind.images import ensure_training_image
from helpers.backend.kind.installs import COMPONENTS, INSTALL_TIMEOUT, down, up
from helpers.backend.kind.lifecycle import TOTAL_FAKE_GPUS, status
from helpers.errors import cli_errors


def build_parser() -> argparse.ArgumentParser:
    """The command line behind ``make cluster-up`` / ``make cluster-down``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.cluster",
                                     description="The kit's kind cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create or reuse the cluster and install everything")
    p_up.add_argument("--only", nargs="+", choices=COMPONENTS, default=list(COMPONENTS),
                      help="install only these components")
    p_up.add_argument("--gpus", type=int, default=TOTAL_FAKE_GPUS,
                      help="fake example.com/gpu in all, spread over the workers")
    p_up.add_argument("--timeout", type=float, default=INSTALL_TIMEOUT,
                      help="seconds each wait may take")
    p_up.add_argument("--no-image", action="store_true",
                      help="skip building/loading the training image")
    sub.add_parser("down", help="delete the cluster")
    sub.add_parser("status", help="show the cluster, fake GPUs and installed components")
    sub.add_parser("image", help="build the training image and load it into the nodes")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.cluster``."""
    args = build_parser().parse_args(argv)
    if args.command == "up":
        summary = up(components=args.only, gpus=args.gpus, timeout=args.timeout,
                     build_image=not args.no_image)
        print(json.dumps(summary, indent=2))
    elif args.command == "down":
        down()
    elif args.command == "status":
        print(json.dumps(status(), indent=2))
    else:
        print(ensure_training_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
