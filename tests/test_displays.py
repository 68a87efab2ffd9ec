"""Display presence (server/displays.py): hello into one table for every process, the
admin's list, IDENTIFY reaching the display's socket, bad hellos refused, metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.auth import Principal
from server.clock import ManualClock
from server.db import Database
from tests.realtime import Peer, running, token_for

ADMIN = Principal("admin", "admin")
HELLO: dict[str, Any] = {"name": "Floor 2 hall", "clinics": ["eyes", "ent"], "sound": True,
                         "voice": "server", "last_announced": None}


async def admin_peer(url: str, db: Database) -> Peer:
    peer = await Peer.open(url)
    await peer.call("auth", {"token": await token_for(db, ADMIN)})
    return peer


async def test_hello_is_listed_for_the_admin_and_keeps_its_row(dsn: str, db: Database,
                                                                 clock: ManualClock) -> None:
    """A display's hello makes a row the admin sees; a later hello with its id (a reload)
    updates that row instead of making another."""
    async with running(dsn, clock) as live:
        display, admin = await Peer.open(live.ws_url), await admin_peer(live.ws_url, db)
        first = await display.call("display.hello", HELLO)
        clock.advance(15)
        again = await display.call("display.hello", {**HELLO, "display_id": first["display_id"],
                                                     "sound": False, "last_announced": 41})
        assert again == first
        listed = (await admin.call("admin.displays"))["displays"]
        assert len(listed) == 1
        row = listed[0]
        assert row["display_id"] == first["display_id"]
        assert (row["name"], row["clinics"], row["sound"], row["voice"]) == \
            ("Floor 2 hall", ["eyes", "ent"], False, "server")
        assert row["last_announced"] == 41 and row["connected"] is True
        await display.close()
        await admin.close()


async def test_a_closed_display_is_shown_gone_at_once(dsn: str, db: Database,
                                                       clock: ManualClock) -> None:
    """When the display's socket closes, the list says it is no longer connected."""
    async with running(dsn, clock) as live:
        display, admin = await Peer.open(live.ws_url), await admin_peer(live.ws_url, db)
        await display.call("display.hello", HELLO)
        await display.close()
        for _ in range(100):
            listed = (await admin.call("admin.displays"))["displays"]
            if not listed[0]["connected"]:
                break
        assert listed[0]["connected"] is False
        await admin.close()


async def test_a_display_unheard_for_three_hellos_is_not_connected(
        dsn: str, db: Database, clock: ManualClock) -> None:
    """A display whose process died cannot mark itself gone: its hello's age does."""
    async with running(dsn, clock) as live:
        display, admin = await Peer.open(live.ws_url), await admin_peer(live.ws_url, db)
        await display.call("display.hello", HELLO)
        clock.advance(46)
        row = (await admin.call("admin.displays"))["displays"][0]
        assert row["connected"] is False and row["silent_seconds"] == 46
        await display.close()
        await admin.close()


async def test_identify_reaches_the_display_on_another_process(dsn: str, db: Database,
                                                               clock: ManualClock) -> None:
    """The admin on one process asks a display held by another to flash its name."""
    async with running(dsn, clock) as one, running(dsn, clock) as two:
        display, admin = await Peer.open(one.ws_url), await admin_peer(two.ws_url, db)
        display_id = (await display.call("display.hello", HELLO))["display_id"]
        assert await admin.call("admin.display.identify", {"display_id": display_id}) == {}
        await display.wait_for(lambda frames: any(f.get("notice") == "IDENTIFY"
                                                  for f in frames))
        identify = display.notices("IDENTIFY")[0]
        assert identify["channel"] == "display"
        assert identify["data"] == {"display_id": display_id, "name": "Floor 2 hall",
                                    "seconds": 10}
        await display.close()
        await admin.close()


async def test_identify_needs_an_admin_and_a_known_display(dsn: str, db: Database,
                                                         clock: ManualClock) -> None:
    """Anyone else is refused; an unknown display is not_found."""
    async with running(dsn, clock) as live:
        display, admin = await Peer.open(live.ws_url), await admin_peer(live.ws_url, db)
        display_id = (await display.call("display.hello", HELLO))["display_id"]
        refused = await display.request("admin.display.identify", {"display_id": display_id})
        assert refused["error"] == "unauthorized"
        unknown = await admin.request("admin.display.identify",
                                      {"display_id": "00000000-0000-4000-8000-000000000000"})
        assert unknown["error"] == "not_found"
        assert (await display.request("admin.displays"))["error"] == "unauthorized"
        await display.close()
        await admin.close()


@pytest.mark.parametrize("bad", [
    {"name": ""}, {"name": "   "}, {"name": "x" * 65}, {"name": "a\u202eb"}, {"name": 7},
    {"clinics": []}, {"clinics": ["eyes"] * 2}, {"clinics": [f"c{i}" for i in range(7)]},
    {"clinics": "eyes"}, {"clinics": ["EYES"]}, {"clinics": [None]},
    {"sound": "yes"}, {"sound": None}, {"voice": "robot"},
    {"last_announced": -1}, {"last_announced": "²"}, {"last_announced": 1.5},
    {"display_id": "not-a-uuid"}, {"display_id": "²"},
])
async def test_a_bad_hello_is_refused_and_writes_nothing(dsn: str, db: Database,
                                                         bad: dict[str, Any]) -> None:
    """Each malformed field gets bad_request, and no row is made."""
    async with running(dsn) as live:
        display = await Peer.open(live.ws_url)
        reply = await display.request("display.hello", {**HELLO, **bad})
        assert reply["ok"] is False and reply["error"] == "bad_request", reply
        assert await db.call("SELECT count(*) FROM displays") == 0
        await display.close()


async def test_an_unknown_clinic_is_not_found(dsn: str, db: Database) -> None:
    async with running(dsn) as live:
        display = await Peer.open(live.ws_url)
        reply = await display.request("display.hello", {**HELLO, "clinics": ["eyes", "mars"]})
        assert reply["error"] == "not_found"
        assert await db.call("SELECT count(*) FROM displays") == 0
        await display.close()


async def test_the_table_is_bounded_and_forgets_displays_unseen_for_a_day(
        db: Database, clock: ManualClock) -> None:
    """At most MAX_DISPLAYS rows: a new display pushes out the longest unseen; a day
    unseen and a display is forgotten."""
    for i in range(5):
        clock.advance(1)
        await db.call("SELECT mmc_display_hello(NULL, $1, '[\"eyes\"]', true, 'none', NULL, $2, 3)",
                      f"screen {i}", db.now())
    names = await db.call("SELECT jsonb_agg(name ORDER BY name) FROM displays")
    assert names == ["screen 2", "screen 3", "screen 4"]
    clock.advance(86_402)
    await db.call("SELECT mmc_display_hello(NULL, 'late', '[\"eyes\"]', true, 'none', NULL, $1, 3)",
                  db.now())
    assert await db.call("SELECT jsonb_agg(name) FROM displays") == ["late"]


async def test_metrics_count_connected_displays_and_their_silence(
        dsn: str, db: Database, clock: ManualClock) -> None:
    """/metrics has displays_connected and display_last_seen_seconds per display."""
    async with running(dsn, clock) as live:
        display = await Peer.open(live.ws_url)
        await display.call("display.hello", HELLO)
        clock.advance(20)
        async with httpx.AsyncClient(base_url=live.http_url) as client:
            text = (await client.get("/metrics")).text
        assert "displays_connected 1.0" in text
        assert 'display_last_seen_seconds{display="Floor 2 hall"' in text
        line = next(x for x in text.splitlines()
                    if x.startswith("display_last_seen_seconds{"))
        assert line.endswith(" 20.0")
        await display.close()
