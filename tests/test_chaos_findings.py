"""Regression tests for what the chaos run (tests/chaos, issue 23) found: each one
failed before its fix. The findings themselves are in docs/chaos.md."""

from __future__ import annotations

import asyncpg

from server import errors
from server.db import Database, is_connection_failure, translate

WEDGED = "cannot switch to state 12; another operation (2) is in progress"


def test_a_wedged_driver_state_is_unavailable_not_internal() -> None:
    """Chaos finding: after `pg_ctl restart` a pooled connection still consuming the
    shutdown error was lent again; its InternalClientError became a 500. It is the
    database out of reach: `unavailable` with retry_after, counted by the breaker."""
    exc = asyncpg.InternalClientError(WEDGED)
    assert is_connection_failure(exc)
    refused = translate(exc)
    assert isinstance(refused, errors.Unavailable)
    assert refused.retry_after is not None and refused.retry_after >= 1


async def test_a_connection_whose_driver_state_is_wedged_is_not_lent_again(
        db: Database) -> None:
    """Chaos finding: the wedged connection went back to the pool and failed the next
    command too; it is terminated instead, and the pool opens a fresh one."""
    async with db.acquire() as conn:
        first = conn.get_server_pid()
    try:
        async with db.acquire() as conn:
            assert conn.get_server_pid() == first
            raise asyncpg.InternalClientError(WEDGED)
    except asyncpg.InternalClientError:
        pass
    pids = set()
    for _ in range(db.pool.get_max_size() + 1):
        async with db.acquire() as conn:
            pids.add(conn.get_server_pid())
            assert await conn.fetchval("SELECT 1") == 1
    assert first not in pids
