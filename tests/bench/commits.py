"""The commit floor: Postgres alone making the fan-out's calls, no server, no sockets.
One process (pinned where the server would be) calls `mmc_call_next` in a closed loop on
16 connections, one per clinic, as many calls per clinic as the fan-out's burst makes:
the calls a second this Postgres commits on this machine, with its CPU and its WAL
flushes per call. Every call's transaction NOTIFYs, and Postgres holds the commits of
notifying transactions in one queue until each is flushed, so they cannot share a flush:
the figure a server's calls a second (each fan-out round's `burst_calls_per_s`) is set
beside."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg

from tests.bench.pinned import run_pinned
from tests.bench.stage import postgres_cpu

CALL = "SELECT mmc_call_next($1, now())"
# WAL flushes so far (fsync, fdatasync or an O_DSYNC write each), from Postgres 18's
# pg_stat_io; a backend reports its counts at most once a second, and when it exits.
WAL_FLUSHES = "SELECT coalesce(sum(fsyncs), 0)::bigint FROM pg_stat_io WHERE object = 'wal'"
STATS_SECONDS = 1.5


async def _flushes(conn: asyncpg.Connection) -> int | None:
    try:
        found: int = await conn.fetchval(WAL_FLUSHES)
        return found
    except asyncpg.PostgresError:
        return None  # an older Postgres: not counted


async def _measure(dsn: str, calls: int, pidfile: Path) -> dict[str, Any]:
    monitor = await asyncpg.connect(dsn)
    callers: list[asyncpg.Connection] = []
    try:
        clinics = [r["code"] for r in await monitor.fetch(
            "SELECT code FROM clinics WHERE is_active ORDER BY sort_order, code")]
        for _ in clinics:
            callers.append(await asyncpg.connect(dsn))
        flushes = await _flushes(monitor)
        cpu, started = postgres_cpu(pidfile), time.perf_counter()

        async def lane(conn: asyncpg.Connection, clinic: str) -> None:
            for _ in range(calls):
                await conn.fetchval(CALL, clinic)

        await asyncio.gather(*(lane(c, k) for c, k in zip(callers, clinics, strict=True)))
        span, cpu = time.perf_counter() - started, postgres_cpu(pidfile) - cpu
        for conn in callers:
            await conn.close()
        # The callers' last counts arrive as their backends exit.
        await asyncio.sleep(STATS_SECONDS)
        after = await _flushes(monitor)
    finally:
        for conn in (*callers, monitor):
            if not conn.is_closed():
                await conn.close()
    made = calls * len(clinics)
    return {"calls": made, "connections": len(clinics), "seconds": round(span, 2),
            "calls_per_s": round(made / span),
            "postgres_us_per_call": round(cpu / made * 1e6),
            "wal_flushes_per_call": None if flushes is None or after is None
            else round((after - flushes) / made, 2)}


def run_commit_floor(dsn: str, *, calls: int, pidfile: Path, cpus: set[int] | None
                     ) -> dict[str, Any]:
    """`calls` per clinic in a child process, on a database with at least that many
    waiting in every clinic; the child is killed if it does not finish in time."""
    return run_pinned(_measure, dsn, calls, pidfile, cpus=cpus, timeout=calls * 0.1 + 60,
                      name="the commit floor")
