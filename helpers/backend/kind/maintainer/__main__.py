"""``python -m helpers.backend.kind.maintainer <command>``: the maintainer's no-registry kind path.

Commands (each idempotent; run as root on a maintainer machine):

* ``docker``     install Docker (Debian's docker.io) + the runc wrapper, start dockerd;
* ``base-image`` build ``kflabs/debian-base:bookworm`` with debootstrap;
* ``kind``       build the pinned ``kind`` into ``cluster/kind/.bin``;
* ``images``     all of the above that is missing, then the node image and the add-on images
  (:func:`helpers.backend.kind.image_build.build_addon_images`; ``make cluster-images``);
* ``kind-config`` write the maintainer kind config and print its path;
* ``test-cluster`` the whole check (``make test-cluster``, :mod:`.testrun`).
"""

from __future__ import annotations

import argparse
import json
import time

from helpers.backend.kind import image_build
from helpers.backend.kind.maintainer import base, docker, gobuild, kindconfig, nodeimage, testrun
from helpers.errors import cli_errors


def build_parser() -> argparse.ArgumentParser:
    """The maintainer command line."""
    parser = argparse.ArgumentParser(prog="python -m helpers.backend.kind.maintainer",
                                     description="Maintainer tools: kind with no registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("docker", help="Docker + the runc wrapper, dockerd started")
    sub.add_parser("base-image", help=f"build {base.BASE_IMAGE} (debootstrap)")
    sub.add_parser("kind", help="build the pinned kind into cluster/kind/.bin")
    p_images = sub.add_parser("images", help="everything above that is missing + the node image")
    p_images.add_argument("--force", action="store_true", help="rebuild even when cached")
    sub.add_parser("kind-config", help="write the maintainer kind config, print its path")
    p_test = sub.add_parser("test-cluster", help="images, cluster-up, cluster tests, labs on kind, "
                                                 "cluster-down; results in build/cluster-results.json")
    p_test.add_argument("--only", nargs="+", choices=[n for n, _ in testrun.steps()],
                        help="run only these steps")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command == "docker":
        print(json.dumps(docker.ensure_docker(), indent=2))
    elif args.command == "base-image":
        print(json.dumps(base.ensure_base_image(), indent=2))
    elif args.command == "kind":
        print(gobuild.ensure_kind())
    elif args.command == "images":
        start = time.perf_counter()
        if not docker.daemon_answers():
            docker.ensure_docker()
        gobuild.ensure_kind()
        summary = nodeimage.ensure_node_image(force=args.force)
        # the add-on images the installers start (Volcano, cert-manager, KServe, ...)
        summary["addon_images"] = image_build.build_addon_images(force=args.force)
        summary["wall_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(summary, indent=2))
    elif args.command == "test-cluster":
        record = testrun.run_all(only=args.only)
        print(json.dumps(record, indent=2))
        return 0 if record["ok"] else 1
    else:
        print(kindconfig.write_config(nodeimage.node_image_tag()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
