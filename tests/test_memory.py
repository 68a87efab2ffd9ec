"""A closed connection is freed when it closes, by reference counting: a serving
process collects its oldest generation rarely (server/collector.py), so anything a closed
socket leaves in a reference cycle stays until then, and a day of reconnecting phones
is a day of growing memory (docs/chaos.md, finding 12)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from server import collector
from server.clock import ManualClock
from server.db import Database
from server.wire import FanoutWebSocketProtocol
from tests.harness import LiveServer
from tests.people import patient, run, staff
from tests.realtime import Peer, running, token_for


@pytest.fixture
async def live(dsn: str, clock: ManualClock) -> AsyncIterator[LiveServer]:
    async with running(dsn, clock) as server:
        yield server


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def sockets() -> int:
    # (type(), not isinstance: gc.get_objects() holds weak proxies whose referent is gone.)
    return sum(1 for o in gc.get_objects() if type(o) is FanoutWebSocketProtocol)


async def until_freed(within: float = 5.0) -> int:
    """The server's protocol objects left; waits while closes finish."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for _ in range(int(within / 0.05)):
        if not sockets() or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    return sockets()


async def test_closed_sockets_of_every_kind_are_freed_without_the_collector(
        live: LiveServer, db: Database, no_collector: None) -> None:
    before = sockets()
    for i in range(3):
        waiting = await patient(db, f"2910000000{i}")
        await run(db, waiting, "queue.enter", {"clinic": "eyes"})
        display = await Peer.open(live.ws_url)
        await display.call("subscribe", {"channel": "clinic:eyes"})
        console = await Peer.open(live.ws_url)
        await console.call("auth", {"token": await token_for(db, staff("eyes"))})
        await console.call("subscribe", {"channel": "clinic:eyes:staff"})
        phone = await Peer.open(live.ws_url)
        await phone.call("auth", {"token": await token_for(db, waiting)})
        await phone.call("subscribe", {"channel": "me"})
        await console.call("queue.call", {"clinic": "eyes"})
        assert (await phone.request("queue.call", {"clinic": "eyes"}))["error"]
        newcomer = await Peer.open(live.ws_url)
        await newcomer.call("patient.login", {"patient_id": f"2910000010{i}", "gender": "male"})
        rude = await Peer.open(live.ws_url)
        await rude.send_raw("{not json")
        for peer in (display, console, phone, rude, newcomer):
            await peer.close()
    assert before == 0
    assert await until_freed() == 0


async def test_the_oldest_generation_is_swept_on_the_timer(no_collector: None) -> None:
    class Node:
        other: Node

    def cycle() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a

    for _ in range(100):
        cycle()
    swept: list[float] = []
    task = asyncio.create_task(collector.sweeping(swept.append, every=0.01))
    try:
        for _ in range(200):
            if swept:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert swept and swept[0] >= 0
    assert not any(type(o) is Node for o in gc.get_objects())
