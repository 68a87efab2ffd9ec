"""The database boundary: the connection pool, the clock every command reads, and the
one place where asyncpg's exceptions become the errors of server/errors.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

from server import errors
from server.breaker import CircuitBreaker
from server.clock import Clock, SystemClock
from server.metrics import Metrics

log = structlog.get_logger(__name__)

# A connection of our own or one lent by the pool: everything that takes a
# connection accepts either.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# SQLSTATEs raised by schema/ functions (class MQ) and the errors they stand for.
DOMAIN_ERRORS: dict[str, type[errors.MMCError]] = {
    "MQ400": errors.BadRequest,
    "MQ401": errors.Unauthorized,
    "MQ403": errors.Forbidden,
    "MQ404": errors.NotFound,
    "MQ409": errors.Conflict,
    "MQE09": errors.Empty,
    "MQL29": errors.Locked,
}

# Seconds a client is told to wait when the database cannot be reached.
UNAVAILABLE_RETRY_AFTER = 5
# A command waits at most this long for a pooled connection (every connection busy:
# a reconnect storm's snapshots, a flood), then is answered `unavailable`: well inside
# a client's 10 s, even with a statement's own time and a socket's earlier commands.
ACQUIRE_TIMEOUT = 3.0
BUSY_RETRY_AFTER = 1


class PoolBusy(errors.Unavailable):
    """Every pooled connection stayed busy past the wait: the server is overloaded, the
    database is not out of reach (the breaker does not count it)."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: Conn) -> None:
    """jsonb in and out as Python values, decoded by orjson."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: Conn) -> None:
    """Nothing to reset when a connection goes back to the pool: pooled connections
    never LISTEN, SET, hold session locks or open cursors (every command is one
    statement or one transaction), so asyncpg's default `RESET ALL; UNLISTEN *; ...`
    would be a round trip per command for nothing. asyncpg still rolls back a
    transaction left open before calling this."""


def is_connection_failure(exc: BaseException) -> bool:
    """True when the failure is the database being out of reach, not the statement."""
    # InternalClientError: the driver's protocol state is wedged, as when a pooled
    # connection still waits out the error Postgres sent while it shut down (measured
    # by tests/chaos after `pg_ctl restart`: "cannot switch to state 12; another
    # operation (2) is in progress"). The statement never ran; the connection is gone.
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state.startswith(("08", "53", "57P"))
    return False


def translate(exc: BaseException) -> errors.MMCError:
    """Map an exception from asyncpg to the client-facing error."""
    if isinstance(exc, errors.MMCError):
        return exc
    if is_connection_failure(exc):
        return errors.Unavailable("the database is unreachable; retry shortly",
                                  retry_after=UNAVAILABLE_RETRY_AFTER)
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        domain = DOMAIN_ERRORS.get(state)
        if domain is not None:
            detail = getattr(exc, "detail", None)
            retry = float(detail) if domain is errors.Locked and detail else None
            return domain(str(exc.args[0]) if exc.args else None, retry_after=retry)
        if state == "23505":
            return errors.Conflict("already exists")
        if state in ("40001", "40P01"):
            return errors.Unavailable("busy; retry", retry_after=1)
        if state.startswith("22"):
            return errors.BadRequest("invalid value")
    # A driver's own error (never a server message, which may quote data) says which
    # state it was in: the only way to tell one from another afterwards.
    log.error("database.unexpected_error", error_type=type(exc).__name__,
              sqlstate=getattr(exc, "sqlstate", None),
              detail=None if isinstance(exc, asyncpg.PostgresError) else str(exc)[:160])
    return errors.Internal()


class Database:
    """The pool, the clock and the circuit breaker; commands run through
    `transaction()` or `call()`, which fail fast while the breaker is open."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock | None = None, *,
                 breaker: CircuitBreaker | None = None, metrics: Metrics | None = None) -> None:
        self.pool = pool
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.breaker = breaker or CircuitBreaker()
        self.breaker.add_listener(self.metrics.set_breaker_state)
        self.acquire_timeout = ACQUIRE_TIMEOUT

    @classmethod
    async def connect(cls, dsn: str, *, clock: Clock | None = None, min_size: int = 2,
                      max_size: int = 10, breaker: CircuitBreaker | None = None,
                      metrics: Metrics | None = None) -> Database:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=init_connection,
            command_timeout=30, reset=_keep_session,
        )
        return cls(pool, clock, breaker=breaker, metrics=metrics)

    async def close(self) -> None:
        await self.pool.close()

    def now(self) -> datetime:
        return self.clock.now()

    def record_outcome(self, exc: BaseException | None) -> None:
        """Feed the breaker: only failures to reach Postgres count against it."""
        if exc is not None and is_connection_failure(exc):
            self.metrics.db_connection_errors.inc()
            self.breaker.record_failure()
        else:
            self.breaker.record_success()

    @asynccontextmanager
    async def guarded(self) -> AsyncIterator[None]:
        """The breaker before, the outcome after, asyncpg's errors translated."""
        self.breaker.check()
        try:
            yield
        except PoolBusy:
            raise
        except errors.MMCError:
            self.record_outcome(None)
            raise
        except Exception as exc:
            self.record_outcome(exc)
            raise translate(exc) from exc
        self.record_outcome(None)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        """A pooled connection, waited for at most `acquire_timeout` seconds; one whose
        driver state is wedged is never lent again."""
        try:
            # asyncio.timeout, not acquire(timeout=): no task per command to carry it.
            async with asyncio.timeout(self.acquire_timeout):
                lent = await self.pool.acquire()
        except TimeoutError:
            raise PoolBusy("the server is busy; retry shortly",
                           retry_after=BUSY_RETRY_AFTER) from None
        try:
            yield lent
        except asyncpg.InternalClientError:
            lent.terminate()
            raise
        finally:
            await self.pool.release(lent)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """One transaction on a pooled connection; errors leave translated."""
        async with self.guarded(), self.acquire() as conn, conn.transaction():
            yield conn

    async def row(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run one statement and return its first row (its own transaction, as `call`)."""
        async with self.guarded(), self.acquire() as conn:
            found: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return found

    async def call(self, sql: str, *args: Any) -> Any:
        """Run one statement and return its single value. A lone statement is its own
        transaction: no BEGIN/COMMIT round trips (every command is one such call)."""
        async with self.guarded(), self.acquire() as conn:
            return await conn.fetchval(sql, *args)
