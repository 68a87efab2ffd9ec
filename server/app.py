"""The ASGI application: an app factory whose lifespan opens the database pool, checks
the schema and starts the hub; liveness (/health), readiness (/ready) and `/ws`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from server import __version__, migrations, ws
from server.breaker import CircuitBreaker
from server.clock import Clock
from server.config import Config, ConfigError
from server.db import Database
from server.hub import Hub
from server.views import Views
from server.ws import WsLimits

log = structlog.get_logger(__name__)

READY_TIMEOUT = 2.0


class State(TypedDict):
    config: Config
    db: Database
    hub: Hub
    limits: WsLimits


def create_app(config: Config | None = None, *, dsn: str | None = None,
               clock: Clock | None = None, limits: WsLimits | None = None,
               breaker: CircuitBreaker | None = None) -> Starlette:
    """Build the app. `dsn` overrides config.database_url (serve passes the embedded
    server's); `clock` and `breaker` are for tests and simulations; `limits` bound
    each socket (default: WsLimits with WS_SEND_QUEUE)."""
    config = config or Config.from_env()
    database_url = dsn or config.database_url
    if not database_url:
        raise ConfigError("no database: set DATABASE_URL or run `python -m server serve`")
    socket_limits = limits or WsLimits(send_queue=config.ws_send_queue)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        db = await Database.connect(database_url, clock=clock, min_size=config.db_pool_min,
                                    max_size=config.db_pool_max, breaker=breaker)
        try:
            async with db.pool.acquire() as conn:
                version = await migrations.check_compatible(conn)
            hub = Hub(database_url, Views(db))
            await hub.start()
            try:
                log.info("app.started", version=__version__, schema=version)
                yield {"config": config, "db": db, "hub": hub, "limits": socket_limits}
            finally:
                await hub.close()
        finally:
            await db.close()
            log.info("app.stopped")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            WebSocketRoute("/ws", ws.endpoint),
        ],
        lifespan=lifespan,
    )


async def health(request: Request) -> JSONResponse:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok", "version": __version__})


async def ready(request: Request) -> JSONResponse:
    """Ready: the database answers and the hub is listening."""
    db: Database = request.state.db
    hub: Hub = request.state.hub
    checks: dict[str, Any] = {"hub": hub.listening}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            checks["database"] = await db.pool.fetchval("SELECT 1") == 1
    except Exception:
        checks["database"] = False
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
