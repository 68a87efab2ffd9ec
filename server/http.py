"""The HTTP API: thin adapters from /api/v1/<name> to server.commands, bearer tokens,
and the error envelope of docs/protocol.md on every error, 404 and 500 included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server import __version__, auth, commands, errors, reports
from server.auth import ANONYMOUS, Principal
from server.db import Database
from server.endpoints import ENDPOINTS, Endpoint
from server.ratelimit import ClientLimits

log = structlog.get_logger(__name__)

MAX_BODY = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(result: Any) -> JSON:
    return JSON({"ok": True, "result": result})


def error_response(error: errors.MMCError) -> JSON:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return JSON(error.envelope(None), status_code=error.status, headers=headers)


def client_address(request: Request) -> str:
    """The client's address as uvicorn saw it (behind a proxy listed in
    FORWARDED_ALLOW_IPS, the one X-Forwarded-For names)."""
    return request.client.host if request.client else "unknown"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def principal_of(request: Request, token: str | None = None) -> Principal:
    """The caller (bearer token, or `token` when given): anonymous without one; an
    invalid or expired token is refused only where a role is needed."""
    token = token or bearer_token(request)
    if token is None:
        return ANONYMOUS
    try:
        return await auth.authenticate(request.state.db, token)
    except errors.Unauthorized:
        return ANONYMOUS


async def read_args(request: Request, endpoint: Endpoint) -> dict[str, Any]:
    if request.method == "GET":
        return {name: request.query_params[name] for name in endpoint.query
                if name in request.query_params}
    length = request.headers.get("content-length")
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
    if length is not None and (not length.isascii() or not length.isdigit()
                               or len(length) > 12 or int(length) > MAX_BODY):
        raise errors.TooLarge("request body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise errors.TooLarge("request body too large")
    if not body.strip():
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.BadRequest("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise errors.BadRequest("the body must be a JSON object")
    return parsed


def guarded(name: str, handler: Handler) -> Handler:
    """Rate-limit per client address and endpoint; render every MMCError as the
    envelope."""
    async def endpoint(request: Request) -> Response:
        try:
            limits: ClientLimits | None = request.state.http_limits
            if limits is not None:
                client = client_address(request)
                wait = limits.retry_after(client, name)
                if wait is not None:
                    raise errors.RateLimited("too many requests; slow down", retry_after=wait)
            return await handler(request)
        except errors.MMCError as exc:
            return error_response(exc)

    return endpoint


def command_handler(endpoint: Endpoint) -> Handler:
    assert endpoint.op is not None
    op = endpoint.op

    async def handle(request: Request) -> Response:
        principal = await principal_of(request)
        args = await read_args(request, endpoint)
        token = bearer_token(request)
        result = await commands.execute(
            request.state.db, principal, op, args, client=client_address(request),
            token=None if token is None or principal.is_anonymous else auth.token_hash(token))
        return ok(result)

    return handle


async def health(request: Request) -> Response:
    db: Database = request.state.db
    hub = getattr(request.state, "hub", None)
    return ok({
        "status": "ok",
        "version": __version__,
        "breaker": db.breaker.state.value,
        "hub_listening": bool(hub is not None and hub.listening),
    })


async def admin_status(request: Request) -> Response:
    principal = await principal_of(request)
    if principal.is_anonymous:
        raise errors.Unauthorized()
    if principal.role == "patient":
        raise errors.Forbidden()
    token = bearer_token(request)
    assert token is not None
    db: Database = request.state.db
    async with db.transaction() as conn:
        expires_at = await conn.fetchval(
            "SELECT expires_at FROM sessions WHERE token_hash = $1", auth.token_hash(token))
    return ok({**principal.public(), "expires_at": expires_at})


async def stats_queues(request: Request) -> Response:
    db: Database = request.state.db
    return ok(await db.call("SELECT mmc_stats_queues($1)", db.now()))


async def logout(request: Request) -> Response:
    token = bearer_token(request)
    if token is None or (await principal_of(request)).is_anonymous:
        raise errors.Unauthorized()
    db: Database = request.state.db
    async with db.transaction() as conn:
        await auth.revoke(conn, token)
    return ok({})


def report_handler(period: str) -> Handler:
    """reports-<period>?date=YYYY-MM-DD&format=json|csv, through `report.get`."""
    async def handle(request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise errors.BadRequest("format must be json or csv")
        report = await commands.execute(
            request.state.db, await principal_of(request), "report.get",
            {"type": period, "date": request.query_params.get("date")})
        if fmt == "json":
            return ok(report)
        return Response(reports.render_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{reports.csv_filename(report)}"'})

    return handle


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        error = errors.BadRequest("method not allowed")
        return JSON({**error.envelope(None), "status": 405}, status_code=405)
    return error_response(errors.NotFound("no such endpoint"))


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled", error_type=type(exc).__name__)
    return error_response(errors.Internal())


def routes(extra: dict[str, Handler] | None = None) -> list[BaseRoute]:
    """One route per endpoint; handlers that need other pieces (events-stream, the
    reports) come in `extra`, keyed by endpoint name."""
    own: dict[str, Handler] = {"health": health, "admin-status": admin_status,
                               "stats-queues": stats_queues, "logout": logout,
                               **{f"reports-{p}": report_handler(p)
                                  for p in reports.REPORT_TYPES},
                               **(extra or {})}
    out: list[BaseRoute] = []
    for endpoint in ENDPOINTS:
        handler = own.get(endpoint.name)
        if handler is None:
            handler = command_handler(endpoint)
        out.append(Route(endpoint.path, guarded(endpoint.name, handler), methods=[endpoint.method],
                         name=endpoint.name))
    return out


__all__ = ["JSON", "error_response", "not_found", "routes", "server_error"]
