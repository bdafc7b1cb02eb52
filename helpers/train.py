"""Train the Iris classifier and save it into a model store: the cluster's training job.

The same code as lab 03 (:mod:`helpers.training`), as a command::

    python -m helpers.train --output-dir DIR [--seed S] [--format json|ubj] [--name iris]
                            [--n-estimators N] [--test-fraction F] [--onnx]

writes ``DIR/<name>/model.<format>`` (one model file per model folder, as KServe expects)
and, with ``--onnx``, ``DIR/<name>-onnx/model.onnx``; it prints where each model went.
On a cluster ``DIR`` is the mounted PVC.

Launched by the Training Operator v1 (an XGBoostJob) or Trainer v2's XGBoost runtime, the
command trains distributed: it reads the rendezvous from the environment
(:func:`helpers.distributed.from_env`), every replica fits its shard as one member of
XGBoost's collective, and only rank 0 (the Master) saves the model. ``--join-timeout``
bounds each wait for the group; a group that does not form exits 2 naming the missing ranks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers import distributed
from helpers.errors import cli_errors
from helpers.model_store import SAVE_FORMATS, prepare_store

# helpers.training (numpy, XGBoost, scikit-learn: seconds to import) is imported only once
# the arguments and the output folder have been checked, so a mistyped option is refused
# at once rather than after the imports.


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m helpers.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description="Train the Iris XGBoost classifier and save it into a model store.")
    parser.add_argument("--output-dir", required=True,
                        help="model store folder (the PVC mount on a cluster); the model goes "
                             "to OUTPUT_DIR/NAME/model.FORMAT")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of XGBoost")
    parser.add_argument("--format", choices=SAVE_FORMATS, default="json", dest="fmt",
                        help="XGBoost's own format: json (readable) or ubj (binary JSON)")
    parser.add_argument("--name", default="iris",
                        help="model folder name, also the name KServe serves it under")
    parser.add_argument("--n-estimators", type=int, default=None,
                        help="boosting rounds (trees per class; default: the lab's, "
                             "helpers.training.DEFAULT_PARAMS)")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="share of each species held out for evaluation (0 < f < 1)")
    parser.add_argument("--onnx", action="store_true",
                        help="also export ONNX to OUTPUT_DIR/NAME-onnx/model.onnx (its own folder)")
    parser.add_argument("--join-timeout", type=float, default=None,
                        help="distributed runs: seconds to wait for the tracker and for the whole "
                             "group (default 120)")
    parser.add_argument("--report-json", default=None,
                        help="write this worker's outcome (rank, accuracy, model path or the "
                             "missing ranks) to this JSON file")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process dies (set by helpers.distributed_local)")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, save; print the accuracy and the saved model's path."""
    rdv = distributed.from_env()
    if rdv is not None and rdv.world_size > 1:
        # A distributed worker trains with xgboost.train() on numpy arrays alone: hide
        # scikit-learn and pandas, which xgboost imports only if present (seconds per
        # worker, times four on one laptop), as helpers.serving does for its server.
        for unused in ("sklearn", "pandas"):
            sys.modules.setdefault(unused, None)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_estimators is not None and args.n_estimators < 1:
        parser.error(f"--n-estimators must be at least 1, got {args.n_estimators}")
    # A command resolves relative paths against the working directory, as users expect
    # of a command (the labs resolve theirs against the repository root instead).
    store = prepare_store(Path(args.output_dir).expanduser().resolve())
    if args.parent_pid is not None:
        from helpers.processes import die_with_parent

        die_with_parent(args.parent_pid)
    if args.onnx and rdv is not None and rdv.world_size > 1:
        parser.error("--onnx converts a single-process model: run without a launcher's "
                     "environment, or convert the saved model with helpers.serialization")
    from helpers import training

    world = f"rank {rdv.rank} of {rdv.world_size} ({rdv.launcher}): " if rdv else ""
    rounds = {} if args.n_estimators is None else {"n_estimators": args.n_estimators}
    try:
        result = training.train(seed=args.seed, test_fraction=args.test_fraction, **rounds,
                                rendezvous=rdv, join_timeout=args.join_timeout)
    except distributed.RendezvousError as exc:
        if args.report_json:
            distributed.report(args.report_json, ok=False, error=str(exc),
                               missing_ranks=exc.missing_ranks,
                               **distributed.rendezvous_fields(rdv))
        raise
    print(f"{world}trained iris classifier on {len(result.y_train)} rows: seed {args.seed}, "
          f"test accuracy {result.accuracy:.3f} on {len(result.y_test)} held-out rows")
    path = None
    if rdv is None or rdv.rank == 0:  # every rank holds the same model: rank 0 saves it
        path = training.save_model(result.model, store, name=args.name, fmt=args.fmt)
        print(f"saved model to {path}")
    if args.report_json:
        distributed.report(args.report_json, ok=True, accuracy=result.accuracy,
                           n_train=len(result.y_train), model_path=str(path) if path else None,
                           **(distributed.rendezvous_fields(rdv) if rdv else {}))
    if args.onnx:
        # Imported only when asked: onnx and onnxmltools add a second to a cold start.
        from helpers import serialization

        onnx_path = serialization.save_onnx(serialization.to_onnx(result.model), store,
                                            name=f"{args.name}-onnx")
        print(f"saved ONNX model to {onnx_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
