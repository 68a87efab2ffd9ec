"""The ASGI application: an app factory whose lifespan opens the database pool,
checks the schema, and exposes liveness (/health) and readiness (/ready)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server import __version__, migrations
from server.clock import Clock
from server.config import Config, ConfigError
from server.db import Database

log = structlog.get_logger(__name__)

READY_TIMEOUT = 2.0


class State(TypedDict):
    config: Config
    db: Database


def create_app(config: Config | None = None, *, dsn: str | None = None,
               clock: Clock | None = None) -> Starlette:
    """Build the app. `dsn` overrides config.database_url (serve passes the embedded
    server's); `clock` is for tests and simulations."""
    config = config or Config.from_env()
    database_url = dsn or config.database_url
    if not database_url:
        raise ConfigError("no database: set DATABASE_URL or run `python -m server serve`")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        db = await Database.connect(database_url, clock=clock, min_size=config.db_pool_min,
                                    max_size=config.db_pool_max)
        try:
            async with db.pool.acquire() as conn:
                version = await migrations.check_compatible(conn)
            log.info("app.started", version=__version__, schema=version)
            yield {"config": config, "db": db}
        finally:
            await db.close()
            log.info("app.stopped")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
        ],
        lifespan=lifespan,
    )


async def health(request: Request) -> JSONResponse:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok", "version": __version__})


async def ready(request: Request) -> JSONResponse:
    """Ready: the database answers."""
    db: Database = request.state.db
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            checks["database"] = await db.pool.fetchval("SELECT 1") == 1
    except Exception:
        checks["database"] = False
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
