"""Run the Iris model on KServe's Python model server, bound to 127.0.0.1.

Usage::

    python -m helpers.serving --model-dir build/model-store/iris --model-name iris \\
        --http-port 8080 [--host 127.0.0.1] [--format auto|xgboost|onnx]

The model directory is checked *before* kserve is imported, so a missing or ambiguous
directory exits at once with status 2 and a message naming the fix. The process also
exits when the process that started it dies (``PR_SET_PDEATHSIG`` on Linux, plus a thread
watching the parent pid elsewhere), so a crashed notebook kernel leaves no server behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings

from helpers.errors import LabError, cli_errors
from helpers.model_store import ONNX_EXTENSIONS, XGBOOST_EXTENSIONS, find_model_file
from helpers.processes import die_with_parent

#: Optional packages this process never uses, each imported by a library only if installed.
UNUSED_OPTIONAL = {
    # kserve imports the kubernetes dynamic client, which imports kubernetes_validate (and
    # its JSON-schema format checkers, ~2 s) when present; nothing here validates objects.
    "kubernetes_validate": "kubernetes.dynamic validation",
    # xgboost.compat imports scikit-learn (and SciPy's stats, ~3 s) to offer its sklearn
    # estimator API; the server uses only the Booster.
    "sklearn": "xgboost's scikit-learn wrapper",
}


def skip_unused_optional_imports() -> None:
    """Mark :data:`UNUSED_OPTIONAL` as absent in this process, to cut start-up time.

    Each is imported inside ``try: ... except ImportError`` by the library that wants it, so
    a ``None`` entry in ``sys.modules`` makes that optional import fail cleanly - as it does
    in a slim runtime image without those packages. Only the server process does this.
    """
    for name in UNUSED_OPTIONAL:
        sys.modules.setdefault(name, None)


def _exit_cleanly(signum: int, _frame: object) -> None:
    print(f"helpers.serving: stopped by signal {signal.Signals(signum).name}", flush=True)
    raise SystemExit(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (hyphenated flags, distinct from kserve's own)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.serving",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="directory holding ONE model file")
    parser.add_argument("--model-name", default="iris", help="name in the URL (default iris)")
    parser.add_argument("--http-port", type=int, default=8080, help="REST port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="bind address (default 127.0.0.1; 0.0.0.0 only in a container)")
    parser.add_argument("--format", default="auto", choices=("auto", "xgboost", "onnx"),
                        help="model format; auto picks by the file's extension")
    parser.add_argument("--max-batch-rows", type=int, default=10_000,
                        help="rows accepted per request; more get HTTP 413")
    parser.add_argument("--no-access-log", action="store_true", help="no line per request")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process (the launcher) exits")
    parser.add_argument("--parent-watch", choices=("prctl", "thread"), default="prctl",
                        help="how to notice the launcher's death: prctl (Linux, tied to the "
                             "launching thread) or a polling thread (tied to the process)")
    return parser.parse_args(argv)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Check the model directory, load the model, serve until SIGTERM/SIGINT."""
    args = parse_args(argv)
    die_with_parent(args.parent_pid, use_prctl=args.parent_watch == "prctl")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"helpers.serving: warning: binding {args.host} exposes the model beyond this "
              "machine; do this only inside a container or behind a firewall", flush=True)
    if not 0 < args.http_port < 65536:
        raise LabError(f"--http-port {args.http_port} is not a TCP port: use 1-65535")
    extensions = {"auto": XGBOOST_EXTENSIONS + ONNX_EXTENSIONS, "xgboost": XGBOOST_EXTENSIONS,
                  "onnx": ONNX_EXTENSIONS}[args.format]
    find_model_file(args.model_dir, extensions)  # fail fast, before the slow kserve import
    # kserve.model_server parses sys.argv when imported: give it none of ours.
    sys.argv = sys.argv[:1]
    skip_unused_optional_imports()
    # kserve 0.20 still answers with FastAPI's ORJSONResponse, which FastAPI now flags as
    # deprecated on every first use: noise in the learner's log, nothing they can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    from helpers.serving.models import model_for_dir
    from helpers.serving.server import LoopbackModelServer

    # uvicorn captures SIGTERM while serving and re-raises it once shut down; exiting 0
    # then (rather than dying of the signal) tells the launcher the stop was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    model = model_for_dir(args.model_name, args.model_dir, args.format, args.max_batch_rows)
    model.load()
    print(f"helpers.serving: loaded {model.model_file} as {type(model).__name__} "
          f"'{args.model_name}'; serving on http://{args.host}:{args.http_port}", flush=True)
    LoopbackModelServer(args.http_port, host=args.host,
                        access_log=not args.no_access_log).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
