"""What every request goes through before and after its endpoint (one pure ASGI middleware).

- a request id: the client's ``X-Request-ID`` when it is a short token, else a new one;
  returned in the response's ``X-Request-ID``;
- the body limit: a ``Content-Length`` above ``max_body_bytes`` is refused (413) before anything
  is read, and a streamed body is cut off at the limit;
- JSON only: a request with a body must say ``Content-Type: application/json`` (415), so a
  browser form can never post to the API (CSRF);
- errors: an exception an endpoint did not handle becomes a 500 with a one-line JSON message;
- observability: every request is counted and timed in Prometheus by its route template and
  status, written as one JSON access-log line, and, when OpenTelemetry is on, traced in a
  ``hubroute.request`` span that holds the request id (FastAPI's own spans nest under it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from hubroute.service.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BODY_METHODS = {"POST", "PUT", "PATCH"}

access_logger = logging.getLogger("hubroute.access")


def json_access_log() -> logging.Logger:
    """The access logger, writing bare JSON lines to stderr (set up once)."""
    if not access_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False
    return access_logger


class BodyTooLarge(Exception):
    """A streamed body passed the limit."""


async def _send_json(send: Callable[[Message], Awaitable[None]], status: int, detail: str, rid: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """The middleware (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        access_log: bool = True,
        tracer: Any = None,
    ):
        self.app, self.metrics, self.max_body = app, metrics, max_body_bytes
        self.log = json_access_log() if access_log else None
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        method = scope["method"]
        status = [500]
        started = [False]

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        refused = self._refuse(method, headers)
        span = token = None
        if self.tracer is not None:  # the parent of the spans FastAPI itself makes
            from opentelemetry import context, trace

            span = self.tracer.start_span("hubroute.request")
            span.set_attribute("http.request.method", method)
            span.set_attribute("hubroute.request_id", rid)
            token = context.attach(trace.set_span_in_context(span))
        try:
            if refused:
                await _send_json(send_wrapped, refused[0], refused[1], rid)
            else:
                await self.app(scope, self._limited(receive), send_wrapped)
        except BodyTooLarge:
            if not started[0]:
                await _send_json(send_wrapped, 413, f"the body is larger than {self.max_body} bytes", rid)
        except Exception as e:  # never a traceback to the client; the access log has the type
            if not started[0]:
                await _send_json(send_wrapped, 500, f"internal error ({type(e).__name__}); request id {rid}", rid)
            logging.getLogger("hubroute.service").exception("request %s failed", rid)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - t0
            self.metrics.request(method, path, status[0], seconds)
            if span is not None:
                from opentelemetry import context

                span.set_attribute("http.route", path)
                span.set_attribute("http.response.status_code", status[0])
                span.end()
                context.detach(token)
            if self.log is not None:
                principal = scope.get("state", {}).get("principal")
                self.log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "request_id": rid,
                            "method": method,
                            "path": scope.get("path", ""),
                            "route": path,
                            "status": status[0],
                            "ms": round(1000 * seconds, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                            "key": getattr(principal, "name", None),
                        }
                    )
                )

    def _refuse(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "Content-Length is not a number"
            if int(length) > self.max_body:
                return 413, f"the body has {length} bytes; the limit is {self.max_body}"
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if method in BODY_METHODS and has_body:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return 415, "request bodies must be JSON (Content-Type: application/json)"
        return None

    def _limited(self, receive: Any) -> Any:
        seen = [0]

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise BodyTooLarge
            return message

        return wrapped
