"""10,000 frames from hypothesis at one server, over sockets of every role: each gets a
reply that is never `internal`, no socket is dropped, and the server works after."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from server import commands, protocol
from server.clock import ManualClock
from server.db import Database
from server.ws import WsLimits
from tests.harness import MS, LiveServer
from tests.people import ADMIN, patient, run, staff
from tests.realtime import Peer, running, token_for

# Hypothesis's caches live outside the work tree: a `.hypothesis` directory at the
# root makes pytest (with this project's norecursedirs) fail collection.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"mmc-hypothesis-{os.getuid()}")

BATCHES = 100
BATCH_SIZE = 100
# The test's own requests use ids from here up; fuzzed ids stay below.
OUR_IDS = 2**52
OPS = sorted({*commands.OPERATIONS, *protocol.TRANSPORT_OPS})
ARG_NAMES = ["clinic", "number", "token", "channel", "since", "patient_id", "gender",
             "username", "password", "exam_type", "pin", "key", "value", "type", "date",
             "login_code", "role", "display_id"]
# Digits that str.isdigit() accepts but int() or our patterns refuse, and look-alikes.
LOOKALIKES = ["²", "¹²³", "١٢٣٤", "１２", "𝟏𝟐", "৪৫", "२३", "Ⅻ", "O0", "1\u200b2", "٠٠"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=40),
                    st.sampled_from(["eyes", "lab", "clinic:eyes", "me", "admin", "male",
                                     "12345678", "٠١٢٣٤", "00", "daily", "2026-03-01",
                                     "notify_near_ahead", "clinic:eyes:staff", "Z" * 300,
                                     *LOOKALIKES]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
args = st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), st.text(max_size=8)), values,
                       max_size=5)
requests = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(OPS), st.text(max_size=20), values)},
    optional={"id": st.one_of(st.integers(-(2**60), 2**60).filter(lambda i: i < OUR_IDS),
                              values),
              "args": st.one_of(args, values)},
).map(lambda frame: orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode())
frames = st.one_of(
    requests, requests, requests,
    values.map(lambda v: orjson.dumps(v).decode()),
    st.text(max_size=200),
    st.binary(max_size=200),
)


@pytest.fixture
async def fuzzed(dsn: str, clock: ManualClock, db: Database) -> AsyncIterator[
        tuple[LiveServer, list[Peer]]]:
    limits = WsLimits(rate=1_000_000, burst=1_000_000, bad_frame_rate=1_000_000,
                      bad_frame_burst=1_000_000)
    async with running(dsn, clock, limits=limits) as live:
        # No client keepalive: its ping payload comes from the process-wide `random`,
        # which Hypothesis refuses to see used while it draws (a slow run crosses 20 s).
        sockets = [await Peer.open(live.ws_url, ping_interval=None) for _ in range(4)]
        for peer in sockets:
            peer.ids = itertools.count(OUR_IDS)
        await sockets[1].call("auth", {"token": await token_for(db, ADMIN)})
        await sockets[2].call("auth", {"token": await token_for(db, staff("eyes"))})
        who = await patient(db, "20000000001")
        await run(db, who, "route.create", {"exam_type": "recruitment"})
        await sockets[3].call("auth", {"token": await token_for(db, who)})
        yield live, sockets
        for peer in sockets:
            await peer.close()


async def test_random_frames_never_answer_internal(
        fuzzed: tuple[LiveServer, list[Peer]], db: Database) -> None:
    """Every frame gets an envelope; none says internal; every socket stays open."""
    live, sockets = fuzzed
    counted = {"frames": 0}

    @settings(max_examples=BATCHES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(st.tuples(st.integers(0, 3), frames), min_size=BATCH_SIZE,
                          max_size=BATCH_SIZE))
    def fire(batch: list[tuple[int, str | bytes]]) -> None:
        asyncio.run_coroutine_threadsafe(send(batch), loop).result()

    async def send(batch: list[tuple[int, str | bytes]]) -> None:
        for which, frame in batch:
            await sockets[which].send_raw(frame)
        # A ping at the end of each socket's stream: everything before it is answered.
        for peer in sockets:
            assert await peer.call("ping") == {}
        counted["frames"] += len(batch)

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(fire)
    assert counted["frames"] == BATCHES * BATCH_SIZE
    envelopes = sum(1 for peer in sockets for f in peer.pushed if "ok" in f)
    assert envelopes == BATCHES * BATCH_SIZE, "one reply per frame"
    for peer in sockets:
        assert peer.close_code is None
        errors = [f for f in peer.pushed if f.get("ok") is False]
        assert [e for e in errors if e["error"] == "internal"] == []
        assert all(set(e) >= {"id", "error", "message", "status"} for e in errors)
    # Still correct afterwards: a display sees a fresh call.
    display = await Peer.open(live.ws_url)
    await display.call("subscribe", {"channel": "clinic:ent"})
    someone = await patient(db, "20000000002")
    await run(db, someone, "queue.enter", {"clinic": "ent"})
    await display.wait_for(lambda f: any(x.get("event") == "ENTERED" for x in f),
                           within=3000 * MS)
    await display.close()
