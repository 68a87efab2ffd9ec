"""The ASGI application: an app factory whose lifespan opens the database pool, checks
the schema, starts the hub and the scheduler; the HTTP API, `/ws`, and the operational
endpoints /health, /ready and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from server import (
    __version__,
    collector,
    displays,
    errors,
    http,
    migrations,
    openapi,
    pages,
    qr,
    speech,
    sse,
    ws,
)
from server.breaker import CircuitBreaker, State
from server.clock import Clock
from server.config import Config, ConfigError
from server.db import Database
from server.headers import SecurityHeaders
from server.hub import Hub
from server.metrics import CONTENT_TYPE, Metrics
from server.middleware import RequestContext
from server.ratelimit import ClientLimits
from server.scheduler import Scheduler
from server.scrape import ScrapeCache
from server.sessions import SessionRegistry
from server.speech import Speech
from server.views import Views
from server.ws import WsLimits

log = structlog.get_logger(__name__)

READY_TIMEOUT = 2.0


class AppState(TypedDict):
    config: Config
    db: Database
    hub: Hub
    limits: WsLimits
    http_limits: ClientLimits | None
    presence: displays.Presence
    sessions: SessionRegistry
    scrape: ScrapeCache
    speech: Speech


def create_app(config: Config | None = None, *, dsn: str | None = None,
               clock: Clock | None = None, limits: WsLimits | None = None,
               breaker: CircuitBreaker | None = None,
               run_scheduler: bool | None = None) -> Starlette:
    """Build the app. `dsn` overrides config.database_url (serve passes the embedded
    server's); `clock` and `breaker` are for tests and simulations; `limits` bound each
    socket. The scheduler runs unless told not to; by default not on an injected clock,
    which would stand still under it."""
    config = config or Config.from_env()
    database_url = dsn or config.database_url
    if not database_url:
        raise ConfigError("no database: set DATABASE_URL or run `python -m server serve`")
    socket_limits = limits or WsLimits(send_queue=config.ws_send_queue)
    metrics = Metrics()
    breaker = breaker or CircuitBreaker(reset_timeout=config.breaker_reset_seconds)
    schedule = clock is None if run_scheduler is None else run_scheduler
    rate = config.http_rate_limit
    http_limits = ClientLimits(rate, 3 * rate) if rate else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        db = await Database.connect(database_url, clock=clock, min_size=config.db_pool_min,
                                    max_size=config.db_pool_max, breaker=breaker,
                                    metrics=metrics)
        try:
            async with db.pool.acquire() as conn:
                version = await migrations.check_compatible(conn)
            hub = Hub(database_url, Views(db))
            presence = displays.Presence(db)
            hub.on_control(displays.IDENTIFY, presence.on_identify)
            sessions = SessionRegistry(db)
            sessions.attach(hub)
            await hub.start()
            sweeper = asyncio.create_task(collector.sweeping(metrics.gc_sweep.observe))
            background: contextlib.AbstractAsyncContextManager[Any] = (
                Scheduler(database_url, clock=db.clock).running() if schedule
                else contextlib.nullcontext())
            try:
                async with background:
                    log.info("app.started", version=__version__, schema=version)
                    yield {"config": config, "db": db, "hub": hub, "limits": socket_limits,
                           "http_limits": http_limits, "presence": presence,
                           "sessions": sessions, "scrape": ScrapeCache(config.metrics_token),
                           "speech": Speech.from_path(metrics)}
            finally:
                sweeper.cancel()
                await hub.close()
                await sessions.close()
        finally:
            await db.close()
            log.info("app.stopped")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics_endpoint),
            Route("/api/v1/openapi.json", openapi_endpoint),
            WebSocketRoute("/ws", ws.endpoint),
            *http.routes({"events-stream": sse.events_stream, "announce": speech.announce}),
            *pages.routes(),
            Route("/qr.svg", http.guarded("qr", qr.qr_svg)),
        ],
        middleware=[
            Middleware(SecurityHeaders, hsts=config.public_base.startswith("https://")),
            Middleware(RequestContext, metrics=metrics),
            Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                       allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                       expose_headers=["Retry-After", "X-Request-ID"]),
        ],
        exception_handlers={HTTPException: http.not_found, Exception: http.server_error},
        lifespan=lifespan,
    )


async def health(request: Request) -> JSONResponse:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok", "version": __version__})


async def ready(request: Request) -> JSONResponse:
    """Ready: the database answers, the hub is listening, the breaker is closed."""
    db: Database = request.state.db
    hub: Hub = request.state.hub
    checks: dict[str, Any] = {"hub": hub.listening, "breaker": db.breaker.state is State.CLOSED}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            checks["database"] = await db.pool.fetchval("SELECT 1") == 1
    except Exception:
        checks["database"] = False
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text; the per-clinic waiting gauge is refreshed at scrape time, but
    only while the breaker is closed: a scrape must not count as a trial call."""
    db: Database = request.state.db
    scrape: ScrapeCache = request.state.scrape
    if not scrape.allows(request.headers.get("authorization")):
        return http.error_response(errors.Unauthorized("metrics need METRICS_TOKEN"))
    if db.breaker.state is not State.CLOSED:
        return Response(db.metrics.render(), media_type=CONTENT_TYPE)

    async def refresh() -> None:
        with contextlib.suppress(Exception):
            queues = await db.call("SELECT mmc_stats_queues($1)", db.now())
            for clinic in queues["clinics"]:
                db.metrics.queue_waiting.labels(clinic=clinic["clinic"]).set(
                    clinic["total_waiting"])
            await displays.refresh_metrics(db, db.metrics)

    # Scrapes within a few seconds share one refresh of the database-fed gauges.
    await scrape.refresh(refresh)
    return Response(db.metrics.render(), media_type=CONTENT_TYPE)


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi.document())
