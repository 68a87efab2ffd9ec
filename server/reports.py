"""The committee's reports (daily, weekly, monthly, annual): fetched through schema/006's
SQL, which builds them from queues and routes rows, and rendered as JSON or CSV.

Every transport is a thin adapter: `report.get` over WebSocket, `/api/v1/reports-<type>`
over HTTP and `python -m server report` all call `fetch` (or `fetch_on`) and, for CSV,
`render_csv`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from server import errors
from server.db import Conn, Database, translate

Report = dict[str, Any]

REPORT_TYPES = ("daily", "weekly", "monthly", "annual")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# One rectangular table: a row per (section, name), a column per figure; a figure
# that does not apply to a section is left empty.
QUEUE_FIGURES = (
    "entered", "served", "no_show", "cancelled", "unfinished", "called",
    "wait_mean_seconds", "wait_median_seconds", "wait_p90_seconds", "wait_max_seconds",
    "service_mean_seconds", "service_p90_seconds", "served_per_hour", "sla_breaches",
    "eta_quoted", "eta_mean_abs_error_minutes", "eta_mean_error_minutes",
)
ROUTE_FIGURES = ("started", "completed", "door_to_door_mean_seconds",
                 "door_to_door_p90_seconds")
CSV_COLUMNS = ("report_type", "report_date", "section", "name",
               *QUEUE_FIGURES, *ROUTE_FIGURES)


def parse_type(value: Any) -> str:
    if value not in REPORT_TYPES:
        raise errors.BadRequest("type must be daily, weekly, monthly or annual")
    return str(value)


def parse_date(value: Any) -> date:
    """An ISO date, YYYY-MM-DD: any day of the period wanted."""
    if isinstance(value, date):
        return value
    if value is None:
        raise errors.BadRequest("date is required")
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        raise errors.BadRequest("date must be YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise errors.BadRequest("date must be a real calendar day") from None


async def fetch_on(conn: Conn, report_type: Any, day: Any, now: datetime) -> Report:
    """The report of the period of `report_type` holding `day`, on a connection of
    the caller's. A closed period's report is stored on first ask
    and read back ever after; the open period's is built afresh and not stored."""
    kind, when = parse_type(report_type), parse_date(day)
    try:
        report: Report = await conn.fetchval("SELECT mmc_report_get($1, $2, $3)",
                                             kind, when, now)
    except Exception as exc:
        raise translate(exc) from exc
    return report


async def fetch(db: Database, report_type: Any, day: Any) -> Report:
    """`fetch_on` in one transaction of the pool, at the database's clock."""
    kind, when = parse_type(report_type), parse_date(day)
    async with db.transaction() as conn:
        return await fetch_on(conn, kind, when, db.now())


def csv_filename(report: Mapping[str, Any]) -> str:
    return f"report-{report['type']}-{report['date']}.csv"


def _rows(report: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    yield "total", "", report["total"]
    for clinic in report["clinics"]:
        yield "clinic", clinic["clinic"], clinic
    yield "routes", "", report["routes"]["total"]
    for route in report["routes"]["by_exam"]:
        yield "route", f"{route['exam_type']}/{route['gender']}", route
    for hour in report["hours"]:
        yield "hour", f"{hour['hour']:02d}", hour
    for day in report["days"]:
        yield "day", day["date"], day
    if report["busiest_hour"] is not None:
        yield "busiest_hour", f"{report['busiest_hour']['hour']:02d}", report["busiest_hour"]
    if report["busiest_day"] is not None:
        yield "busiest_day", report["busiest_day"]["date"], report["busiest_day"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float.
        return repr(value)
    return str(value)


def render_csv(report: Mapping[str, Any]) -> str:
    """The report as CSV (RFC 4180): header row, then one row per section and name."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for section, name, figures in _rows(report):
        writer.writerow([report["type"], report["date"], section, name,
                         *(_cell(figures.get(column)) for column in CSV_COLUMNS[4:])])
    return out.getvalue()
