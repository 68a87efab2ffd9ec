"""Numbers, calls and active entries stay correct under concurrent commands."""

from __future__ import annotations

import asyncio

from server import errors
from tests.people import ADMIN, patient, run, staff


async def test_concurrent_enter_and_call_loops_keep_numbers_and_calls_unique(db):
    """200 concurrent enters on one clinic with 4 call/done loops: numbers 1..200, no
    gap or duplicate, nobody called twice, nobody active in two clinics."""
    patients = [await patient(db, f"5{i:07d}") for i in range(200)]
    entered = asyncio.Event()
    done_entering = 0
    called: list[int] = []

    async def enter(who):
        nonlocal done_entering
        result = await run(db, who, "queue.enter", {"clinic": "lab"})
        done_entering += 1
        if done_entering == len(patients):
            entered.set()
        return result["number"]

    async def call_done_loop():
        while True:
            try:
                result = await run(db, staff("lab"), "queue.call", {"clinic": "lab"})
            except errors.Empty:
                if entered.is_set():
                    return
                await asyncio.sleep(0)
                continue
            number = result["called"]["number"]
            called.append(number)
            await run(db, staff("lab"), "queue.done", {"clinic": "lab", "number": number})

    results = await asyncio.gather(*(enter(p) for p in patients),
                                   *(call_done_loop() for _ in range(4)))
    numbers = results[: len(patients)]
    assert sorted(numbers) == list(range(1, 201))
    assert sorted(called) == list(range(1, 201))

    async with db.pool.acquire() as conn:
        calls_per_entry = await conn.fetch(
            """SELECT queue_number, count(*) AS n FROM events
                WHERE event_type = 'CALLED' AND clinic_code = 'lab'
                GROUP BY queue_number HAVING count(*) > 1""")
        assert calls_per_entry == []
        multi_active = await conn.fetchval(
            """SELECT count(*) FROM (SELECT patient_id FROM queues
                WHERE status IN ('WAITING', 'CALLED', 'IN_PROGRESS')
                GROUP BY patient_id HAVING count(*) > 1) x""")
        assert multi_active == 0
        statuses = await conn.fetch("SELECT DISTINCT status FROM queues")
        assert [r["status"] for r in statuses] == ["COMPLETED"]


async def test_two_staff_calling_at_once_call_two_different_people(db):
    """Concurrent calls on one clinic never hand out the same entry."""
    for i in range(20):
        await run(db, await patient(db, f"6{i:07d}"), "queue.enter", {"clinic": "eyes"})
    results = await asyncio.gather(
        *(run(db, ADMIN, "queue.call", {"clinic": "eyes"}) for _ in range(20)))
    assert sorted(r["called"]["number"] for r in results) == list(range(1, 21))


async def test_route_create_twice_at_once_gives_one_route_and_one_entry(db):
    """Two phones of one patient creating the route together get the same route."""
    who = await patient(db, "70000001")
    first, second = await asyncio.gather(
        run(db, who, "route.create", {"exam_type": "cooks"}),
        run(db, who, "route.create", {"exam_type": "cooks"}))
    assert first["route_id"] == second["route_id"]
    assert sorted([first["created"], second["created"]]) == [False, True]
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM queues") == 1


async def test_concurrent_advances_into_one_clinic_get_distinct_numbers(db):
    """Patients finishing lab at the same time and routed to one clinic get distinct
    numbers there (the counter row, not MAX+1)."""
    people = [await patient(db, f"71{i:06d}") for i in range(12)]
    for who in people:
        await run(db, who, "route.create", {"exam_type": "cooks"})
    for _ in people:
        await run(db, ADMIN, "queue.call", {"clinic": "lab"})
    numbers = [n["number"] for n in await asyncio.gather(
        *(run(db, ADMIN, "queue.done", {"clinic": "lab", "number": i + 1})
          for i in range(len(people))))]
    assert sorted(numbers) == list(range(1, 13))
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT clinic_code, queue_number FROM queues WHERE status = 'WAITING'""")
    per_clinic: dict[str, list[int]] = {}
    for row in rows:
        per_clinic.setdefault(row["clinic_code"], []).append(row["queue_number"])
    assert len(rows) == 12
    for clinic_numbers in per_clinic.values():
        assert sorted(clinic_numbers) == list(range(1, len(clinic_numbers) + 1))
