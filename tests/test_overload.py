"""Issue 23's overload findings: a login flood or garbage from one corner cannot stall
everyone else, and a command is answered (`unavailable` with `retry_after` when it must
be) instead of waiting without bound for argon2 or a pooled connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from argon2 import PasswordHasher

from server import auth, errors
from server.app import create_app
from server.breaker import State
from server.clock import ManualClock
from server.config import Config
from server.db import Database
from server.protocol import CloseCode
from server.ws import WsLimits
from tests.api import STAFF_PASSWORD, create_accounts
from tests.harness import LiveServer, serve
from tests.people import ANON, run, staff
from tests.realtime import WAIT, Peer, running, token_for


class CountingHasher(PasswordHasher):
    """The server's real hasher, counting its verifications."""

    def __init__(self, real: PasswordHasher) -> None:
        super().__init__(time_cost=real.time_cost, memory_cost=real.memory_cost,
                         parallelism=real.parallelism)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", counting)
    return counting


def error_codes(peer: Peer) -> list[str]:
    return [f["error"] for f in peer.pushed if f.get("ok") is False]


def wrong_logins(count: int) -> list[dict[str, Any]]:
    """Wrong passwords for as many accounts (Postgres's per-account gate stays shut)."""
    return [{"username": f"guess{i}", "password": "wrong"} for i in range(count)]


async def flood(peer: Peer, op: str, args: list[dict[str, Any]]) -> None:
    """One request per `args` at once, without waiting for replies, then every answer."""
    for rid, one in enumerate(args, 1):
        await peer.send_raw(orjson.dumps({"id": rid, "op": op, "args": one}).decode())
    await peer.wait_for(lambda pushed: sum("ok" in f for f in pushed) >= len(args),
                        within=10 * WAIT)


async def test_a_login_flood_on_one_socket_is_refused_before_argon2_runs(
        dsn: str, clock: ManualClock, hasher: CountingHasher) -> None:
    """Forty wrong passwords at once on one socket: the socket's first ten are
    verified, the other thirty are answered `rate_limited` with `retry_after` and never
    reach argon2."""
    await create_accounts(dsn)
    async with running(dsn, clock) as live:
        peer = await Peer.open(live.ws_url)
        await flood(peer, "staff.login", wrong_logins(40))
        codes = error_codes(peer)
        assert codes.count("rate_limited") == 30, codes
        assert set(codes) == {"unauthorized", "rate_limited"}, codes
        assert all(f.get("retry_after", 0) >= 1 for f in peer.pushed
                   if f.get("error") == "rate_limited")
        assert hasher.verified == 10
        await peer.close()


async def test_login_attempts_from_one_address_are_limited_across_its_sockets(
        dsn: str, clock: ManualClock, hasher: CountingHasher) -> None:
    """Three sockets of one address, four logins each, with a budget of eight for
    the address: four are refused without argon2, whichever socket sent them."""
    await create_accounts(dsn)
    limits = WsLimits(address_attempt_rate=0.001, address_attempt_burst=8)
    async with running(dsn, clock, limits=limits) as live:
        sockets = [await Peer.open(live.ws_url) for _ in range(3)]
        for peer in sockets:
            await flood(peer, "staff.login", wrong_logins(4))
        codes = [code for peer in sockets for code in error_codes(peer)]
        assert codes.count("rate_limited") == 4, codes
        assert hasher.verified == 8
        for peer in sockets:
            await peer.close()


async def test_pin_guesses_on_one_socket_are_refused_before_the_database(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """A patient's socket trying forty wrong PINs at once: past the socket's budget of
    ten they are refused `rate_limited`, before Postgres counts them."""
    async with running(dsn, clock) as live:
        patient = await run(db, ANON, "patient.login",
                            {"patient_id": "28400000001", "gender": "male"})
        peer = await Peer.open(live.ws_url)
        await peer.call("auth", {"token": patient["token"]})
        await flood(peer, "pin.submit", [{"clinic": "eyes", "pin": "00"}] * 40)
        assert error_codes(peer).count("rate_limited") == 30, error_codes(peer)
        tries = await db.pool.fetchval("SELECT count(*) FROM pin_attempts")
        assert tries <= 10
        await peer.close()


async def test_a_login_waits_for_argon2_briefly_then_is_told_to_retry(
        db: Database, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the process's verification slot stays taken past the wait, a login is
    answered `unavailable` with `retry_after` instead of queueing."""
    await create_accounts(dsn)
    monkeypatch.setattr(auth, "VERIFY_WAIT", 0.01)
    slots = auth._verify_slots()
    await slots.acquire()
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await run(db, ANON, "staff.login", {"username": "staff_eyes",
                                                "password": STAFF_PASSWORD})
    finally:
        slots.release()
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    result = await run(db, ANON, "staff.login", {"username": "staff_eyes",
                                                 "password": STAFF_PASSWORD})
    assert result["role"] == "staff"


async def test_an_older_heavier_password_hash_is_replaced_at_login(
        db: Database, dsn: str) -> None:
    """A hash made with argon2-cffi's defaults (64 MiB, four lanes) still logs in, and
    that login stores the password again with today's lighter parameters."""
    await create_accounts(dsn)
    old = PasswordHasher().hash(STAFF_PASSWORD)
    await db.pool.execute("UPDATE admins SET password_hash = $1 WHERE username = 'staff_eyes'",
                          old)
    assert auth.needs_rehash(old)
    await run(db, ANON, "staff.login", {"username": "staff_eyes", "password": STAFF_PASSWORD})
    stored = await db.pool.fetchval(
        "SELECT password_hash FROM admins WHERE username = 'staff_eyes'")
    assert stored != old and not auth.needs_rehash(stored)
    assert "m=19456,t=2,p=1" in stored
    result = await run(db, ANON, "staff.login", {"username": "staff_eyes",
                                                 "password": STAFF_PASSWORD})
    assert result["username"] == "staff_eyes"


@contextlib.asynccontextmanager
async def one_connection_server(dsn: str, clock: ManualClock) -> AsyncIterator[
        tuple[LiveServer, Database]]:
    """A server whose pool has one connection and waits for it only 50 ms."""
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=1), clock=clock)
    async with serve(app) as live:
        served = live.server.lifespan.state["db"]
        assert isinstance(served, Database)
        served.acquire_timeout = 0.05
        yield live, served


async def test_a_command_while_the_pool_is_exhausted_is_answered_unavailable(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """With every pooled connection held, a staff command is answered `unavailable`
    with `retry_after` (not left waiting), the breaker stays closed (the database is
    not away), and once a connection is free the same command goes through."""
    token = await token_for(db, staff("eyes"))
    async with one_connection_server(dsn, clock) as (live, served):
        peer = await Peer.open(live.ws_url)
        await peer.call("auth", {"token": token})
        async with served.pool.acquire():
            for _ in range(6):
                reply = await peer.request("queue.status", {"clinic": "eyes"})
                assert reply["error"] == "unavailable", reply
                assert reply["retry_after"] >= 1
        assert served.breaker.state is State.CLOSED
        assert (await peer.call("queue.status", {"clinic": "eyes"}))["clinic"] == "eyes"
        await peer.close()


async def test_a_socket_sending_garbage_is_answered_then_closed_with_1008(
        dsn: str, clock: ManualClock) -> None:
    """Malformed frames (not JSON, binary, no op, unknown op) each get `bad_request`;
    past the socket's allowance of them it is closed with 1008, and a socket that
    sends a few now and then stays open."""
    async with running(dsn, clock) as live:
        careless = await Peer.open(live.ws_url)
        for frame in ('{"id": 1, "op": "no.such"}', "{not json", '{"id": 2}'):
            await careless.send_raw(frame)
        await careless.wait_for(lambda pushed: len(pushed) >= 3)
        assert await careless.call("ping") == {}
        hostile = await Peer.open(live.ws_url)
        for i in range(60):
            await hostile.send_raw(b"\x00binary" if i % 2 else f'{{"id": {i}, "op": "x"}}')
        assert await hostile.wait_closed() == CloseCode.POLICY
        assert set(error_codes(hostile)) == {"bad_request"}
        assert await careless.call("ping") == {}
        await careless.close()


async def test_sockets_closed_by_their_own_reader_leave_no_exception_in_the_log(
        dsn: str, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    """Sixty sockets at once each send a burst over the rate limit and leave at once:
    the reader closes its own socket (a cancel of itself still pending) and then reads
    the disconnect already queued. No handler ends with "Exception in ASGI
    application" (commit c0042cd: the pending cancel escaped the clean-up)."""
    limits = WsLimits(rate=0.001, burst=1, over_limit_seconds=0.0)
    burst = "".join(f'{{"id": {i}, "op": "ping"}}\n' for i in range(8)).split("\n")[:-1]
    async with running(dsn, clock, limits=limits) as live:
        async def hit_and_leave() -> None:
            peer = await Peer.open(live.ws_url)
            for frame in burst:
                await peer.send_raw(frame)
            await peer.ws.close()

        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            await asyncio.gather(*(hit_and_leave() for _ in range(60)))
            survivor = await Peer.open(live.ws_url)
            assert await survivor.call("ping") == {}
            await survivor.close()
    assert not [r for r in caplog.records if "Exception in ASGI" in r.getMessage()]
