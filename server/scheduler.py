"""The scheduler: the work nobody presses a button for (auto-call, call timeouts, daily
PINs, events and rate-limit clean-up, closed-period reports), done by one leader.

Leadership is a session-level `pg_try_advisory_lock` held on a dedicated connection
(never the pool's). Every job runs on that same connection, so nothing a job does can
commit unless its session, and with it the lock, is still alive: a leader cut off
from Postgres cannot act beside its successor. When the leader's process dies, Postgres
ends its session and frees the lock; a follower tries for it on each tick. Each job is
idempotent, so a leader that took over mid-period redoes nothing twice.

`tick()` is one round on the injected clock (tests call it directly); `running()` runs
ticks every `interval` seconds in the background for the app's lifespan.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from server.clock import Clock, SystemClock
from server.db import init_connection, is_connection_failure

log = structlog.get_logger(__name__)
_jitter = random.Random()  # our own generator, not the process-wide one

# Advisory lock keys: 7171000 migrations, 7171001 event log, 7171002 PIN draws.
LEADER_LOCK = 7171003
DEFAULT_INTERVAL = 1.0
# A follower polls the lock every tick; on lost connections it backs off up to this.
MAX_BACKOFF = 8.0
CONNECT_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Postgres drops a leader whose network silently died after ~idle + interval x count
# seconds, freeing the lock for a follower (over TCP; a Unix socket needs none).
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
              "tcp_keepalives_count": "3"}

JobRun = Callable[["asyncpg.Connection[asyncpg.Record]", datetime], Awaitable[Any]]


@dataclass(frozen=True)
class Job:
    name: str
    every: float  # clock seconds between runs; 0 runs it on every tick
    run: JobRun


def _calls(function: str) -> JobRun:
    """A job that is one call of a schema/006 function (a statement, a transaction)."""
    query = f"SELECT {function}($1)"

    async def job(conn: asyncpg.Connection[asyncpg.Record], now: datetime) -> Any:
        return await conn.fetchval(query, now)

    return job


async def _auto_call(conn: asyncpg.Connection[asyncpg.Record], now: datetime) -> Any:
    called = []
    for row in await conn.fetch("SELECT mmc_auto_call_due($1) AS code", now):
        # One transaction per clinic: a clinic's locks are held only for its own call.
        result = await conn.fetchval("SELECT mmc_auto_call($1, $2)", row["code"], now)
        if result is not None:
            called.append(result["called"])
    return called


# In this order: a timed-out call frees its room before auto-call looks for room, and
# a past day is closed before its report is stored.
JOBS: tuple[Job, ...] = (
    Job("timeouts", 0, _calls("mmc_time_out_calls")),
    Job("auto_call", 0, _auto_call),
    Job("pins", 0, _calls("mmc_rotate_due_pins")),
    Job("close_days", 60, _calls("mmc_close_past_days")),
    Job("events", 60, _calls("mmc_prune_old_events")),
    Job("clean_up", 60, _calls("mmc_clean_up")),
    Job("reports", 60, _calls("mmc_store_due_reports")),
)


def _did_something(result: Any) -> bool:
    if isinstance(result, dict):
        return any(result.values())
    return bool(result)


class Scheduler:
    """One per server process; at most one of them, the leader, runs the jobs."""

    def __init__(self, dsn: str, *, clock: Clock | None = None,
                 interval: float = DEFAULT_INTERVAL, jobs: Iterable[Job] = JOBS,
                 lock_key: int = LEADER_LOCK) -> None:
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.jobs = tuple(jobs)
        self._dsn = dsn
        self._lock_key = lock_key
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._leading = False
        self._last_run: dict[str, datetime] = {}
        self._tick_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def tick(self) -> dict[str, Any]:
        """One round: become (or stay) the leader, then run each due job once.
        Returns what each job that ran did; empty when another process leads."""
        async with self._tick_lock:
            conn = await self._lead()
            if conn is None:
                return {}
            now = self.clock.now()
            done: dict[str, Any] = {}
            for job in self.jobs:
                last = self._last_run.get(job.name)
                if last is not None and (now - last).total_seconds() < job.every:
                    continue
                try:
                    done[job.name] = await job.run(conn, now)
                except Exception as exc:
                    if is_connection_failure(exc):
                        self._resign("connection_lost", exc)
                        return done
                    # A failed job is tried again next time; the others go on.
                    log.error("scheduler.job_failed", job=job.name,
                              error_type=type(exc).__name__,
                              sqlstate=getattr(exc, "sqlstate", None))
                    continue
                self._last_run[job.name] = now
                if _did_something(done[job.name]):
                    log.info("scheduler.job_done", job=job.name, result=done[job.name])
            return done

    async def _lead(self) -> asyncpg.Connection[asyncpg.Record] | None:
        """The leader's connection, or None while another process holds the lock."""
        if self._conn is not None and self._conn.is_closed():
            self._resign("connection_closed")
        if self._conn is None:
            self._conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=STATEMENT_TIMEOUT,
                server_settings={"application_name": f"mmc-scheduler/{os.getpid()}",
                                 **KEEPALIVES})
            await init_connection(self._conn)
        if not self._leading:
            try:
                got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)",
                                                self._lock_key)
            except Exception as exc:
                self._resign("connection_lost", exc)
                raise
            if got:
                self._leading = True
                # A new leader owes every job a run, whatever the last one did.
                self._last_run.clear()
                log.info("scheduler.leading", pid=os.getpid())
        return self._conn if self._leading else None

    def _resign(self, reason: str, exc: BaseException | None = None) -> None:
        """Drop the connection (and with it the lock, if held)."""
        if self._leading:
            log.warning("scheduler.lost_leadership", reason=reason,
                        error_type=type(exc).__name__ if exc else None)
        self._leading = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        """Let go of the lock at once (a follower takes over on its next tick)."""
        async with self._tick_lock:
            conn, self._conn = self._conn, None
            was_leading, self._leading = self._leading, False
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT)
                except Exception:  # a dead or stuck session: drop it, Postgres frees the lock
                    conn.terminate()
            if was_leading:
                log.info("scheduler.resigned", pid=os.getpid())

    async def run(self) -> None:
        """Tick every `interval` seconds until stopped; outages back off with jitter."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.tick()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("scheduler.tick_failed", error_type=type(exc).__name__,
                            failures=failures)
            delay = self.interval
            if failures:
                delay = min(MAX_BACKOFF, self.interval * 2 ** failures)
                delay *= _jitter.uniform(0.5, 1.0)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """Run in the background for the duration of the block, then resign."""
        self._stopping.clear()
        task = asyncio.create_task(self.run(), name="scheduler")
        try:
            yield self
        finally:
            self._stopping.set()
            try:
                await asyncio.wait_for(task, STOP_TIMEOUT)
            except TimeoutError:
                log.warning("scheduler.stop_timeout")
            await self.close()
