"""The WebSocket protocol end to end: real uvicorn on 127.0.0.1:0, real Postgres, real
websockets clients. Frames, authorisation, privacy, resume and the close codes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from server import accounts
from server.clock import ManualClock
from server.db import Database
from server.ws import WsLimits
from tests.harness import MS, LiveServer
from tests.people import ADMIN, patient, run, staff
from tests.realtime import Frame, Peer, hub_of, running, token_for


@pytest.fixture
async def live(dsn: str, clock: ManualClock) -> AsyncIterator[LiveServer]:
    async with running(dsn, clock) as server:
        yield server


def has(kind: str, value: str) -> Callable[[list[Frame]], bool]:
    return lambda frames: any(f.get(kind) == value for f in frames)


async def test_call_reaches_display_patient_and_everyone_waiting(
        live: LiveServer, db: Database) -> None:
    """queue.call on eyes: CALLED on the display (no ID), YOUR_TURN, POSITION ahead-1."""
    waiting = [await patient(db, f"2900000{i:03d}") for i in range(4)]
    elsewhere = await patient(db, "29000009999")
    for who in waiting:
        await run(db, who, "queue.enter", {"clinic": "eyes"})
    await run(db, elsewhere, "queue.enter", {"clinic": "ent"})
    display, console, other = [await Peer.open(live.ws_url) for _ in range(3)]
    phones = [await Peer.open(live.ws_url) for _ in waiting]
    snap = await display.call("subscribe", {"channel": "clinic:eyes"})
    await console.call("auth", {"token": await token_for(db, staff("eyes"))})
    for phone, who in zip(phones, waiting, strict=True):
        await phone.call("auth", {"token": await token_for(db, who)})
        await phone.call("subscribe", {"channel": "me"})
    await other.call("auth", {"token": await token_for(db, elsewhere)})
    await other.call("subscribe", {"channel": "me"})

    result = await console.call("queue.call", {"clinic": "eyes"})

    assert result["called"]["number"] == 1
    await display.wait_for(has("event", "CALLED"))
    called = next(e for e in display.events("clinic:eyes") if e["event"] == "CALLED")
    assert called["data"] == {"number": 1}
    assert called["seq"] > snap["seq"]
    await phones[0].wait_for(has("notice", "YOUR_TURN"))
    assert phones[0].notices("YOUR_TURN")[0]["data"]["number"] == 1
    for ahead, phone in enumerate(phones[1:]):
        await phone.wait_for(has("notice", "POSITION"))
        assert [n["data"]["ahead"] for n in phone.notices("POSITION")] == [ahead]
        assert phone.notices("YOUR_TURN") == []
    # The patient at ENT stood still: no notice for them, and the display saw no ID.
    await console.call("ping")
    assert other.notices() == []
    for frame in display.raw:
        assert "2900000" not in frame
    for peer in (display, console, other, *phones):
        await peer.close()


async def test_display_can_read_but_not_call(live: LiveServer) -> None:
    """Anonymous: public channels yes; commands, staff and admin channels no."""
    display = await Peer.open(live.ws_url)
    assert (await display.request("queue.call", {"clinic": "eyes"}))["error"] == "unauthorized"
    for channel in ("clinic:eyes:staff", "admin", "me"):
        reply = await display.request("subscribe", {"channel": channel})
        assert reply["error"] == "unauthorized", channel
    reply = await display.request("subscribe", {"channel": "clinic:nowhere:else"})
    assert reply["error"] == "not_found"
    result = await display.call("subscribe", {"channel": "clinic:eyes"})
    assert result["channel"] == "clinic:eyes"
    await display.wait_for(has("type", "snapshot"))
    state = display.pushed[0]["state"]
    assert {"called", "serving", "waiting"} <= set(state)
    await display.close()


async def test_staff_of_eyes_cannot_touch_lab(live: LiveServer, db: Database) -> None:
    """Staff of eyes: forbidden to call lab, read lab's PIN or its staff channel."""
    console = await Peer.open(live.ws_url)
    await console.call("auth", {"token": await token_for(db, staff("eyes"))})
    assert (await console.request("queue.call", {"clinic": "lab"}))["error"] == "forbidden"
    assert (await console.request("pin.current", {"clinic": "derma"}))["error"] == "forbidden"
    reply = await console.request("subscribe", {"channel": "clinic:lab:staff"})
    assert reply["error"] == "forbidden"
    assert (await console.request("subscribe", {"channel": "admin"}))["error"] == "forbidden"
    pins = await console.call("pin.current")
    assert list(pins["pins"]) == ["eyes"]
    await console.call("subscribe", {"channel": "clinic:eyes:staff"})
    await console.close()


async def test_patient_has_only_me(live: LiveServer, db: Database) -> None:
    """A patient: `me` (their own), never staff or admin channels or staff commands."""
    phone = await Peer.open(live.ws_url)
    login = await phone.call("patient.login", {"patient_id": "28800001111", "gender": "male"})
    assert login["patient"]["patient_id"] == "28800001111"
    for channel in ("admin", "clinic:eyes:staff", "clinic:lab:staff"):
        assert (await phone.request("subscribe", {"channel": channel}))["error"] == "forbidden"
    assert (await phone.request("queue.call", {"clinic": "lab"}))["error"] == "forbidden"
    assert (await phone.request("pin.current", {"clinic": "eyes"}))["error"] == "forbidden"
    await phone.call("route.create", {"exam_type": "aviation"})
    await phone.call("subscribe", {"channel": "me"})
    await phone.wait_for(has("type", "snapshot"))
    me = phone.pushed[-1]
    assert me["channel"] == "me"
    assert me["state"]["patient_id"] == "*******1111"
    assert me["state"]["entry"]["clinic"] == "lab"
    # A new identity on the socket loses the old one's private channels.
    await phone.call("patient.login", {"patient_id": "28800002222", "gender": "male"})
    await phone.call("subscribe", {"channel": "me"})
    await phone.wait_for(lambda f: len([x for x in f if x["type"] == "snapshot"]) == 2)
    assert phone.pushed[-1]["state"]["patient_id"] == "*******2222"
    await phone.close()


async def test_no_frame_on_me_carries_the_patients_full_id(
        live: LiveServer, db: Database) -> None:
    """A whole route on `me` (snapshots, events, notices, a resume): the ID only masked."""
    full = "28700004321"
    admin = await Peer.open(live.ws_url)
    await admin.call("auth", {"token": await token_for(db, ADMIN)})
    others = [await patient(db, f"2870000{i:04d}") for i in range(2)]
    for other in others:
        await run(db, other, "queue.enter", {"clinic": "lab"})
    phone = await Peer.open(live.ws_url)
    await phone.call("patient.login", {"patient_id": full, "gender": "male"})
    seen = (await phone.call("subscribe", {"channel": "me"}))["seq"]
    route = await phone.call("route.create", {"exam_type": "cooks"})
    while route["status"] == "active":
        clinic = route["current"]["clinic"]
        while (await phone.call("queue.status"))["status"] == "WAITING":
            called = await admin.call("queue.call", {"clinic": clinic})
            if called["called"]["number"] != route["current"]["number"]:
                await admin.call("queue.done", {"clinic": clinic,
                                                "number": called["called"]["number"]})
        await admin.call("queue.done", {"clinic": clinic,
                                        "number": route["current"]["number"]})
        route = await phone.call("route.get")
    await phone.wait_for(has("event", "ROUTE_COMPLETED"))
    # A resume: the replayed events and a fresh snapshot.
    await phone.call("subscribe", {"channel": "me", "since": seen})
    await phone.wait_for(lambda f: [x["type"] for x in f].count("snapshot") == 2)
    assert {"snapshot", "event", "notice"} <= {f["type"] for f in phone.pushed}
    leaked = [f for f in phone.pushed if full in orjson.dumps(f).decode()]
    assert leaked == []
    assert phone.pushed[-1]["state"]["patient_id"] == "*******4321"
    await phone.close()
    await admin.close()


def pins_in(frame: str, pins: set[str]) -> list[str]:
    """PINs a frame carries: as a JSON string value, or under a key named pin(s)."""
    found = [pin for pin in pins if f'"{pin}"' in frame]
    if re.search(r'"pins?"\s*:', frame):
        found.append("pin key")
    return found


async def test_no_frame_to_a_patient_or_display_carries_a_pin(
        live: LiveServer, db: Database, clock: ManualClock) -> None:
    """A whole morning by PIN: every frame a phone or display received is scanned."""
    admin = await Peer.open(live.ws_url)
    await admin.call("auth", {"token": await token_for(db, ADMIN)})
    await admin.call("subscribe", {"channel": "admin"})
    pins: set[str] = set((await admin.call("pin.current"))["pins"].values())
    clinics = ["lab", "eyes", "internal", "ent", "ecg", "audio"]
    displays = [await Peer.open(live.ws_url) for _ in clinics]
    for display, clinic in zip(displays, clinics, strict=True):
        await display.call("subscribe", {"channel": f"clinic:{clinic}"})
    phones = []
    for i in range(3):
        phone = await Peer.open(live.ws_url)
        await phone.call("patient.login", {"patient_id": f"2770000{i:04d}", "gender": "male"})
        await phone.call("subscribe", {"channel": "me"})
        route = await phone.call("route.create", {"exam_type": "aviation"})
        phones.append((phone, route))
    for phone, route in phones:
        while route["status"] == "active":
            clinic = route["current"]["clinic"]
            while (await phone.call("queue.status"))["status"] == "WAITING":
                await admin.call("queue.call", {"clinic": clinic})
            clock.advance(60)
            if route["current"]["requires_pin"]:
                wrong = await phone.request("pin.submit", {"clinic": clinic, "pin": "00"})
                assert wrong["error"] in ("wrong_pin", "bad_request")
                pin = (await admin.call("pin.current", {"clinic": clinic}))["pins"][clinic]
                await phone.call("pin.submit", {"clinic": clinic, "pin": pin})
            else:
                await admin.call("queue.done", {"clinic": clinic})
            route = await phone.call("route.get")
        await phone.wait_for(has("event", "ROUTE_COMPLETED"))
    await admin.call("pin.rotate")
    pins |= set((await admin.call("pin.current"))["pins"].values())
    await admin.wait_for(has("event", "PIN_ROTATED"))
    for display in displays:
        await display.wait_for(has("event", "COMPLETED"))
    scanned = 0
    for peer in [*displays, *(phone for phone, _ in phones)]:
        for frame in peer.raw:
            assert pins_in(frame, pins) == [], frame
            scanned += 1
        await peer.close()
    assert scanned > 50
    await admin.close()


async def test_resume_replays_the_missed_events_in_order(
        live: LiveServer, db: Database) -> None:
    """Subscribing with `since` gets exactly the events after it, then live ones."""
    waiting = [await patient(db, f"2660000{i:04d}") for i in range(6)]
    display = await Peer.open(live.ws_url)
    snap = await display.call("subscribe", {"channel": "clinic:xray"})
    await run(db, waiting[0], "queue.enter", {"clinic": "xray"})
    await display.wait_for(has("event", "ENTERED"))
    seen = display.events()[-1]["seq"]
    await display.close()
    for who in waiting[1:]:
        await run(db, who, "queue.enter", {"clinic": "xray"})
    await run(db, ADMIN, "queue.call", {"clinic": "xray"})
    again = await Peer.open(live.ws_url)
    reply = await again.call("subscribe", {"channel": "clinic:xray", "since": seen})
    assert reply == {"channel": "clinic:xray", "seq": seen}
    await again.wait_for(lambda f: len(f) >= 6)
    await run(db, ADMIN, "queue.call", {"clinic": "xray"})
    await again.wait_for(lambda f: len([e for e in f if e.get("event") == "CALLED"]) == 2)
    events = again.events()
    assert [e["event"] for e in events] == ["ENTERED"] * 5 + ["CALLED"] * 2
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] > seen > snap["seq"]
    assert not [f for f in again.pushed if f["type"] == "snapshot"]
    await again.close()


async def test_resume_beyond_retention_gets_a_reset_snapshot(
        live: LiveServer, db: Database) -> None:
    """A `since` older than the pruned watermark: a snapshot with reset true."""
    who = await patient(db, "26500000001")
    await run(db, who, "queue.enter", {"clinic": "audio"})
    old = await db.call("SELECT max(id) FROM events")
    await run(db, ADMIN, "queue.call", {"clinic": "audio"})
    pruned = await db.call("SELECT mmc_prune_events(now() + interval '1 minute')")
    assert pruned >= 2
    display = await Peer.open(live.ws_url)
    reply = await display.call("subscribe", {"channel": "clinic:audio", "since": old - 1})
    await display.wait_for(has("type", "snapshot"))
    snapshot = display.pushed[0]
    assert snapshot["reset"] is True and snapshot["seq"] == reply["seq"] >= old + 1
    assert snapshot["state"]["serving"] == [1]
    # A client that claims a seq from the future is reset too.
    await display.call("subscribe", {"channel": "clinic:audio", "since": 10**12})
    await display.wait_for(lambda f: len(f) == 2)
    assert display.pushed[1]["reset"] is True
    await display.close()


async def test_me_resume_replays_then_sends_a_current_snapshot(
        live: LiveServer, db: Database) -> None:
    """On `me`, the replayed events are followed by a snapshot with the position."""
    first, second = await patient(db, "26400000001"), await patient(db, "26400000002")
    await run(db, first, "queue.enter", {"clinic": "dental"})
    await run(db, second, "queue.enter", {"clinic": "dental"})
    phone = await Peer.open(live.ws_url)
    await phone.call("auth", {"token": await token_for(db, second)})
    await phone.call("subscribe", {"channel": "me"})
    await phone.wait_for(has("type", "snapshot"))
    seen = phone.pushed[0]["seq"]
    await run(db, ADMIN, "queue.call", {"clinic": "dental"})
    await run(db, ADMIN, "queue.done", {"clinic": "dental"})
    await run(db, ADMIN, "queue.call", {"clinic": "dental"})
    await phone.call("subscribe", {"channel": "me", "since": seen})
    await phone.wait_for(lambda f: [x["type"] for x in f].count("snapshot") == 2)
    after = phone.pushed[phone.pushed.index(phone.pushed[0]) + 1:]
    replayed = [f for f in after if f["type"] == "event"]
    assert [e["event"] for e in replayed][:1] == ["CALLED"]
    snapshot = next(f for f in after if f["type"] == "snapshot")
    assert snapshot["reset"] is False
    assert snapshot["state"]["entry"]["status"] == "CALLED"
    await phone.close()


async def test_me_resume_loses_no_event_committed_while_it_is_read(
        live: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `me` resume reads a replay and a snapshot. An event committed between the two,
    and not yet relayed by this process's hub (it lags the log by a read under load),
    must still reach the phone: before the snapshot, or after it as a live event."""
    who = await patient(db, "26400000011")
    await run(db, who, "queue.enter", {"clinic": "dental"})
    phone = await Peer.open(live.ws_url)
    await phone.call("auth", {"token": await token_for(db, who)})
    seen = (await phone.call("subscribe", {"channel": "me"}))["seq"]
    await phone.close()
    hub = hub_of(live)
    relay = asyncio.Event()
    relay.set()
    read, replay = hub._read, hub.views.replay

    async def held_read(conn: Any) -> None:
        await relay.wait()
        await read(conn)

    async def replay_then_call(channel: Any, since: int, limit: int) -> Any:
        found = await replay(channel, since, limit)
        if channel.kind == "me":
            relay.clear()  # the hub falls behind the log from here
            await run(db, ADMIN, "queue.call", {"clinic": "dental"})
        return found

    monkeypatch.setattr(hub, "_read", held_read)
    monkeypatch.setattr(hub.views, "replay", replay_then_call)
    again = await Peer.open(live.ws_url)
    try:
        await again.call("auth", {"token": await token_for(db, who)})
        await again.call("subscribe", {"channel": "me", "since": seen})
        await again.wait_for(has("type", "snapshot"))
    finally:
        relay.set()
    await again.wait_for(has("event", "CALLED"))
    seqs = [e["seq"] for e in again.events()]
    assert seqs == sorted(set(seqs)) and seqs[0] > seen
    await again.close()


async def test_bad_frames_get_an_error_and_the_connection_stays(live: LiveServer) -> None:
    """Not JSON, array, no op, unknown op, wrong types, binary: errors, then ping works."""
    peer = await Peer.open(live.ws_url)
    cases: list[tuple[str | bytes, object]] = [
        ("not json", None), ("[1, 2]", None), ('"text"', None), ("{}", None),
        ('{"id": 5}', 5), ('{"id": 6, "op": "no.such"}', 6), ('{"id": "x", "op": "ping"}', None),
        ('{"id": 8, "op": 3}', 8), ('{"id": 9, "op": "queue.call", "args": [1]}', 9),
        ('{"id": 10, "op": "subscribe", "args": {"channel": 7}}', 10),
        ('{"id": 11, "op": "subscribe", "args": {"channel": "clinic:eyes", "since": "x"}}', 11),
        ('{"id": 12, "op": "auth", "args": {"token": 12}}', 12),
        ('{"id": 13, "op": "patient.login", "args": {"patient_id": "x", "gender": 1}}', 13),
        (b'{"id": 14, "op": "ping"}', None), ("\ud800".encode("utf-8", "surrogatepass"), None),
    ]
    for data, rid in cases:
        await peer.send_raw(data)
        await peer.wait_for(lambda f: len(f) >= 1)
        error = peer.pushed.pop()
        assert error["ok"] is False and error["id"] == rid, (data, error)
        assert error["error"] == "bad_request", (data, error)
        assert peer.close_code is None
    assert await peer.call("ping") == {}
    await peer.close()


async def test_a_frame_over_64_kib_closes_with_1009(live: LiveServer) -> None:
    """The size limit is the protocol's: 1009, and other sockets are untouched."""
    big, small = await Peer.open(live.ws_url), await Peer.open(live.ws_url)
    payload = orjson.dumps({"id": 1, "op": "ping", "args": {"x": "a" * 70_000}}).decode()
    await big.send_raw(payload)
    assert await big.wait_closed() == 1009
    assert await small.call("ping") == {}
    await small.close()


async def test_flooding_is_refused_then_closed_with_1008(dsn: str, clock: ManualClock) -> None:
    """Over the rate: `rate_limited` with retry_after; over it for too long: 1008."""
    limits = WsLimits(rate=1, burst=5, over_limit_seconds=300 * MS)
    async with running(dsn, clock, limits=limits) as live:
        peer = await Peer.open(live.ws_url)
        refused: list[Frame] = []
        for _ in range(2000):
            try:
                reply = await peer.request("ping")
            except ConnectionError:
                break
            if not reply["ok"]:
                assert reply["error"] == "rate_limited" and reply["retry_after"] >= 1
                refused.append(reply)
            if peer.close_code is not None:
                break
            await asyncio.sleep(MS)
        assert await peer.wait_closed() == 1008
        assert refused


async def test_idle_unauthenticated_socket_is_closed_with_1008(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """Anonymous with nothing subscribed: closed; a display or a staff member is not."""
    limits = WsLimits(idle_seconds=300 * MS)
    async with running(dsn, clock, limits=limits) as live:
        idle, display, console = [await Peer.open(live.ws_url) for _ in range(3)]
        await display.call("subscribe", {"channel": "clinic:eyes"})
        await console.call("auth", {"token": await token_for(db, staff("eyes"))})
        assert await idle.wait_closed() == 1008
        await asyncio.sleep(600 * MS)
        assert await display.call("ping") == {} and await console.call("ping") == {}
        await display.close()
        await console.close()


async def test_shutdown_closes_sockets_with_1012(dsn: str, clock: ManualClock) -> None:
    """A graceful shutdown tells clients to come back (1012) rather than dropping."""
    async with running(dsn, clock) as live:
        peer = await Peer.open(live.ws_url)
        await peer.call("subscribe", {"channel": "clinic:eyes"})
    assert await peer.wait_closed() == 1012


async def test_staff_and_admin_log_in_over_the_socket(live: LiveServer, db: Database) -> None:
    """admin.login, admin.staff.create, staff.login, then `auth` with the token."""
    async with db.transaction() as conn:
        await accounts.ensure_first_admin(conn, "boss", "correct horse battery")
    admin, console, tablet = [await Peer.open(live.ws_url) for _ in range(3)]
    bad = await admin.request("admin.login", {"username": "boss", "password": "nope"})
    assert bad["error"] == "unauthorized"
    login = await admin.call("admin.login", {"username": "boss",
                                             "password": "correct horse battery"})
    assert login["role"] == "admin" and login["token"]
    await admin.call("admin.staff.create", {"username": "nurse", "password": "eyes-nurse-1",
                                            "clinic": "eyes"})
    staff_login = await console.call("staff.login", {"username": "nurse",
                                                     "password": "eyes-nurse-1"})
    assert staff_login["role"] == "staff" and staff_login["clinic"] == "eyes"
    await console.call("subscribe", {"channel": "clinic:eyes:staff"})
    who = await tablet.call("auth", {"token": staff_login["token"]})
    assert who == {"role": "staff", "subject": "nurse", "clinic": "eyes"}
    assert (await tablet.request("auth", {"token": "forged"}))["error"] == "unauthorized"
    for peer in (admin, console, tablet):
        await peer.close()


async def test_ready_reports_the_hub(live: LiveServer) -> None:
    """/ready lists the hub among its checks."""
    async with httpx.AsyncClient(base_url=live.http_url) as http:
        body = (await http.get("/ready")).json()
    assert body["checks"]["hub"] is True and body["ready"] is True


async def test_day_turnover_drops_cached_snapshots(
        live: LiveServer, db: Database, clock: ManualClock) -> None:
    """A cached public snapshot does not outlive the local day it was read on."""
    who = await patient(db, "26300000001")
    await run(db, who, "queue.enter", {"clinic": "ecg"})
    first = await Peer.open(live.ws_url)
    await first.call("subscribe", {"channel": "clinic:ecg"})
    await first.wait_for(has("type", "snapshot"))
    assert first.pushed[0]["state"]["waiting"] == 1
    clock.advance(timedelta(days=1).total_seconds())
    second = await Peer.open(live.ws_url)
    await second.call("subscribe", {"channel": "clinic:ecg"})
    await second.wait_for(has("type", "snapshot"))
    assert second.pushed[0]["state"]["waiting"] == 0
    await first.close()
    await second.close()
