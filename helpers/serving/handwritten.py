"""A deliberately minimal, hand-written model server - the "before serving frameworks" way.

This is what a first attempt at serving a model looks like: load the booster, open one
``POST /predict`` endpoint with the standard library's ``http.server``, call the model,
return JSON. It works for the happy path, and the lab uses it to make the missing pieces
visible. On purpose it has:

- no input validation: a wrong shape or a string reaches XGBoost, the handler raises and
  the client gets no HTTP answer at all (http.server drops the connection and prints a
  stack trace);
- no health or readiness endpoint, no metadata, no standard protocol (neither KServe V1
  nor V2): every client is written for this one server;
- one request at a time (``HTTPServer``, not ``ThreadingHTTPServer``);
- no authentication, TLS, metrics, logging policy, packaging or deployment story.

It binds 127.0.0.1 and runs on a daemon thread inside the notebook kernel. Do not use it
for anything but the comparison.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np

from helpers.model_store import find_model_file


class HandwrittenServer:
    """A bare ``http.server`` serving ``POST /predict`` with ``{"instances": rows}``.

    Args:
        model_dir: the directory holding the one XGBoost model file.
        host: the bind address (loopback).
        port: 0 picks a free port.
    """

    def __init__(self, model_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0):
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(find_model_file(model_dir)))
        self.errors_seen: list[str] = []
        errors = self.errors_seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/predict":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # The whole "API": no checks of any kind, straight into the model.
                rows = json.loads(body)["instances"]
                probs = booster.inplace_predict(np.array(rows))
                payload = json.dumps({"predictions": np.asarray(probs).tolist()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep the notebook quiet; a real server would need a logging policy

        class Server(HTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # http.server's default prints the traceback to stderr and drops the
                # connection; record what happened so the lab can show it.
                import sys

                kind, exc = sys.exc_info()[:2]
                errors.append(f"{kind.__name__}: {str(exc).splitlines()[0]}")

        self._httpd = Server((host, port), Handler)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="handwritten-server")
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def handles_concurrent_requests(self) -> bool:
        """Whether requests are served in parallel (they are not: plain ``HTTPServer``)."""
        return hasattr(self._httpd, "daemon_threads")

    def stop(self) -> None:
        """Stop serving and close the socket. Safe to call twice."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
