"""Command line: run the scheduling model on manifests.

Example::

    python -m helpers.scheduling --manifests cluster/manifests/scheduling/namespace.yaml \\
        cluster/manifests/scheduling/two-jobs/default --nodes 3 --node-gpus 2 --scheduler default

Prints a readable summary, or with ``--json`` the full result (see :mod:`helpers.scheduling`).
Exit status 2 with a message for bad input (malformed manifest, unknown scheduler...).
"""

from __future__ import annotations

import argparse
import json
import sys

from helpers.errors import LabError, cli_errors
from helpers.scheduling.model import load_manifests, make_nodes
from helpers.scheduling.simulate import SCHEDULERS, SimConfig, simulate


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.scheduling",
        description="Run kube-scheduler, Volcano or kube-scheduler's gang plugin (modelled) on manifests.")
    parser.add_argument("--manifests", nargs="+", required=True, metavar="PATH",
                        help="manifest files or directories, applied in the order given")
    parser.add_argument("--nodes", type=int, required=True, help="number of identical nodes")
    parser.add_argument("--node-gpus", type=int, required=True, help="example.com/gpu per node")
    parser.add_argument("--node-cpu", default="4", help="allocatable cpu per node (default 4)")
    parser.add_argument("--node-memory", default="8Gi", help="allocatable memory per node (default 8Gi)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, required=True,
                        help="default: kube-scheduler only; volcano: Volcano installed as well; "
                             "gang: kube-scheduler with its GangScheduling plugin (Workload API, "
                             "Kubernetes 1.35 alpha)")
    parser.add_argument("--seed", type=int, default=0, help="tie-breaking seed (default 0)")
    parser.add_argument("--horizon", type=float, default=SimConfig.horizon,
                        help="observation window in seconds when work is left unfinished")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the model, print the summary or JSON; 0 on success."""
    args = build_parser().parse_args(argv)
    if args.nodes < 1 or args.node_gpus < 0:
        raise LabError(f"--nodes must be >= 1 and --node-gpus >= 0 (got {args.nodes}, {args.node_gpus})")
    if args.horizon <= 0:
        raise LabError(f"--horizon must be > 0 (got {args.horizon})")
    manifests = load_manifests(args.manifests)
    nodes = make_nodes(args.nodes, args.node_gpus, cpu=args.node_cpu, memory=args.node_memory)
    result = simulate(manifests, nodes, args.scheduler, seed=args.seed,
                      config=SimConfig(horizon=args.horizon))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
