"""Pure-ASGI middleware: a request id bound to every log line of an HTTP request (and
echoed as X-Request-ID), and the HTTP metrics the migration plan's alerts are written on.
WebSocket connections bind their own id in server/ws.py."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import Metrics

log = structlog.get_logger(__name__)
_INCOMING_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _INCOMING_ID.fullmatch(incoming) else uuid.uuid4().hex[:16]
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                matched = scope.get("route")
                route = getattr(matched, "path", "unmatched")
                self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
                self.metrics.http_duration.labels(route).observe(elapsed)
                log.info("http.request", method=scope["method"], route=route, status=status,
                         ms=round(elapsed * 1000, 1))
