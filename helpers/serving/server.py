"""KServe's ModelServer, bound to loopback, with clearer 4xx answers.

``kserve.ModelServer`` builds its REST server with ``uvicorn.Config(host="0.0.0.0")``
written into ``RESTServer.__init__``: inside a pod that is right (the kubelet and the
Service must reach it), on a learner's laptop it exposes the model to the whole network.
The seam used here: :class:`LoopbackRESTServer` subclasses kserve's ``RESTServer`` and
sets ``config.host`` before uvicorn binds (uvicorn reads it only when ``serve()`` opens
the socket); :class:`LoopbackModelServer` overrides ``start`` to use it. Everything else -
routes, data plane, V1/V2 endpoints, metrics - is kserve's unchanged. gRPC is off and one
worker runs.

Two exception handlers replace or join kserve's: ``InvalidInput`` is logged as one line
instead of a stack trace (:class:`BatchTooLarge` answers 413), and FastAPI's
request-validation error (a V2 body that is not valid JSON or not an inference request)
becomes 400 with a message that shows the expected body instead of pydantic's raw list.

This module imports ``kserve``: it runs inside the server process
(``python -m helpers.serving``), not in the notebook kernel.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.logging import logger as _log
from kserve.protocol.rest.server import RESTServer

from helpers.serving.models import EXPECTED, BatchTooLarge

V1_BODY_HINT = 'expected a JSON object {"instances": [[...], ...]}'
V2_BODY_HINT = ('expected a JSON object {"inputs": [{"name": "input-0", "shape": [N, 4], '
                '"datatype": "FP32", "data": [[...], ...]}]}')




def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


async def _invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
    """400 (413 for :class:`BatchTooLarge`) with the reason, logged as one line.

    kserve's own handler logs a full stack trace for every bad request; a client's
    mistake is not a server fault, so one warning line is enough here.
    """
    message = str(exc)
    if message.startswith("Unrecognized request format"):
        # kserve's V1 JSON decoder failed: say what a valid body looks like.
        message = (f"{message}: the body must be JSON (no NaN or Infinity literals) sent "
                   f'with Content-Type: application/json, {V1_BODY_HINT}; {EXPECTED}')
    status = 413 if isinstance(exc, BatchTooLarge) else 400
    _log.warning("%s %s -> %d: %s", request.method, request.url.path, status, message[:200])
    return _json_error(status, message)


async def _bad_request_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 for a V2 body FastAPI could not parse, showing the expected body."""
    problems = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{loc}: {err.get('msg', 'invalid')}")
    message = f"invalid request body ({'; '.join(problems)}): {V2_BODY_HINT}; {EXPECTED}"
    _log.warning("%s %s -> 400: %s", request.method, request.url.path, message[:200])
    return _json_error(400, message)


#: Bodies declared larger than this are refused with 413 before they are read. 10,000 rows
#: of four numbers are about 0.5 MB of JSON, so this leaves ample room.
DEFAULT_MAX_BODY_BYTES = 8 * 2**20


class BodySizeLimit:
    """ASGI middleware: answer 413 when a request declares a body above ``max_bytes``.

    Without it, a huge body is read into memory and parsed before the row limit can refuse
    it. The check uses the ``Content-Length`` header (set by every common HTTP client).
    """

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
            size = int(declared) if declared.isdigit() else 0
            if size > self.max_bytes:
                message = (f"request body of {size} bytes is larger than this server's limit of "
                           f"{self.max_bytes} bytes: send fewer rows per request")
                _log.warning("%s %s -> 413: %s", scope.get("method"), scope.get("path"), message)
                await _json_error(413, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class LoopbackRESTServer(RESTServer):
    """kserve's ``RESTServer`` with a configurable bind host and clearer 4xx answers.

    Args:
        *args: passed to ``RESTServer``.
        host: the address uvicorn binds (kserve writes ``0.0.0.0`` into its config).
        access_log: whether uvicorn logs one line per request.
        max_body_bytes: larger declared bodies get 413 unread (:class:`BodySizeLimit`).
        **kwargs: passed to ``RESTServer``.
    """

    def __init__(self, *args, host: str = "127.0.0.1", access_log: bool = True,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, **kwargs):
        self.max_body_bytes = max_body_bytes
        super().__init__(*args, **kwargs)
        # The seam: uvicorn reads config.host only when serve() opens the socket.
        self.config.host = host
        self.config.access_log = access_log

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        app.add_middleware(BodySizeLimit, max_bytes=self.max_body_bytes)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        # Registered after kserve's, so these replace its InvalidInput handler; Starlette
        # picks the handler of the most specific class, so BatchTooLarge gets its own 413.
        app.add_exception_handler(InvalidInput, _invalid_input)
        app.add_exception_handler(RequestValidationError, _bad_request_body)


class LoopbackModelServer(ModelServer):
    """``kserve.ModelServer`` that binds ``host`` (127.0.0.1 by default), REST only.

    Args:
        http_port: the TCP port to listen on.
        host: the address to bind. Pass ``0.0.0.0`` only inside a container.
        access_log: log one line per request (uvicorn's access log).
        latency_log: log kserve's per-request preprocess/predict/postprocess timings.
    """

    def __init__(self, http_port: int, host: str = "127.0.0.1", access_log: bool = True,
                 latency_log: bool = False):
        super().__init__(http_port=http_port, enable_grpc=False, workers=1,
                         enable_latency_logging=latency_log)
        self.host = host
        self.access_log = access_log
        if not access_log:
            # kserve's timing middleware logs two trace lines per request: per-request
            # logging is what --no-access-log turns off.
            logging.getLogger("kserve.trace").disabled = True

    def start(self, models: list) -> None:
        """Register ``models`` and serve them over REST until SIGINT/SIGTERM.

        The same steps as ``ModelServer.start`` for one worker without gRPC, with
        :class:`LoopbackRESTServer` in place of ``RESTServer``. ``asyncio.run`` blocks:
        call this from a process of its own.
        """
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = LoopbackRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, access_log_format=self.access_log_format, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive, host=self.host,
            access_log=self.access_log)
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        # No kserve signal handlers: uvicorn's serve() captures SIGINT/SIGTERM itself and
        # shuts down gracefully; kserve's handler would only schedule a task for the
        # multi-process and gRPC servers, neither of which runs here.
        asyncio.run(self._serve())
