"""``python -m helpers.cluster up|down|status|image|images``: the kind cluster's command line.

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
from helpers.kube.names import KIND_CLUSTER_NAME as CLUSTER_NAME


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
    p_images = sub.add_parser("images", help="build the add-on images from source (no registry)")
    p_images.add_argument("--only", nargs="+", help="build only these images (keys)")
    p_images.add_argument("--force", action="store_true", help="rebuild unchanged images")
    p_images.add_argument("--load", action="store_true", help="kind load them into the cluster")
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
    elif args.command == "images":
        from helpers.backend.kind.image_build import build_addon_images, load_into_kind
        built = build_addon_images(args.only, force=args.force)
        if args.load:
            load_into_kind([entry["ref"] for entry in built], CLUSTER_NAME)
        print(json.dumps(built, indent=2))
    elif args.command == "status":
        print(json.dumps(status(), indent=2))
    else:
        print(ensure_training_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
