"""Reports: a simulated day of ~300 examinees, every figure checked against an
independent computation from the raw rows; weeks, months and years aggregate the days;
stored once per closed period; CSV and the command line give the same numbers."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from server import errors, reports
from server.clock import ManualClock
from server.db import Database
from server.scheduler import Scheduler
from tests.people import ADMIN, patient, run, staff
from tests.simulation import Day, Simulation

LOCAL = ZoneInfo("Asia/Qatar")
# Thursday of the week before, the Saturday that starts the week, the big Sunday and
# the Friday that ends the week: two months, two weeks, one year.
DAYS = (Day(date(2026, 2, 26), 40, 11, 30000000), Day(date(2026, 2, 28), 40, 12, 31000000),
        Day(date(2026, 3, 1), 300, 13, 32000000), Day(date(2026, 3, 6), 40, 14, 33000000))
BIG_DAY = DAYS[2].day
AFTERWARDS = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)  # March has closed, 2026 has not


@dataclass
class Simulated:
    dsn: str
    db: Database
    clock: ManualClock
    queues: list[Any]
    routes: list[Any]
    clinics: list[Any]
    templates: list[Any]


@pytest.fixture(scope="module")
async def simulated(template) -> AsyncIterator[Simulated]:
    """The four simulated days, run once for the module's tests to read."""
    name = await template.create_database()
    dsn = template.dsn(name)
    clock = ManualClock(datetime(2026, 2, 26, 4, 0, tzinfo=UTC))
    db = await Database.connect(dsn, clock=clock, min_size=1, max_size=4)
    scheduler = Scheduler(dsn, clock=clock)
    try:
        async with db.pool.acquire() as conn:
            # Rooms enough for a day of 300 (an admin's clinic settings).
            await conn.execute("""UPDATE clinics SET call_interval = 90, capacity = CASE code
                                  WHEN 'lab' THEN 6 WHEN 'xray' THEN 4 ELSE 3 END""")
        simulation = Simulation(db, clock, scheduler)
        for day in DAYS:
            await simulation.run_day(day)
        clock.set(AFTERWARDS)
        await scheduler.tick()
        async with db.pool.acquire() as conn:
            yield Simulated(
                dsn, db, clock,
                await conn.fetch("SELECT * FROM queues"),
                await conn.fetch("SELECT * FROM routes"),
                await conn.fetch("SELECT * FROM clinics ORDER BY sort_order, code"),
                await conn.fetch("SELECT exam_type, gender FROM route_templates"))
    finally:
        await scheduler.close()
        await db.close()
        await template.drop_database(name)


# --- the independent computation ---------------------------------------------------------

def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (what percentile_cont does)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def queue_figures(rows: list[Any], target: int) -> dict[str, Any]:
    called = [r for r in rows if r["called_at"] is not None]
    waits = [seconds(r["called_at"], r["entered_at"]) for r in called]
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    services = [seconds(r["completed_at"], r["called_at"]) for r in completed]
    eta_errors = [seconds(r["called_at"], r["entered_at"]) / 60 - float(r["eta_minutes"])
                  for r in called if r["eta_minutes"] is not None]
    open_seconds = 0.0
    for day in {r["day"] for r in completed}:
        that_day = [r for r in completed if r["day"] == day]
        open_seconds += seconds(max(r["completed_at"] for r in that_day),
                                min(r["called_at"] for r in that_day))
    count = lambda *states: sum(r["status"] in states for r in rows)  # noqa: E731
    return {
        "entered": len(rows), "served": len(completed), "no_show": count("NO_SHOW"),
        "cancelled": count("CANCELLED"),
        "unfinished": count("WAITING", "CALLED", "IN_PROGRESS"), "called": len(called),
        "wait_mean_seconds": mean(waits), "wait_median_seconds": percentile(waits, 0.5),
        "wait_p90_seconds": percentile(waits, 0.9), "wait_max_seconds": max(waits, default=None),
        "service_mean_seconds": mean(services),
        "service_p90_seconds": percentile(services, 0.9),
        "served_per_hour": len(completed) * 3600 / open_seconds if open_seconds else None,
        "sla_breaches": sum(w > target for w in waits), "eta_quoted": len(eta_errors),
        "eta_mean_abs_error_minutes": mean([abs(e) for e in eta_errors]),
        "eta_mean_error_minutes": mean(eta_errors),
    }


def route_figures(rows: list[Any]) -> dict[str, Any]:
    done = [seconds(r["completed_at"], r["started_at"]) for r in rows
            if r["status"] == "completed"]
    return {"started": len(rows), "completed": len(done),
            "door_to_door_mean_seconds": mean(done),
            "door_to_door_p90_seconds": percentile(done, 0.9)}


def expected_report(sim: Simulated, start: date, end: date) -> dict[str, Any]:
    """Every figure of the report for local days [start, end], from raw rows."""
    queues = [r for r in sim.queues if start <= r["day"] <= end]
    routes = [r for r in sim.routes if start <= r["day"] <= end]
    hour = lambda at: at.astimezone(LOCAL).hour  # noqa: E731
    hours = [{"hour": h, "entered": sum(hour(r["entered_at"]) == h for r in queues),
              "served": sum(r["status"] == "COMPLETED" and hour(r["completed_at"]) == h
                            for r in queues)} for h in range(24)]
    days = []
    for n in range((end - start).days + 1):
        d = start + timedelta(days=n)
        days.append({"date": d.isoformat(), "entered": sum(r["day"] == d for r in queues),
                     "served": sum(r["day"] == d and r["status"] == "COMPLETED"
                                   for r in queues),
                     "started": sum(r["day"] == d for r in routes)})
    kinds = {(t["exam_type"], t["gender"]) for t in sim.templates} | {
        (r["exam_type"], r["gender"]) for r in routes}

    def busiest(items: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
        best = max(items, key=lambda x: (x["entered"], -items.index(x)))
        return {key: best[key], "entered": best["entered"]} if best["entered"] else None

    return {
        "start": start.isoformat(), "end": end.isoformat(),
        "total": queue_figures(queues, 1800),
        "clinics": [{"clinic": c["code"], **queue_figures(
            [r for r in queues if r["clinic_code"] == c["code"]], 1800)} for c in sim.clinics],
        "routes": {"total": route_figures(routes), "by_exam": [
            {"exam_type": e, "gender": g, **route_figures(
                [r for r in routes if (r["exam_type"], r["gender"]) == (e, g)])}
            for e, g in sorted(kinds)]},
        "hours": hours, "days": days,
        "busiest_hour": busiest(hours, "hour"), "busiest_day": busiest(days, "date"),
    }


def assert_same(actual: Any, expected: Any, where: str = "report") -> None:
    """Equal, floats to within rounding of the summation order."""
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing"
            assert_same(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{n}]")
    elif isinstance(expected, float):
        assert isinstance(actual, int | float), where
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), \
            f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


async def report(sim: Simulated, kind: str, day: date) -> dict[str, Any]:
    return await run(sim.db, ADMIN, "report.get", {"type": kind, "date": day.isoformat()})


# --- the simulated days ------------------------------------------------------------------

async def test_the_simulation_covers_every_exam_gender_and_outcome(simulated):
    """About 300 examinees on the big day, all exam types with both genders, and every
    outcome a report counts."""
    big = [r for r in simulated.routes if r["day"] == BIG_DAY]
    assert len(big) == 300
    assert {(r["exam_type"], r["gender"]) for r in big} == {
        (t["exam_type"], t["gender"]) for t in simulated.templates}
    statuses = {r["status"] for r in simulated.queues if r["day"] == BIG_DAY}
    assert statuses >= {"COMPLETED", "NO_SHOW", "CANCELLED"}
    # Routes still open at the day's end are cancelled by the next day's close_days.
    assert {r["status"] for r in big} >= {"completed", "cancelled"}
    waits = [r for r in simulated.queues if r["called_at"] and r["day"] == BIG_DAY
             and seconds(r["called_at"], r["entered_at"]) > 1800]
    assert waits, "some waits breach the SLA"


async def test_daily_report_equals_an_independent_computation(simulated):
    """Every figure of the big day's report, recomputed in Python from the rows."""
    actual = await report(simulated, "daily", BIG_DAY)
    assert (actual["type"], actual["date"], actual["closed"]) == ("daily", "2026-03-01", True)
    assert_same(actual, expected_report(simulated, BIG_DAY, BIG_DAY))
    assert len(actual["clinics"]) == 16


@pytest.mark.parametrize(("kind", "day", "start", "end"), [
    ("weekly", date(2026, 3, 4), date(2026, 2, 28), date(2026, 3, 6)),
    ("weekly", date(2026, 2, 27), date(2026, 2, 21), date(2026, 2, 27)),
    ("monthly", date(2026, 2, 14), date(2026, 2, 1), date(2026, 2, 28)),
    ("monthly", date(2026, 3, 31), date(2026, 3, 1), date(2026, 3, 31)),
    ("annual", date(2026, 7, 1), date(2026, 1, 1), date(2026, 12, 31)),
])
async def test_longer_periods_aggregate_their_days(simulated, kind, day, start, end):
    """Saturday-Friday weeks, months, the year: the figures over all their rows, the
    counts the sums of the daily reports', the maximum the largest day's."""
    actual = await report(simulated, kind, day)
    assert (actual["date"], actual["start"], actual["end"]) == (
        start.isoformat(), start.isoformat(), end.isoformat())
    assert_same(actual, expected_report(simulated, start, end))
    dailies = [await report(simulated, "daily", d) for d in {r["day"] for r in simulated.routes}
               if start <= d <= end]
    assert dailies
    for key in ("entered", "served", "no_show", "cancelled", "called", "sla_breaches"):
        assert actual["total"][key] == sum(d["total"][key] for d in dailies), key
    assert actual["total"]["wait_max_seconds"] == max(
        d["total"]["wait_max_seconds"] for d in dailies)
    assert actual["routes"]["total"]["completed"] == sum(
        d["routes"]["total"]["completed"] for d in dailies)
    by_day = {d["date"]: d["days"][0] for d in dailies}
    assert [x for x in actual["days"] if x["entered"]] == [by_day[k] for k in sorted(by_day)]


async def test_closed_periods_are_stored_once_and_the_open_one_is_not(simulated):
    """After the simulation the scheduler has stored every closed period it saw;
    the year 2026, still open, is built on demand and never stored."""
    async with simulated.db.pool.acquire() as conn:
        stored = {(r["report_type"], r["report_date"]) for r in await conn.fetch(
            "SELECT report_type, report_date FROM reports")}
    assert {("daily", d.day) for d in DAYS} <= stored
    assert {("weekly", date(2026, 2, 21)), ("weekly", date(2026, 2, 28)),
            ("monthly", date(2026, 2, 1)), ("monthly", date(2026, 3, 1))} <= stored
    assert not any(kind == "annual" for kind, _ in stored)
    annual = await report(simulated, "annual", date(2026, 1, 1))
    assert annual["closed"] is False


async def test_csv_parses_back_to_the_same_numbers(simulated):
    """Every cell of the CSV reads back as the report's number, exactly."""
    actual = await report(simulated, "weekly", BIG_DAY)
    rows = list(csv.DictReader(io.StringIO(reports.render_csv(actual))))
    assert tuple(rows[0]) == reports.CSV_COLUMNS
    by_key = {(r["section"], r["name"]): r for r in rows}
    expected = [(("total", ""), actual["total"]), (("routes", ""), actual["routes"]["total"])]
    expected += [(("clinic", c["clinic"]), c) for c in actual["clinics"]]
    expected += [(("route", f"{r['exam_type']}/{r['gender']}"), r)
                 for r in actual["routes"]["by_exam"]]
    expected += [(("hour", f"{h['hour']:02d}"), h) for h in actual["hours"]]
    expected += [(("day", d["date"]), d) for d in actual["days"]]
    expected += [(("busiest_hour", f"{actual['busiest_hour']['hour']:02d}"),
                  actual["busiest_hour"]),
                 (("busiest_day", actual["busiest_day"]["date"]), actual["busiest_day"])]
    assert len(rows) == len(expected)
    for key, figures in expected:
        row = by_key[key]
        assert (row["report_type"], row["report_date"]) == ("weekly", "2026-02-28")
        for column in reports.CSV_COLUMNS[4:]:
            value = figures.get(column)
            cell = row[column]
            if value is None:
                assert cell == "", (key, column)
            elif isinstance(value, int):
                assert int(cell) == value, (key, column)
            else:
                assert float(cell) == value, (key, column)


async def test_command_line_prints_the_stored_report_as_json_and_csv(simulated):
    """`python -m server report daily --date D [--csv]` gives the stored report."""
    env = {**os.environ, "DATABASE_URL": simulated.dsn, "LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "server", "report", "daily", "--date", "2026-03-01"]

    def output(*extra: str) -> str:
        # Bytes: the CSV's CRLF line ends must arrive as written.
        return subprocess.run([*command, *extra], env=env, capture_output=True,
                              timeout=60, check=True).stdout.decode()

    as_json, as_csv = await asyncio.gather(asyncio.to_thread(output),
                                           asyncio.to_thread(output, "--csv"))
    async with simulated.db.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT data FROM reports WHERE report_type = 'daily' AND report_date = $1", BIG_DAY)
    assert orjson.loads(as_json) == stored
    assert as_csv == reports.render_csv(stored)


# --- storing, on a small database of its own ---------------------------------------------

async def serve_one(db, pid: str) -> None:
    who = await patient(db, pid)
    await run(db, who, "queue.enter", {"clinic": "vitals"})
    await run(db, staff("vitals"), "queue.call")
    await run(db, staff("vitals"), "queue.done")


async def stored_reports(db) -> set[tuple[str, date]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT report_type, report_date FROM reports")
    return {(r["report_type"], r["report_date"]) for r in rows}


async def test_a_closed_day_is_stored_once_and_later_changes_do_not_alter_it(db, clock):
    """Asked during the day: built, not stored. Asked after: stored once (also when two
    ask at once), and read back unchanged even if a row changes afterwards."""
    await serve_one(db, "60000001")
    today = await run(db, ADMIN, "report.get", {"type": "daily", "date": "2026-03-01"})
    assert (today["date"], today["closed"], today["total"]["served"]) == ("2026-03-01", False, 1)
    assert await stored_reports(db) == set()
    clock.advance(24 * 3600)
    first, second = await asyncio.gather(*(
        run(db, ADMIN, "report.get", {"type": "daily", "date": "2026-03-01"})
        for _ in range(2)))
    assert first == second and first["closed"] is True
    assert await stored_reports(db) == {("daily", date(2026, 3, 1))}
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE queues SET status = 'CANCELLED'")
    again = await run(db, ADMIN, "report.get", {"type": "daily", "date": "2026-03-01"})
    assert again == first


async def test_the_reports_job_stores_each_period_after_it_closes(db, dsn, clock):
    """Sunday's daily report the next morning; the week's on Saturday, with the days
    between; nothing before the first day with data."""
    scheduler = Scheduler(dsn, clock=clock)
    try:
        await serve_one(db, "60000002")
        assert (await scheduler.tick())["reports"] == 0
        clock.set(datetime(2026, 3, 2, 5, 0, tzinfo=UTC))
        assert (await scheduler.tick())["reports"] == 1
        assert await stored_reports(db) == {("daily", date(2026, 3, 1))}
        clock.set(datetime(2026, 3, 7, 5, 0, tzinfo=UTC))
        assert (await scheduler.tick())["reports"] == 6
        assert await stored_reports(db) == {
            ("daily", date(2026, 3, d)) for d in range(1, 7)} | {("weekly", date(2026, 2, 28))}
        clock.advance(60)
        assert (await scheduler.tick())["reports"] == 0
    finally:
        await scheduler.close()


async def test_report_get_is_for_admins_with_a_valid_type_and_date(db):
    """Staff and patients are refused; a bad type, a malformed date or a period not
    yet begun is a bad request."""
    who = await patient(db, "60000003")
    for principal, error in ((staff("eyes"), errors.Forbidden), (who, errors.Forbidden)):
        with pytest.raises(error):
            await run(db, principal, "report.get", {"type": "daily", "date": "2026-03-01"})
    for args in ({"type": "hourly"}, {"type": "daily", "date": "01/03/2026"},
                 {"type": "daily", "date": "2026-02-30"}, {"type": "daily", "date": 20260301},
                 {"type": "daily", "date": "2026-03-02"}, {"type": "daily"}, {}):
        with pytest.raises(errors.BadRequest):
            await run(db, ADMIN, "report.get", args)
