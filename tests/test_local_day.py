"""The day is the local day of Asia/Qatar (UTC+3), not UTC's."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.people import patient, run


async def enter_at(db, clock, when: datetime, pid: str) -> int:
    clock.set(when)
    who = await patient(db, pid)
    return (await run(db, who, "queue.enter", {"clinic": "lab"}))["number"]  # type: ignore[no-any-return]


async def test_numbers_restart_at_local_midnight_not_utc_midnight(db, clock):
    """20:00 and 20:59 UTC are the same Qatar day (1, 2); 23:30 UTC is the next (1)."""
    assert await enter_at(db, clock, datetime(2026, 3, 1, 20, 0, tzinfo=UTC), "11000001") == 1
    assert await enter_at(db, clock, datetime(2026, 3, 1, 20, 59, tzinfo=UTC), "11000002") == 2
    assert await enter_at(db, clock, datetime(2026, 3, 1, 23, 30, tzinfo=UTC), "11000003") == 1
    assert await enter_at(db, clock, datetime(2026, 3, 2, 0, 30, tzinfo=UTC), "11000004") == 2
    async with db.pool.acquire() as conn:
        days = await conn.fetch("SELECT day::text, last_number FROM queue_counters ORDER BY day")
    assert [(r["day"], r["last_number"]) for r in days] == [("2026-03-01", 2), ("2026-03-02", 2)]


async def test_yesterdays_active_entry_is_closed_when_the_patient_starts_today(db, clock):
    """An entry left WAITING yesterday is cancelled, not carried into today's queue."""
    clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    who = await patient(db, "11000010")
    await run(db, who, "queue.enter", {"clinic": "lab"})
    clock.set(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    assert (await run(db, who, "queue.status"))["status"] == "NONE"
    route = await run(db, who, "route.create", {"exam_type": "cooks"})
    assert route["day"] == "2026-03-02"
    assert route["current"]["number"] == 1
    async with db.pool.acquire() as conn:
        old = await conn.fetchval("SELECT status FROM queues WHERE day = '2026-03-01'")
    assert old == "CANCELLED"


async def test_yesterdays_active_entry_is_closed_when_the_patient_enters_today(db, clock):
    """queue.enter the next day: yesterday's WAITING entry is cancelled (day_closed)
    and today's line gives number 1, not ALREADY_IN_QUEUE."""
    clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    who = await patient(db, "11000011")
    await run(db, who, "queue.enter", {"clinic": "lab"})
    clock.set(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    today = await run(db, who, "queue.enter", {"clinic": "lab"})
    assert (today["number"], today["status"], today["position"]) == (1, "WAITING", 1)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT day::text, status FROM queues ORDER BY day")
        reason = await conn.fetchval(
            "SELECT data->>'reason' FROM events WHERE event_type = 'CANCELLED'")
    assert [(r["day"], r["status"]) for r in rows] == [
        ("2026-03-01", "CANCELLED"), ("2026-03-02", "WAITING")]
    assert reason == "day_closed"


async def test_changing_the_timezone_setting_moves_the_day(db, clock):
    """The timezone setting, not a constant, defines the local day."""
    from tests.people import ADMIN

    clock.set(datetime(2026, 3, 1, 22, 0, tzinfo=UTC))  # 01:00 in Doha, 22:00 in London
    await run(db, ADMIN, "admin.settings.set", {"key": "timezone", "value": "Europe/London"})
    who = await patient(db, "11000020")
    route = await run(db, who, "route.create", {"exam_type": "cooks"})
    assert route["day"] == "2026-03-01"
