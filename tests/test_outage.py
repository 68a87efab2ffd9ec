"""Postgres stopped (`pg_ctl stop -m fast`) and started again under a running server:
sockets stay up, commands answer `unavailable`, /ready says so, and nothing is lost.
Runs on a cluster of its own so the session's shared one is never stopped."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from server.breaker import CircuitBreaker
from server.clock import ManualClock
from server.db import Database
from server.embedded import EmbeddedPostgres
from tests.harness import MS, Cluster
from tests.people import ADMIN, patient
from tests.realtime import Peer, hub_of, running, token_for
from tests.test_hub import expected_seqs, received


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="mmc-outage-")),
                                delete_on_stop=True)
    cluster = Cluster(embedded.start(), embedded)
    try:
        yield cluster
    finally:
        embedded.stop()


@pytest.fixture
async def own_dsn(own_cluster: Cluster) -> AsyncIterator[str]:
    await own_cluster.create_template()
    yield own_cluster.dsn(await own_cluster.create_database())


async def until(check: object, what: str, steps: int = 1000) -> None:
    """Poll `check()` every 10 ms (scaled) until true; bounded."""
    for _ in range(steps):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(10 * MS)
    raise AssertionError(f"never: {what}")


async def test_postgres_stop_and_start_loses_nothing(
        own_cluster: Cluster, own_dsn: str, clock: ManualClock) -> None:
    """Displays stay connected through the outage and end with every seq once."""
    assert own_cluster.embedded is not None
    embedded = own_cluster.embedded
    db = await Database.connect(own_dsn, clock=clock, min_size=1, max_size=4,
                                breaker=CircuitBreaker(reset_timeout=50 * MS))
    patients = [await patient(db, f"2200000{i:04d}") for i in range(6)]
    tokens = [await token_for(db, who) for who in patients]
    admin_token = await token_for(db, ADMIN)
    await db.close()
    breaker = CircuitBreaker(reset_timeout=50 * MS)
    async with running(own_dsn, clock, breaker=breaker) as live, \
            httpx.AsyncClient(base_url=live.http_url) as http:
        hub = hub_of(live)
        display = await Peer.open(live.ws_url)
        start = (await display.call("subscribe", {"channel": "clinic:lab"}))["seq"]
        admin = await Peer.open(live.ws_url)
        await admin.call("auth", {"token": admin_token})
        phones = [await Peer.open(live.ws_url) for _ in patients]
        for phone, token in zip(phones, tokens, strict=True):
            await phone.call("auth", {"token": token})
        for phone in phones[:3]:
            await phone.call("queue.enter", {"clinic": "lab"})

        await asyncio.to_thread(embedded.pg_ctl, "stop", "-m", "fast", "-w")
        try:
            async def hub_down() -> bool:
                return not hub.listening

            await until(hub_down, "the hub noticed the outage")
            assert (await http.get("/ready")).status_code == 503
            refused = await admin.request("queue.call", {"clinic": "lab"})
            assert refused["error"] == "unavailable" and refused["retry_after"] >= 1
            refused = await phones[3].request("queue.enter", {"clinic": "lab"})
            assert refused["error"] == "unavailable"
            assert display.close_code is None and admin.close_code is None
        finally:
            await asyncio.to_thread(embedded.restart_if_stopped)

        async def ready() -> bool:
            return (await http.get("/ready")).status_code == 200

        await until(ready, "ready again")

        async def entered(phone: Peer) -> bool:
            reply = await phone.request("queue.enter", {"clinic": "lab"})
            return bool(reply["ok"])

        for phone in phones[3:]:
            await until(lambda p=phone: entered(p), "a command went through")
        await admin.call("queue.call", {"clinic": "lab"})
        check = await Database.connect(own_dsn, clock=clock, min_size=1, max_size=2)
        try:
            want = [s for s in (await expected_seqs(check))["clinic:lab"] if s > start]
        finally:
            await check.close()
        assert len(want) == 7
        await display.wait_for(lambda _: len(received(display, "clinic:lab", start)) >= 7)
        assert received(display, "clinic:lab", start) == want
        for peer in (display, admin, *phones):
            await peer.close()


class Ticks:
    """The breaker's clock, moved by the test: no waiting for its 60 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker_states(metrics_text: str) -> dict[str, float]:
    states = {}
    for line in metrics_text.splitlines():
        if line.startswith('circuit_breaker_state{service="database"'):
            state = line.split('state="')[1].split('"')[0]
            states[state] = float(line.rsplit(" ", 1)[1])
    return states


def counter(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


async def test_breaker_opens_fails_fast_and_closes_after_two_successes(
        own_cluster: Cluster, own_dsn: str, clock: ManualClock) -> None:
    """Postgres stopped: 5 failing calls open the breaker; the next ones answer 503
    with Retry-After and make no database attempt; /ready is 503. Started again and
    past the timeout: one success half-opens it, a second closes it. /metrics shows
    each state."""
    from tests.api import running_api

    assert own_cluster.embedded is not None
    ticks = Ticks()
    breaker = CircuitBreaker(reset_timeout=60, clock=ticks)
    async with running_api(own_dsn, clock, breaker=breaker) as api:
        async def scrape() -> str:
            return (await api.client.get("/metrics")).text

        assert breaker_states(await scrape()) == {"CLOSED": 1, "OPEN": 0, "HALF_OPEN": 0}
        await asyncio.to_thread(own_cluster.embedded.pg_ctl, "stop", "-m", "fast", "-w")
        try:
            for attempt in range(1, 6):
                response = await api.get("stats-queues")
                assert response.status_code == 503, response.text
                assert response.json()["error"] == "unavailable"
                expected = "OPEN" if attempt == 5 else "CLOSED"
                assert breaker.state.value == expected, attempt
            text = await scrape()
            assert breaker_states(text) == {"CLOSED": 0, "OPEN": 1, "HALF_OPEN": 0}
            errors_before = counter(text, "database_connection_errors_total")
            assert errors_before == 5
            for _ in range(20):
                fast = await api.get("stats-queues")
                assert fast.status_code == 503
                assert 1 <= int(fast.headers["Retry-After"]) <= 60
                assert fast.json()["retry_after"] == int(fast.headers["Retry-After"])
            # No database attempt while open: the error count has not moved.
            assert counter(await scrape(), "database_connection_errors_total") == errors_before
            ready = await api.client.get("/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["breaker"] is False
        finally:
            await asyncio.to_thread(own_cluster.embedded.restart_if_stopped)
        ticks.now += 60
        assert (await api.get("stats-queues")).status_code == 200
        assert breaker_states(await scrape()) == {"CLOSED": 0, "OPEN": 0, "HALF_OPEN": 1}
        assert (await api.get("stats-queues")).status_code == 200
        assert breaker_states(await scrape()) == {"CLOSED": 1, "OPEN": 0, "HALF_OPEN": 0}

        async def ready() -> bool:  # the hub reconnects with backoff
            return (await api.client.get("/ready")).status_code == 200

        await until(ready, "ready again")
