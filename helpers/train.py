"""Train the Iris classifier and save it into a model store: the cluster's training job.

The same code as lab 03 (:mod:`helpers.training`), as a command::

    python -m helpers.train --output-dir DIR [--seed S] [--format json|ubj] [--name iris]
                            [--n-estimators N] [--test-fraction F] [--onnx]

writes ``DIR/<name>/model.<format>`` (one model file per model folder, as KServe expects)
and, with ``--onnx``, ``DIR/<name>-onnx/model.onnx``; it prints where each model went.
On a cluster ``DIR`` is the mounted PVC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, save; print the accuracy and the saved model's path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_estimators is not None and args.n_estimators < 1:
        parser.error(f"--n-estimators must be at least 1, got {args.n_estimators}")
    # A command resolves relative paths against the working directory, as users expect
    # of a command (the labs resolve theirs against the repository root instead).
    store = prepare_store(Path(args.output_dir).expanduser().resolve())
    from helpers import training

    rounds = {} if args.n_estimators is None else {"n_estimators": args.n_estimators}
    result = training.train(seed=args.seed, test_fraction=args.test_fraction, **rounds)
    path = training.save_model(result.model, store, name=args.name, fmt=args.fmt)
    print(f"trained iris classifier: seed {args.seed}, test accuracy {result.accuracy:.3f} "
          f"on {len(result.y_test)} held-out rows")
    print(f"saved model to {path}")
    if args.onnx:
        # Imported only when asked: onnx and onnxmltools add a second to a cold start.
        from helpers import serialization

        onnx_path = serialization.save_onnx(serialization.to_onnx(result.model), store,
                                            name=f"{args.name}-onnx")
        print(f"saved ONNX model to {onnx_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
