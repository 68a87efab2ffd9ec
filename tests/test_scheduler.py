"""The scheduler: one leader among processes, failover, auto-call, call timeouts,
PIN rotation at the local reset time, events and rate-limit clean-up."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from server.scheduler import JOBS, LEADER_LOCK, Job, Scheduler
from tests.harness import MS
from tests.people import ADMIN, patient, run, staff
from tests.test_queue_rules import line_up

PIN_CLINICS = {"eyes", "internal", "ent", "surgery", "dental", "psychiatry", "derma", "bones"}
ALL_JOBS = {"timeouts", "auto_call", "pins", "close_days", "events", "clean_up", "reports"}

# The leader's session, its OS process (application_name) included.
LEADER_SQL = f"""
    SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
     WHERE l.locktype = 'advisory' AND l.granted AND l.objid = {LEADER_LOCK}
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""

SCHEDULER_PROCESS = """
import asyncio, sys
from server import logs
from server.scheduler import Scheduler

logs.configure("json", "error")

async def main() -> None:
    async with Scheduler(sys.argv[1]).running():
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def schedulers(dsn, clock) -> AsyncIterator[tuple[Scheduler, Scheduler]]:
    """Two schedulers, as two server processes would have, on one database."""
    pair = (Scheduler(dsn, clock=clock), Scheduler(dsn, clock=clock))
    try:
        yield pair
    finally:
        for scheduler in pair:
            await scheduler.close()


@pytest.fixture
async def scheduler(schedulers) -> Scheduler:
    return schedulers[0]  # type: ignore[no-any-return]


async def sql(db, query: str, *args: Any) -> Any:
    async with db.pool.acquire() as conn:
        return await conn.fetch(query, *args)


async def configure(db, clinic: str, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    await sql(db, f"UPDATE clinics SET {assignments} WHERE code = $1", clinic, *fields.values())


async def statuses(db, clinic: str) -> dict[int, str]:
    rows = await sql(db, "SELECT queue_number, status FROM queues WHERE clinic_code = $1",
                     clinic)
    return {r["queue_number"]: r["status"] for r in rows}


async def leader_process(conn: asyncpg.Connection, *, other_than: int | None,
                         deadline: float) -> int:
    """The OS pid of the process holding the leader lock (waits for one)."""
    while time.monotonic() < deadline:
        rows = await conn.fetch(LEADER_SQL)
        for row in rows:
            pid = int(row["application_name"].rsplit("/", 1)[1])
            if pid != other_than:
                return pid
        await asyncio.sleep(20 * MS)
    raise AssertionError("no scheduler took the lead in time")


# --- leadership --------------------------------------------------------------------------

async def test_one_of_two_schedulers_leads_and_each_job_runs_once_per_tick(db, clock,
                                                                           schedulers):
    """Ticking both at once: one runs every job once, the other nothing; one call
    per call_interval and one PIN draw per clinic, never two."""
    await configure(db, "eyes", call_interval=60)
    await line_up(db, "eyes", 6)
    leaders = set()
    for _ in range(5):
        results = await asyncio.gather(*(s.tick() for s in schedulers))
        ran = [r for r in results if r]
        assert len(ran) == 1
        assert set(ran[0]) == ALL_JOBS
        assert len(ran[0]["auto_call"]) == 1
        leaders.add(results.index(ran[0]))
        await run(db, staff("eyes"), "queue.done", {"clinic": "eyes"})
        clock.advance(60)
    assert len(leaders) == 1
    assert await statuses(db, "eyes") == {1: "COMPLETED", 2: "COMPLETED", 3: "COMPLETED",
                                          4: "COMPLETED", 5: "COMPLETED", 6: "WAITING"}
    rotated = await sql(db, "SELECT clinic_code FROM events WHERE event_type = 'PIN_ROTATED'")
    assert sorted(r["clinic_code"] for r in rotated) == sorted(PIN_CLINICS)


async def test_follower_takes_over_when_the_leaders_session_dies(db, schedulers):
    """Postgres ends the leader's session: the follower leads on its next tick and
    the old leader, reconnected, follows."""
    first, second = schedulers
    assert await first.tick()
    assert await second.tick() == {}
    (holder,) = await sql(db, LEADER_SQL)
    await sql(db, "SELECT pg_terminate_backend($1, $2)", holder["pid"], 5000)
    assert set(await second.tick()) == ALL_JOBS
    assert await first.tick() == {}
    assert await first.tick() == {}
    assert second.is_leader and not first.is_leader


async def test_closing_the_leader_hands_over_on_the_next_tick(schedulers):
    """A leader shutting down lets go of the lock at once."""
    first, second = schedulers
    assert await first.tick()
    assert await second.tick() == {}
    await first.close()
    assert await second.tick()


async def test_running_ticks_in_the_background_and_resigns_on_exit(db, dsn, clock):
    """`running()` takes the lead by itself and gives it back when the block ends."""
    background = Scheduler(dsn, clock=clock, interval=10 * MS)
    async with background.running():
        for _ in range(200):
            if background.is_leader:
                break
            await asyncio.sleep(10 * MS)
        assert background.is_leader
        assert len(await sql(db, LEADER_SQL)) == 1
    assert not background.is_leader
    assert await sql(db, LEADER_SQL) == []


async def test_killed_leader_process_is_replaced_within_ten_seconds(dsn):
    """Two real processes: SIGKILL the leader, the other holds the lock within 10 s."""
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCHEDULER_PROCESS, dsn,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(2)]
    conn = await asyncpg.connect(dsn)
    try:
        first = await leader_process(conn, other_than=None, deadline=time.monotonic() + 60)
        (victim,) = [p for p in processes if p.pid == first]
        killed_at = time.monotonic()
        victim.kill()
        await victim.wait()
        second = await leader_process(conn, other_than=first, deadline=killed_at + 10)
        took = time.monotonic() - killed_at
        assert second in {p.pid for p in processes} - {first}
        assert took < 10
    finally:
        await conn.close()
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_a_failing_job_does_not_stop_the_others(dsn, clock):
    """A job whose SQL fails is logged and retried next tick; the rest still run."""
    async def broken(conn: Any, now: datetime) -> Any:
        return await conn.fetchval("SELECT 1 / 0")

    scheduler = Scheduler(dsn, clock=clock, jobs=(Job("broken", 0, broken), *JOBS))
    try:
        for _ in range(2):
            assert set(await scheduler.tick()) == ALL_JOBS
            clock.advance(60)
        assert scheduler.is_leader
    finally:
        await scheduler.close()


# --- auto-call ---------------------------------------------------------------------------

async def test_auto_call_calls_at_the_set_interval(db, clock, scheduler):
    """call_interval 120: a call, nothing at 119 s, the next call at 120 s."""
    await configure(db, "eyes", call_interval=120)
    await line_up(db, "eyes", 3)
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [1]
    await run(db, staff("eyes"), "queue.done", {"clinic": "eyes"})
    clock.advance(119)
    assert (await scheduler.tick())["auto_call"] == []
    clock.advance(1)
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [2]


async def test_a_staff_call_restarts_the_interval(db, clock, scheduler):
    """Nobody called in the last call_interval seconds: a staff call counts too."""
    await line_up(db, "eyes", 3)
    await run(db, staff("eyes"), "queue.call", {"clinic": "eyes"})
    await run(db, staff("eyes"), "queue.done", {"clinic": "eyes"})
    clock.advance(299)
    assert (await scheduler.tick())["auto_call"] == []
    clock.advance(1)
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [2]


async def test_a_timed_out_call_still_counts_as_the_last_call(db, clock, scheduler):
    """A skip clears called_at, but the interval runs from the call that was made."""
    await line_up(db, "eyes", 2)
    await run(db, staff("eyes"), "queue.call", {"clinic": "eyes"})
    clock.advance(240)
    assert [e["status"] for e in (await scheduler.tick())["timeouts"]] == ["WAITING"]
    clock.advance(59)
    assert (await scheduler.tick())["auto_call"] == []
    clock.advance(1)
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [2]


async def test_a_call_before_midnight_counts_after_it(db, clock, scheduler):
    """The interval runs across local midnight: a call at 23:59 holds the next day's
    first auto-call until 00:01 (call_interval 120)."""
    await configure(db, "eyes", call_interval=120)
    clock.set(datetime(2026, 3, 1, 20, 59, tzinfo=UTC))  # 23:59 in Doha
    await line_up(db, "eyes", 1)
    await run(db, staff("eyes"), "queue.call", {"clinic": "eyes"})
    await run(db, staff("eyes"), "queue.done", {"clinic": "eyes"})
    clock.advance(90)  # 00:00:30 the next day
    await line_up(db, "eyes", 1, first_id=91_000_000)
    assert (await scheduler.tick())["auto_call"] == []
    clock.advance(30)
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [1]


async def test_auto_call_fills_free_capacity_only(db, clock, scheduler):
    """Capacity 2: two in the rooms, then no call until one is done."""
    await configure(db, "lab", call_interval=60, capacity=2)
    await line_up(db, "lab", 4)
    for number in (1, 2):
        assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [number]
        await run(db, staff("lab"), "queue.start", {"clinic": "lab", "number": number})
        clock.advance(60)
    for _ in range(3):
        assert (await scheduler.tick())["auto_call"] == []
        clock.advance(600)
    await run(db, staff("lab"), "queue.done", {"clinic": "lab", "number": 1})
    assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [3]


async def test_paused_clinics_and_a_disabled_setting_are_not_auto_called(db, clock,
                                                                        scheduler):
    """A paused clinic waits for its resume; auto_call_enabled false stops them all."""
    await line_up(db, "eyes", 2)
    await run(db, ADMIN, "admin.clinic.pause", {"clinic": "eyes"})
    assert (await scheduler.tick())["auto_call"] == []
    await run(db, ADMIN, "admin.clinic.resume", {"clinic": "eyes"})
    assert [c["clinic"] for c in (await scheduler.tick())["auto_call"]] == ["eyes"]
    await run(db, ADMIN, "admin.settings.set", {"key": "auto_call_enabled", "value": False})
    await run(db, staff("eyes"), "queue.done", {"clinic": "eyes"})
    await line_up(db, "lab", 1, first_id=70000101)
    clock.advance(3600)
    assert (await scheduler.tick())["auto_call"] == []
    assert await statuses(db, "lab") == {1: "WAITING"}


# --- call timeouts -----------------------------------------------------------------------

async def test_called_patient_who_never_starts_is_skipped_then_cancelled_on_the_third(
        db, clock, scheduler):
    """Called and never started: skipped at 240 s (twice, re-called in between) and
    cancelled at the third timeout, max_postpones being 3."""
    (who,) = await line_up(db, "eyes", 1)
    outcomes = []
    for _ in range(3):
        assert [c["number"] for c in (await scheduler.tick())["auto_call"]] == [1]
        clock.advance(239)
        assert (await scheduler.tick())["timeouts"] == []
        clock.advance(1)
        outcomes += [(e["status"], e["postpone_count"])
                     for e in (await scheduler.tick())["timeouts"]]
        clock.advance(60)
    assert outcomes == [("WAITING", 1), ("WAITING", 2), ("CANCELLED", 3)]
    assert (await run(db, who, "queue.status"))["status"] == "NONE"
    (cancelled,) = await sql(db, "SELECT data FROM events WHERE event_type = 'CANCELLED'")
    assert cancelled["data"]["reason"] == "max_postpones"


async def test_a_started_patient_is_never_timed_out(db, clock, scheduler):
    """IN_PROGRESS is past the door: no timeout however long the examination."""
    await line_up(db, "eyes", 1)
    await run(db, staff("eyes"), "queue.call", {"clinic": "eyes"})
    clock.advance(200)
    await run(db, staff("eyes"), "queue.start", {"clinic": "eyes"})
    clock.advance(3600)
    assert (await scheduler.tick())["timeouts"] == []
    assert await statuses(db, "eyes") == {1: "IN_PROGRESS"}


# --- PINs --------------------------------------------------------------------------------

async def pin_rotations(db) -> dict[str, int]:
    rows = await sql(db, """SELECT data->>'day' AS day, count(*) AS n FROM events
                             WHERE event_type = 'PIN_ROTATED' GROUP BY 1""")
    return {r["day"]: r["n"] for r in rows}


async def test_pins_rotate_at_local_midnight_once_a_day_across_a_restart(db, dsn, clock):
    """00:00 Asia/Qatar is 21:00 UTC: a scheduler restarted at 20:59:59 draws the new
    day's PINs once, at 21:00:00, and never again that day."""
    clock.set(datetime(2026, 3, 1, 20, 59, 58, tzinfo=UTC))
    before = Scheduler(dsn, clock=clock)
    assert (await before.tick())["pins"] == len(PIN_CLINICS)
    clock.advance(1)
    assert (await before.tick())["pins"] == 0
    await before.close()
    after = Scheduler(dsn, clock=clock)
    try:
        assert (await after.tick())["pins"] == 0
        clock.advance(1)
        assert (await after.tick())["pins"] == len(PIN_CLINICS)
        for step in (1, 59, 3600, 20 * 3600, 10739):  # to 20:59:59
            clock.advance(step)
            assert (await after.tick())["pins"] == 0
        assert await pin_rotations(db) == {"2026-03-01": 8, "2026-03-02": 8}
        clock.advance(1)
        assert (await after.tick())["pins"] == len(PIN_CLINICS)
    finally:
        await after.close()
    assert await pin_rotations(db) == {"2026-03-01": 8, "2026-03-02": 8, "2026-03-03": 8}
    rotated = await sql(db, "SELECT patient_id, data FROM events WHERE event_type = 'PIN_ROTATED'")
    assert all(r["patient_id"] is None and set(r["data"]) == {"day"} for r in rotated)


async def test_pins_rotate_at_the_configured_reset_time(db, clock, scheduler):
    """pin_reset_time 06:30 local: the PIN day turns at 03:30 UTC."""
    await run(db, ADMIN, "admin.settings.set", {"key": "pin_reset_time", "value": "06:30"})
    clock.set(datetime(2026, 3, 2, 3, 29, 59, tzinfo=UTC))
    assert (await scheduler.tick())["pins"] == len(PIN_CLINICS)
    clock.advance(1)
    assert (await scheduler.tick())["pins"] == len(PIN_CLINICS)
    assert await pin_rotations(db) == {"2026-03-01": 8, "2026-03-02": 8}


# --- clean-up ----------------------------------------------------------------------------

async def test_events_older_than_the_retention_are_pruned(db, clock, scheduler):
    """events_retention_seconds 3600: an event of 61 minutes ago goes, one of 59 stays."""
    now = clock.now()
    for minutes, kind in ((61, "OLD"), (59, "RECENT")):
        await sql(db, "INSERT INTO events (event_type, created_at) VALUES ($1, $2)",
                  kind, now - timedelta(minutes=minutes))
    assert (await scheduler.tick())["events"] == 1
    left = await sql(db, "SELECT event_type FROM events WHERE event_type IN ('OLD', 'RECENT')")
    assert [r["event_type"] for r in left] == ["RECENT"]


async def test_clean_up_removes_only_what_has_expired(db, clock, scheduler):
    """Expired sessions, PIN attempts past the lockout window and rate-limit windows
    over an hour old go; live ones stay."""
    now = clock.now()
    await sql(db, """INSERT INTO sessions (token_hash, role, subject, expires_at)
                     VALUES ('\\x01', 'patient', '11', $1), ('\\x02', 'patient', '12', $2)""",
              now - timedelta(seconds=1), now + timedelta(hours=1))
    await sql(db, """INSERT INTO pin_attempts (patient_id, clinic_code, attempted_at)
                     VALUES ('11', 'eyes', $1), ('12', 'eyes', $2)""",
              now - timedelta(seconds=600), now - timedelta(seconds=599))
    await sql(db, """INSERT INTO rate_limits (client_id, endpoint, window_start)
                     VALUES ('a', 'login', $1), ('b', 'login', $2)""",
              now - timedelta(minutes=61), now - timedelta(minutes=5))
    assert (await scheduler.tick())["clean_up"] == {
        "sessions": 1, "pin_attempts": 1, "rate_limits": 1}
    assert [r["subject"] for r in await sql(db, "SELECT subject FROM sessions")] == ["12"]
    assert [r["patient_id"] for r in await sql(db, "SELECT patient_id FROM pin_attempts")] \
        == ["12"]
    assert [r["client_id"] for r in await sql(db, "SELECT client_id FROM rate_limits")] == ["b"]


async def test_past_days_are_closed_before_their_report(db, clock, scheduler):
    """After local midnight, yesterday's waiting and called entries are CANCELLED
    (day_closed) and its unfinished routes cancelled; today's are left alone, and the
    stored daily report counts them as cancelled."""
    await run(db, ADMIN, "admin.settings.set", {"key": "auto_call_enabled", "value": False})
    clock.set(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))  # 18:00 in Doha
    await line_up(db, "eyes", 2)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    await run(db, await patient(db, "93000001"), "route.create", {"exam_type": "cooks"})
    clock.set(datetime(2026, 3, 1, 21, 5, tzinfo=UTC))  # 00:05 the next day in Doha
    await run(db, await patient(db, "93000002"), "queue.enter", {"clinic": "eyes"})
    assert (await scheduler.tick())["close_days"] == 3
    rows = await sql(db, "SELECT day::text, status FROM queues ORDER BY day, entered_at")
    assert [(r["day"], r["status"]) for r in rows] == [
        ("2026-03-01", "CANCELLED"), ("2026-03-01", "CANCELLED"),
        ("2026-03-01", "CANCELLED"), ("2026-03-02", "WAITING")]
    assert [r["status"] for r in await sql(db, "SELECT status FROM routes")] == ["cancelled"]
    reasons = await sql(db, "SELECT DISTINCT data->>'reason' AS r FROM events "
                            "WHERE event_type = 'CANCELLED'")
    assert [r["r"] for r in reasons] == ["day_closed"]
    stored = await sql(db, "SELECT data FROM reports WHERE report_type = 'daily' "
                           "AND report_date = '2026-03-01'")
    assert stored[0]["data"]["total"]["cancelled"] == 3
