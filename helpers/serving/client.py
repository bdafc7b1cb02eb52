"""An Endpoint client for KServe's V1 and V2 (Open Inference Protocol) REST APIs.

The same :class:`Endpoint` talks to the local model server (``http://127.0.0.1:<port>``)
and to a cluster predictor reached through ``kubectl port-forward``: pass the forwarded
base URL and, when going through an ingress gateway (Knative mode), the ``Host`` header
of the InferenceService. Every call has a timeout; an HTTP error raises
:class:`EndpointError` carrying the status and the server's own message.

Predictions come back as numpy arrays of class probabilities (``N x 3`` for Iris), the
shape KServe's xgbserver returns for a ``multi:softprob`` booster; :meth:`Endpoint.labels`
turns them into class indices.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from helpers.errors import LabError

#: (connect, read) seconds; a model server on loopback answers in milliseconds.
DEFAULT_TIMEOUT = (3.0, 10.0)


class EndpointError(LabError):
    """A request to a model endpoint failed: connection, timeout, or an HTTP error.

    Attributes:
        status: the HTTP status code, or ``None`` when no response arrived.
        server_message: the server's ``error`` field (or body text), if any.
        url: the URL that was requested.
        transient: no answer came back because the connection was refused, reset or closed
            (worth sending again; a timeout or an HTTP error is not).
    """

    def __init__(self, message: str, status: int | None = None, server_message: str = "",
                 url: str = "", transient: bool = False):
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        self.url = url
        self.transient = transient


@dataclass
class Response:
    """A raw answer, for showing status codes and messages without raising."""

    status: int
    body: Any
    seconds: float

    @property
    def error(self) -> str:
        """The server's ``error`` message ('' for a success)."""
        if isinstance(self.body, dict):
            return str(self.body.get("error", self.body.get("detail", "")))
        return "" if self.status < 400 else str(self.body)


@dataclass
class Endpoint:
    """A model served over KServe's REST protocols.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080`` (local server or port-forward).
        model_name: the model's name in the URL paths.
        host_header: a ``Host`` header to send, e.g. ``iris.kubeflow.example.com`` when the
            port-forward goes to an ingress gateway rather than the predictor Service.
        timeout: seconds, or a ``(connect, read)`` pair, applied to every request.
        retries: how many more times a request is sent when no answer came back (connection
            refused, reset or closed: a predictor pod being replaced, a port-forward coming
            back) or the answer was 503 (not ready). 0 (the default) sends once. Inference is
            a pure function of its input, so sending it again is safe.
        retry_delay: seconds before the first retry; each next wait is one ``retry_delay``
            longer (bounded: ``retries`` waits in all).
    """

    base_url: str
    model_name: str = "iris"
    host_header: str | None = None
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    retries: int = 0
    retry_delay: float = 0.5
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    #: Retries spent so far, over all requests (what a fault test or a lab reports).
    retried: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise LabError(f"base_url {self.base_url!r} must start with http:// or https://, "
                           "e.g. http://127.0.0.1:8080")
        if self.host_header:
            self.session.headers["Host"] = self.host_header
        if self.retries < 0:
            raise LabError(f"retries={self.retries!r} must be >= 0")

    # -- low level ---------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, data: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """Send one request and return status + decoded body, raising only if none came back.

        Args:
            method: ``GET`` or ``POST``.
            path: the URL path, e.g. ``/v2/health/ready``.
            body: a JSON-serialisable body (sent with Content-Type application/json).
            data: raw bytes/text to send instead of ``body`` (e.g. malformed JSON).
            headers: extra headers.

        Raises:
            EndpointError: connection refused, timeout, or another transport failure (after
                :attr:`retries` more attempts for the retryable ones).
        """
        started, attempt = time.monotonic(), 0
        while True:
            try:
                resp = self._send(method, path, body, data, headers)
            except EndpointError as exc:
                if attempt >= self.retries or not exc.transient:
                    if attempt:
                        exc.args = (f"{exc} (after {attempt + 1} attempts over "
                                    f"{time.monotonic() - started:.1f} s)",)
                    raise
            else:
                if resp.status != 503 or attempt >= self.retries:
                    return resp
            attempt += 1
            self.retried += 1
            time.sleep(self.retry_delay * attempt)

    def _send(self, method: str, path: str, body: Any, data: bytes | str | None,
              headers: dict[str, str] | None) -> Response:
        """One request, no retry (see :meth:`request`)."""
        url = f"{self.base_url}{path}"
        sent_headers = dict(headers or {})
        if data is not None and "Content-Type" not in sent_headers:
            sent_headers["Content-Type"] = "application/json"
        try:
            resp = self.session.request(method, url, json=body if data is None else None,
                                        data=data, headers=sent_headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise EndpointError(f"{method} {url} timed out after {self.timeout} s: is the "
                                "server overloaded or stopped? check its logs", url=url) from exc
        except requests.ConnectionError as exc:
            if "Connection aborted" in str(exc):
                raise EndpointError(f"{method} {url}: the server closed the connection without "
                                    "an HTTP answer (it crashed on this request?)",
                                    url=url, transient=True) from exc
            raise EndpointError(f"{method} {url}: cannot connect ({type(exc).__name__}): is the "
                                "server running, and is the port (or port-forward) right?",
                                url=url, transient=True) from exc
        try:
            decoded: Any = resp.json()
        except ValueError:
            decoded = resp.text
        return Response(resp.status_code, decoded, resp.elapsed.total_seconds())

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Like :meth:`request`, but return the decoded body of a 2xx answer.

        Raises:
            EndpointError: transport failure or an HTTP error, with the server's message.
        """
        resp = self.request(method, path, body)
        if resp.status >= 400:
            url = f"{self.base_url}{path}"
            raise EndpointError(f"{method} {url} -> HTTP {resp.status}: "
                                f"{resp.error or 'no message'}", status=resp.status,
                                server_message=resp.error, url=url)
        return resp.body

    # -- health and metadata -----------------------------------------------------------
    def live(self) -> bool:
        """V2 ``GET /v2/health/live``: is the server process up?"""
        return bool(self.call("GET", "/v2/health/live").get("live"))

    def ready(self) -> bool:
        """V2 ``GET /v2/health/ready``: are the server's models loaded?"""
        return bool(self.call("GET", "/v2/health/ready").get("ready"))

    def model_ready(self) -> bool:
        """V2 ``GET /v2/models/<m>/ready``."""
        return bool(self.call("GET", f"/v2/models/{self.model_name}/ready").get("ready"))

    def server_metadata(self) -> dict:
        """V2 ``GET /v2``: server name, version and protocol extensions."""
        return self.call("GET", "/v2")

    def model_metadata(self) -> dict:
        """V2 ``GET /v2/models/<m>``: the model's name, platform, inputs and outputs."""
        return self.call("GET", f"/v2/models/{self.model_name}")

    def list_models(self) -> list[str]:
        """V1 ``GET /v1/models``: the names the server serves."""
        return list(self.call("GET", "/v1/models")["models"])

    def model_status_v1(self) -> dict:
        """V1 ``GET /v1/models/<m>``: ``{"name": m, "ready": true}``."""
        return self.call("GET", f"/v1/models/{self.model_name}")

    # -- inference ---------------------------------------------------------------------
    def predict_v1(self, rows: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """V1 ``POST /v1/models/<m>:predict`` with ``{"instances": rows}``.

        Returns:
            The ``predictions`` as a float array (class probabilities, ``N x 3``).
        """
        body = {"instances": _as_lists(rows)}
        answer = self.call("POST", f"/v1/models/{self.model_name}:predict", body)
        return np.asarray(answer["predictions"], dtype=np.float64)

    def v2_request(self, rows: Sequence[Sequence[float]] | np.ndarray,
                   datatype: str = "FP32") -> dict:
        """The V2 inference request body for ``rows`` (one ``input-0`` tensor)."""
        matrix = _as_lists(rows)
        n_cols = len(matrix[0]) if matrix and isinstance(matrix[0], list) else 0
        return {"inputs": [{"name": "input-0", "shape": [len(matrix), n_cols],
                            "datatype": datatype, "data": matrix}]}

    def infer_v2(self, rows: Sequence[Sequence[float]] | np.ndarray,
                 datatype: str = "FP32") -> np.ndarray:
        """V2 ``POST /v2/models/<m>/infer``; return the first output reshaped to its shape."""
        answer = self.call("POST", f"/v2/models/{self.model_name}/infer",
                           self.v2_request(rows, datatype))
        output = answer["outputs"][0]
        return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])

    def predict(self, rows: Sequence[Sequence[float]] | np.ndarray,
                protocol: str = "v1") -> np.ndarray:
        """Class probabilities over ``protocol`` (``"v1"`` or ``"v2"``)."""
        if protocol not in ("v1", "v2"):
            raise LabError(f"unknown protocol {protocol!r}: use 'v1' or 'v2'")
        return self.predict_v1(rows) if protocol == "v1" else self.infer_v2(rows)

    def labels(self, rows: Sequence[Sequence[float]] | np.ndarray,
               protocol: str = "v1") -> np.ndarray:
        """Predicted class index per row (argmax of the probabilities)."""
        return np.argmax(self.predict(rows, protocol), axis=1)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self.session.close()


def _as_lists(rows: Sequence[Sequence[float]] | np.ndarray) -> list:
    if isinstance(rows, np.ndarray):
        return rows.tolist()
    return [list(r) if isinstance(r, tuple | np.ndarray) else r for r in rows]


def bad_input_examples(endpoint: Endpoint) -> dict[str, tuple[str, Any]]:
    """The usual client mistakes, as ``case -> (path, body)``; a ``str`` body is sent raw.

    Used by lab 05 to show each one refused with a 4xx and a message.
    """
    model = endpoint.model_name
    v1, v2 = f"/v1/models/{model}:predict", f"/v2/models/{model}/infer"
    flower = [5.1, 3.5, 1.4, 0.2]
    return {
        "malformed JSON": (v1, '{"instances": [[5.1, 3.5'),
        "3 numbers, not 4": (v1, {"instances": [flower[:3]]}),
        "text, not numbers": (v1, {"instances": [["5.1", 3.5, 1.4, 0.2]]}),
        "NaN": (v2, '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", '
                    '"data": [NaN, 3.5, 1.4, 0.2]}]}'),
        "empty batch": (v2, endpoint.v2_request([])),
        "unknown model": ("/v1/models/no-such-model:predict", {"instances": [flower]}),
        "10,001 rows": (v1, {"instances": [flower] * 10_001}),
    }


def probe(endpoint: Endpoint, cases: dict[str, tuple[str, Any]]) -> dict[str, Response]:
    """POST each case's body to its path and return the raw responses (never raises on 4xx)."""
    return {case: endpoint.request("POST", path, None if isinstance(body, str) else body,
                                   data=body if isinstance(body, str) else None)
            for case, (path, body) in cases.items()}


#: KServe's per-stage Prometheus histograms, by the stage they time.
STAGE_METRICS = {"preprocess": "request_preprocess_seconds",
                 "predict": "request_predict_seconds",
                 "postprocess": "request_postprocess_seconds",
                 "explain": "request_explain_seconds"}


def stage_counts(metrics_text: str, model_name: str) -> dict[str, int]:
    """How many requests each stage has timed, read from a ``/metrics`` page.

    Args:
        metrics_text: the Prometheus text exposition from ``GET /metrics``.
        model_name: the model whose ``model_name`` label to read.

    Returns:
        ``{"preprocess": n, "predict": n, "postprocess": n, "explain": n}`` (0 when absent).
    """
    counts = dict.fromkeys(STAGE_METRICS, 0)
    for stage, metric in STAGE_METRICS.items():
        pattern = re.compile(rf'^{metric}_count\{{[^}}]*model_name="{re.escape(model_name)}"'
                             rf'[^}}]*\}} ([0-9.eE+]+)$', re.M)
        found = pattern.search(metrics_text)
        counts[stage] = int(float(found.group(1))) if found else 0
    return counts
