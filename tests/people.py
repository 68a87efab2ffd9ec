"""The people of the tests: patients, staff and admins as principals, and the calls
they make through server.commands (the same entry point every transport uses)."""

from __future__ import annotations

from typing import Any

from server import commands
from server.auth import Principal
from server.db import Database

ADMIN = Principal("admin", "admin")
ANON = Principal("anonymous")

TABLES = ("admins", "patients", "sessions", "clinics", "queue_counters", "route_templates",
          "clinic_day_stats",
          "routes", "queues", "pins", "pin_attempts", "events", "settings", "reports",
          "rate_limits")


def staff(clinic: str) -> Principal:
    return Principal("staff", f"staff_{clinic}", clinic)


async def run(db: Database, who: Principal, op: str, args: Any = None) -> Any:
    return await commands.execute(db, who, op, args)


async def patient(db: Database, patient_id: str, gender: str = "male") -> Principal:
    result = await run(db, Principal("anonymous"), "patient.login",
                       {"patient_id": patient_id, "gender": gender})
    return commands.principal_from_login(result)


async def digest(db: Database) -> dict[str, str]:
    """A fingerprint of every table, to prove a refused command changed nothing."""
    out = {}
    async with db.pool.acquire() as conn:
        for table in TABLES:
            out[table] = await conn.fetchval(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t")
    return out


async def called_until(db: Database, clinic: str, who: Principal) -> dict[str, Any]:
    """Staff of `clinic` call until `who` is called; returns their status."""
    for _ in range(1000):
        status = await run(db, who, "queue.status")
        if status["status"] in ("CALLED", "IN_PROGRESS"):
            return status  # type: ignore[no-any-return]
        await run(db, ADMIN, "queue.call", {"clinic": clinic})
    raise AssertionError("patient never called")
