"""Views: the snapshots and positions of schema/004 on real Postgres, retention and
replay, the snapshot cache, notices, channel parsing and the token bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server import errors, protocol
from server.auth import ANONYMOUS, Principal
from server.clock import ManualClock
from server.db import Database
from server.notices import NoticeBook
from server.protocol import parse_channel
from server.ratelimit import TokenBucket
from server.views import EventRow, ViewCache, Views, audiences
from tests.people import ADMIN, patient, run, staff


async def enter_many(db: Database, clinic: str, count: int, first: int) -> list[Principal]:
    people = [await patient(db, str(first + i)) for i in range(count)]
    for who in people:
        await run(db, who, "queue.enter", {"clinic": clinic})
    return people


async def test_public_snapshot_has_numbers_only(db: Database) -> None:
    """The display's state: last 5 called, serving, waiting count; no patient ID."""
    await enter_many(db, "eyes", 8, 19000000001)
    for _ in range(6):
        await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    await run(db, ADMIN, "queue.done", {"clinic": "eyes", "number": 1})
    found = await db.call("SELECT mmc_snapshot_clinic('eyes', $1)", db.now())
    state = found["state"]
    assert state["called"] == [6, 5, 4, 3, 2]
    assert state["serving"] == [2, 3, 4, 5, 6]
    assert state["waiting"] == 2
    assert "190000000" not in str(state)
    assert found["seq"] == await db.call("SELECT max(id) FROM events")
    assert await db.call("SELECT mmc_snapshot_clinic('nowhere', $1)", db.now()) is None


async def test_last_calls_follow_the_order_of_their_events(
        db: Database, clock: ManualClock) -> None:
    """The snapshot's last calls are in the order the displays saw the events: a call
    that arrived (called_at) before another but committed after it comes first, and a
    recall moves its number to the front, as on a display that watched it happen."""
    await enter_many(db, "ent", 4, 19100000001)
    await run(db, ADMIN, "queue.call", {"clinic": "ent"})
    clock.advance(-60)  # the second server's command arrived first, committed second
    await run(db, ADMIN, "queue.call", {"clinic": "ent"})
    seen: list[int] = []
    async with db.pool.acquire() as conn:
        for row in await conn.fetch(
                "SELECT queue_number FROM events WHERE clinic_code = 'ent' "
                "AND event_type IN ('CALLED', 'RECALLED') ORDER BY id"):
            seen = [row["queue_number"], *[n for n in seen if n != row["queue_number"]]]
    assert seen == [2, 1]
    views = ("SELECT mmc_snapshot_clinic('ent', $1)", "SELECT mmc_snapshot_staff('ent', $1)")
    for sql in views:
        assert (await db.call(sql, db.now()))["state"]["called"] == [2, 1]
    assert (await run(db, ADMIN, "queue.status", {"clinic": "ent"}))["called"] == [2, 1]
    await run(db, ADMIN, "queue.recall", {"clinic": "ent"})
    recalled = (await db.call(views[0], db.now()))["state"]["called"]
    assert recalled[0] == await db.call(
        "SELECT queue_number FROM events WHERE event_type = 'RECALLED' ORDER BY id DESC LIMIT 1")
    assert sorted(recalled) == [1, 2]


async def test_staff_snapshot_lists_the_waiting_with_masked_ids(db: Database) -> None:
    """The console's state: the waiting list in order, IDs masked to 4 digits."""
    await enter_many(db, "ent", 3, 18000000001)
    await run(db, ADMIN, "queue.call", {"clinic": "ent"})
    state = (await db.call("SELECT mmc_snapshot_staff('ent', $1)", db.now()))["state"]
    assert [w["number"] for w in state["waiting_list"]] == [2, 3]
    assert [w["patient"] for w in state["waiting_list"]] == ["*******0002", "*******0003"]
    assert state["serving_list"][0]["patient"] == "*******0001"
    assert "pin" not in str(state).lower()


async def test_me_snapshot_is_route_entry_and_position(db: Database) -> None:
    """The patient's state: today's route and their entry with `ahead`."""
    first, second = await enter_many(db, "lab", 2, 17000000001)
    state = (await db.call("SELECT mmc_snapshot_me($1, $2)", second.subject,
                           db.now()))["state"]
    assert state["route"] is None
    assert state["entry"]["number"] == 2 and state["entry"]["ahead"] == 1
    nobody = (await db.call("SELECT mmc_snapshot_me('99', $1)", db.now()))["state"]
    assert nobody["entry"]["status"] == "NONE"
    assert first.subject


async def test_positions_rank_everyone_waiting_in_one_pass(db: Database) -> None:
    """mmc_clinic_positions: ahead by sort order, a skip moves to the end."""
    await enter_many(db, "bones", 4, 16000000001)
    await run(db, ADMIN, "queue.call", {"clinic": "bones"})
    await run(db, ADMIN, "queue.skip", {"clinic": "bones", "number": 2})
    found = await Views(db).positions("bones")
    assert found is not None
    standing = {p["number"]: (p["status"], p["ahead"]) for p in found["positions"]}
    assert standing == {1: ("CALLED", 0), 3: ("WAITING", 0), 4: ("WAITING", 1),
                        2: ("WAITING", 2)}
    assert found["near_ahead"] == 3 and found["floor"] == "2"
    patients = {p["number"]: p["patient"] for p in found["positions"]}
    listened = await Views(db).positions("bones", [patients[4], "nobody-here"])
    assert listened is not None
    assert [(p["number"], p["ahead"]) for p in listened["positions"]] == [(4, 1)], \
        "only the listed patients, ranked among everyone"
    empty = await Views(db).positions("bones", [])
    assert empty is not None and empty["positions"] == [] and empty["seq"] == found["seq"]
    assert await Views(db).positions("no-such-clinic") is None


async def test_prune_advances_the_watermark_and_ends_resume(db: Database) -> None:
    """Pruned events end resumability below the watermark; above it replay works."""
    views = Views(db)
    await enter_many(db, "psychiatry", 3, 15000000001)
    ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM events ORDER BY id")]
    channel = parse_channel("clinic:psychiatry", ANONYMOUS)
    replay = await views.replay(channel, ids[0], limit=100)
    assert replay.resumable and [r.id for r in replay.rows] == ids[1:]
    assert await db.call("SELECT mmc_prune_events(now() - interval '1 hour')") == 0
    assert await db.call("SELECT mmc_prune_events(now() + interval '1 hour')") == 3
    assert await db.call("SELECT pruned_through FROM event_watermark") == ids[-1]
    assert not (await views.replay(channel, ids[0], limit=100)).resumable
    assert (await views.replay(channel, ids[-1], limit=100)).resumable
    seq, _ = await views.snapshot(channel)
    assert seq == ids[-1], "an emptied log keeps the watermark as its head"
    await enter_many(db, "psychiatry", 3, 15000000011)
    assert not (await views.replay(channel, ids[-1], limit=2)).resumable


def row(event: str, *, clinic: str | None = "eyes", patient_id: str | None = "12345678",
        number: int | None = 4, **data: Any) -> EventRow:
    return EventRow(1, event, clinic, patient_id, number, data, datetime(2026, 3, 1, tzinfo=UTC))


def test_each_audience_sees_its_share_of_an_event() -> None:
    """Display: number only; staff: masked ID; patient: theirs; admin: all."""
    shares = {key: build(row("CALLED", number=4)) for key, _, build in
              audiences(row("CALLED", number=4))}
    assert shares == {"clinic:eyes": {"number": 4},
                      "clinic:eyes:staff": {"number": 4, "patient": "****5678"},
                      "me:12345678": {"clinic": "eyes", "number": 4},
                      "admin": {"clinic": "eyes", "number": 4, "patient": "12345678"}}
    keys = [key for key, _, _ in audiences(row("PIN_ROTATED", patient_id=None, number=None))]
    assert keys == ["clinic:eyes:staff", "admin"]
    keys = [key for key, _, _ in audiences(row("STARTED"))]
    assert keys == ["me:12345678", "admin"]


def test_cache_refuses_a_value_computed_across_an_invalidation() -> None:
    """A snapshot read before a NOTIFY and stored after it is never served."""
    cache, now = ViewCache(), datetime(2026, 3, 1, tzinfo=UTC)
    generation = cache.generation("queue:status:eyes")
    cache.drop("queue:status:eyes")
    cache.store("queue:status:eyes", "clinic", generation, (5, {}), now)
    assert cache.get("queue:status:eyes", "clinic", now) is None
    cache.store("queue:status:eyes", "clinic", cache.generation("queue:status:eyes"),
                (6, {}), now)
    assert cache.get("queue:status:eyes", "clinic", now) == (6, {})
    assert cache.get("queue:status:eyes", "clinic", now + timedelta(minutes=5)) is None


CLINIC = {"clinic": "eyes", "floor": "2", "name": "Ophthalmology", "name_ar": "العيون"}


def test_notices_only_on_change_and_never_backwards() -> None:
    """POSITION when ahead moves, NEAR_TURN once, YOUR_TURN when called; older seqs
    than the patient's snapshot are ignored."""
    book = NoticeBook()
    book.baseline("p", 10, {"clinic": "eyes", "number": 7, "status": "WAITING", "ahead": 5})

    def at(seq: int, status: str, ahead: int) -> list[str]:
        position = {"number": 7, "status": status, "ahead": ahead, "eta_minutes": ahead}
        return [kind for kind, _ in book.update("p", seq, CLINIC, position, 3)]

    assert at(9, "WAITING", 1) == []
    assert at(11, "WAITING", 5) == []
    assert at(12, "WAITING", 4) == ["POSITION"]
    assert at(13, "WAITING", 3) == ["POSITION", "NEAR_TURN"]
    assert at(14, "WAITING", 2) == ["POSITION"]
    assert at(15, "CALLED", 0) == ["YOUR_TURN"]
    assert at(16, "IN_PROGRESS", 0) == []
    assert at(17, "CALLED", 0) == []


def test_notice_book_asks_for_each_patient_where_they_stand() -> None:
    """The by-clinic index follows a patient from clinic to clinic and back, and lets
    go of them when forgotten: positions are asked where they stand, nowhere else."""
    book = NoticeBook()
    book.baseline("p", 1, {"clinic": "eyes", "number": 7, "status": "WAITING", "ahead": 5})
    book.baseline("q", 1, {"clinic": "eyes", "number": 8, "status": "WAITING", "ahead": 6})
    assert sorted(book.patients_at("eyes")) == ["p", "q"]
    waiting = {"number": 7, "status": "WAITING", "ahead": 4, "eta_minutes": 4}
    assert [k for k, _ in book.update("p", 2, CLINIC, waiting, 3)] == ["POSITION"]
    assert sorted(book.patients_at("eyes")) == ["p", "q"]
    lab = {**CLINIC, "clinic": "lab"}
    entered = {"number": 1, "status": "WAITING", "ahead": 9, "eta_minutes": 9}
    book.update("p", 3, lab, entered, 3)
    assert book.patients_at("eyes") == ["q"] and book.patients_at("lab") == ["p"]
    assert [k for k, _ in book.update("p", 4, CLINIC, waiting, 3)] == ["POSITION"]
    assert sorted(book.patients_at("eyes")) == ["p", "q"] and not book.listens_at("lab")
    book.forget("p")
    assert book.patients_at("eyes") == ["q"] and book.clinics() == {"eyes"}


@pytest.mark.parametrize(("name", "who", "error"), [
    ("me", ANONYMOUS, errors.Unauthorized), ("me", staff("eyes"), errors.Forbidden),
    ("admin", staff("eyes"), errors.Forbidden), ("clinic:lab:staff", staff("eyes"),
                                                 errors.Forbidden),
    ("clinic:eyes:nurses", ADMIN, errors.NotFound), ("clinic:Eyes", ADMIN, errors.NotFound),
    ("clinics", ADMIN, errors.NotFound), (7, ADMIN, errors.BadRequest),
])
def test_channels_refused(name: Any, who: Principal, error: type[errors.MMCError]) -> None:
    """Who may not subscribe to what."""
    with pytest.raises(error):
        parse_channel(name, who)


def test_channels_granted() -> None:
    """Each patient's `me` is their own key; staff get their clinic's staff channel."""
    me = parse_channel("me", Principal("patient", "123"))
    assert (me.name, me.key) == ("me", "me:123")
    assert parse_channel("clinic:eyes:staff", staff("eyes")).kind == "staff"
    assert parse_channel("clinic:eyes", ANONYMOUS).key == "clinic:eyes"


@pytest.mark.parametrize(("text", "rid"), [
    ("x", None), ("[]", None), ('{"id": true, "op": "ping"}', None), ('{"id": 3}', 3),
    ('{"id": 4, "op": ""}', 4), ('{"id": 5, "op": "ping", "args": 1}', 5),
    ('{"id": 9007199254740993, "op": "ping"}', None),
])
def test_unreadable_requests(text: str, rid: int | None) -> None:
    """A bad frame is refused with the id echoed only when one could be read."""
    with pytest.raises(protocol.BadFrame) as caught:
        protocol.parse_request(text)
    assert caught.value.request_id == rid


def test_token_bucket_refuses_past_the_burst_and_counts_the_overdraft() -> None:
    """Burst, then one token per 1/rate seconds; refusals measure how long."""
    seconds = [0.0]
    bucket = TokenBucket(2, 3, clock=lambda: seconds[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    seconds[0] = 0.4
    assert not bucket.take() and bucket.over_for() == pytest.approx(0.4)
    seconds[0] = 0.6
    assert bucket.take() and bucket.over_for() == 0
