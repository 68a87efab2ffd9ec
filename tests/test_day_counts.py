"""The day's counts (schema/017): a clinic's views and the dashboard read a few rows
however long the day, and say what counting every entry of the day would say."""

from __future__ import annotations

from typing import Any

from server.clock import ManualClock
from server.db import Database
from tests.people import ADMIN, patient, run

# The views below, each as the hub or a command asks for it.
VIEWS = {
    "clinic snapshot": "SELECT mmc_snapshot_clinic('eyes', $1)",
    "staff snapshot": "SELECT mmc_snapshot_staff('eyes', $1)",
    "queue.status": "SELECT mmc_clinic_status('eyes', $1)",
    "dashboard": "SELECT mmc_snapshot_admin($1)",
}


async def a_long_day(db: Database, clinic: str, served: int) -> None:
    """`served` entries already done today at `clinic` (as by an afternoon)."""
    async with db.transaction() as conn:
        await conn.execute(
            """INSERT INTO queues (clinic_code, patient_id, day, queue_number, status, sort_key,
                               entered_at, called_at, started_at, completed_at, call_seq)
           SELECT $1, (SELECT patient_id FROM patients ORDER BY patient_id LIMIT 1),
                  mmc_local_day($3), 100000 + g, 'COMPLETED', $3 - interval '2 hours',
                  $3 - interval '2 hours', $3 - interval '1 hour', $3 - interval '1 hour',
                  $3 - interval '50 minutes', g - $2 - 1
             FROM generate_series(1, $2) g""", clinic, served, db.now())
        # (call_seq: their calls came before any of the log's, in number order.)
        await conn.execute("ANALYZE queues")


async def rows_read(db: Database, sql: str) -> int:
    """How many rows of `queues` one view read (this transaction's statistics)."""
    count = """SELECT coalesce(sum(seq_tup_read + idx_tup_fetch), 0)
                 FROM pg_stat_xact_user_tables WHERE relname = 'queues'"""
    async with db.transaction() as conn:
        before = await conn.fetchval(count)  # (may hold earlier transactions' too)
        await conn.fetchval(sql, db.now())
        return int(await conn.fetchval(count) - before)


async def test_a_clinics_views_read_a_few_rows_however_long_the_day(db: Database) -> None:
    """With 3,000 entries done today, each view reads the live few, not the day."""
    people = [await patient(db, f"1500000000{i}") for i in range(4)]
    for who in people:
        await run(db, who, "queue.enter", {"clinic": "eyes"})
    for _ in range(3):
        await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    await run(db, ADMIN, "queue.done", {"clinic": "eyes", "number": 1})
    await a_long_day(db, "eyes", 3000)
    read = {name: await rows_read(db, sql) for name, sql in VIEWS.items()}
    assert all(n < 100 for n in read.values()), read
    state = (await db.call(VIEWS["staff snapshot"], db.now()))["state"]
    assert state["served_today"] == 3001
    assert state["called"] == [3, 2, 1, 103000, 102999]


async def counted(db: Database) -> dict[str, Any]:
    """Per clinic what counting today's entries says (the views' formula before 017)."""
    async with db.transaction() as conn:
        rows = await conn.fetch(
            """SELECT clinic_code, count(*) FILTER (WHERE status = 'COMPLETED') AS served,
                  count(*) FILTER (WHERE status = 'NO_SHOW') AS no_show,
                  round((avg(extract(epoch FROM called_at - entered_at))
                         FILTER (WHERE called_at IS NOT NULL) / 60.0)::numeric, 1) AS wait
             FROM queues WHERE day = mmc_local_day($1) GROUP BY clinic_code""", db.now())
    return {r["clinic_code"]: (r["served"], r["no_show"],
                               None if r["wait"] is None else float(r["wait"])) for r in rows}


async def test_the_days_counts_say_what_counting_its_entries_says(
        db: Database, clock: ManualClock) -> None:
    """Calls, recalls, skips, starts, dones and no-shows at two clinics: the dashboard,
    the console and queue.status agree with counting every entry."""
    people = [await patient(db, f"1600000000{i}") for i in range(9)]
    for i, who in enumerate(people):
        await run(db, who, "queue.enter", {"clinic": "eyes" if i % 3 else "ent"})
        clock.advance(37)
    for clinic in ("eyes", "ent"):
        for _ in range(3):
            await run(db, ADMIN, "queue.call", {"clinic": clinic})
            clock.advance(61)
    await run(db, ADMIN, "queue.recall", {"clinic": "eyes", "number": 1})
    clock.advance(13)
    await run(db, ADMIN, "queue.start", {"clinic": "eyes", "number": 1})
    await run(db, ADMIN, "queue.done", {"clinic": "eyes", "number": 1})
    await run(db, ADMIN, "queue.no_show", {"clinic": "eyes", "number": 2})
    await run(db, ADMIN, "queue.skip", {"clinic": "eyes", "number": 3})
    await run(db, ADMIN, "queue.done", {"clinic": "ent", "number": 1})
    clock.advance(45)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    await run(db, ADMIN, "queue.done", {"clinic": "ent", "number": 2})
    expected = await counted(db)
    dashboard = (await db.call(VIEWS["dashboard"], db.now()))["state"]
    shown = {c["clinic"]: (c["served_today"], c["no_show_today"], c["mean_wait_minutes"])
             for c in dashboard["clinics"] if c["clinic"] in expected}
    assert {k: (s, n, None if w is None else float(w)) for k, (s, n, w) in shown.items()} \
        == expected
    assert dashboard["totals"]["served_today"] == 3
    assert dashboard["totals"]["no_show_today"] == 1
    for clinic, (served, _, _) in expected.items():
        staff = await db.call("SELECT mmc_snapshot_staff($1, $2)", clinic, db.now())
        status = await db.call("SELECT mmc_clinic_status($1, $2)", clinic, db.now())
        assert staff["state"]["served_today"] == status["served_today"] == served
