"""A simulated day at the committee: seeded random examinees of every exam type and
gender walk their routes through server.commands, the scheduler ticking on the clock."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.auth import Principal
from server.clock import ManualClock
from server.db import Database
from server.scheduler import Scheduler
from tests.people import ADMIN, patient, run, staff

LOCAL = ZoneInfo("Asia/Qatar")
EXAM_TYPES = ("recruitment", "promotion", "transfer", "referral", "contract", "aviation",
              "cooks", "courses")
GENDERS = ("male", "female")
STEP = 30  # clock seconds between two looks at the rooms
OPENS, ARRIVALS_END, CLOSES = time(7, 0), time(10, 30), time(15, 30)

ACTIVE_SQL = """
    SELECT q.id, q.clinic_code, q.queue_number, q.patient_id, q.status, q.called_at,
           q.started_at, c.requires_pin
      FROM queues q JOIN clinics c ON c.code = q.clinic_code
     WHERE q.day = $1 AND q.status IN ('CALLED', 'IN_PROGRESS')
     ORDER BY q.clinic_code, q.queue_number"""
ROOM_FREE_SQL = """
    SELECT c.code FROM clinics c
     WHERE EXISTS (SELECT 1 FROM queues q WHERE q.clinic_code = c.code AND q.day = $1
                     AND q.status = 'WAITING')
       AND (SELECT count(*) FROM queues q WHERE q.clinic_code = c.code AND q.day = $1
              AND q.status IN ('CALLED', 'IN_PROGRESS')) < c.capacity
     ORDER BY c.code"""
STALLED_SQL = """
    SELECT r.patient_id FROM routes r
     WHERE r.day = $1 AND r.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.patient_id = r.patient_id
                         AND q.status IN ('WAITING', 'CALLED', 'IN_PROGRESS'))
     ORDER BY r.patient_id"""


def local(day: date, at: time) -> datetime:
    return datetime.combine(day, at, LOCAL).astimezone(UTC)


@dataclass
class Step:
    """What happens next to one entry in a room, and when."""

    action: str  # start, done, pin, skip, no_show, ignore
    at: datetime


@dataclass
class Day:
    day: date
    patients: int
    seed: int
    first_id: int


class Simulation:
    """Drives one Database through whole days; everything goes through commands."""

    def __init__(self, db: Database, clock: ManualClock, scheduler: Scheduler) -> None:
        self.db, self.clock, self.scheduler = db, clock, scheduler
        # Examinees who walk out mid-route: their calls time out until cancelled.
        self.leaves: dict[str, datetime] = {}

    async def run_day(self, spec: Day) -> None:
        rng = random.Random(spec.seed)
        combos = list(itertools.product(EXAM_TYPES, GENDERS))
        people = []
        for n in range(spec.patients):
            # Every exam type with both genders first, then about two men to a woman.
            exam, gender = combos[n] if n < len(combos) else (
                rng.choice(EXAM_TYPES), "female" if rng.random() < 0.35 else "male")
            arrives = local(spec.day, OPENS) + timedelta(seconds=rng.uniform(
                0, (local(spec.day, ARRIVALS_END) - local(spec.day, OPENS)).total_seconds()))
            people.append((arrives, str(spec.first_id + n), gender, exam))
            if rng.random() < 0.03:
                self.leaves[people[-1][1]] = arrives + timedelta(hours=rng.uniform(0.5, 3))
        people.sort()
        self.clock.set(local(spec.day, OPENS))
        await self.scheduler.tick()
        pins: dict[str, str] = (await run(self.db, ADMIN, "pin.current"))["pins"]
        principals: dict[str, Principal] = {}
        steps: dict[tuple[Any, ...], Step] = {}
        rejoin: dict[str, datetime | None] = {}
        closes = local(spec.day, CLOSES)
        while self.clock.now() < closes:
            now = self.clock.now()
            while people and people[0][0] <= now:
                _, pid, gender, exam = people.pop(0)
                principals[pid] = who = await patient(self.db, pid, gender)
                await run(self.db, who, "route.create", {"exam_type": exam})
            async with self.db.pool.acquire() as conn:
                active = await conn.fetch(ACTIVE_SQL, spec.day)
                free = await conn.fetch(ROOM_FREE_SQL, spec.day)
                stalled = await conn.fetch(STALLED_SQL, spec.day)
            for row in active:
                key = (row["id"], row["status"], row["called_at"], row["started_at"])
                step = steps.setdefault(key, self._plan(rng, row))
                if row["patient_id"] in self.leaves and self.leaves[row["patient_id"]] <= now:
                    step = Step("ignore", now)
                if step.at <= now:
                    await self._act(row, step, principals, pins)
            for row in free:
                if rng.random() < 0.3:  # otherwise auto-call gets there in time
                    await run(self.db, staff(row["code"]), "queue.call")
            for row in stalled:
                pid = row["patient_id"]
                if pid not in rejoin:  # after a no-show or cancellation, half come back
                    back = rng.random() < 0.5 and pid not in self.leaves
                    rejoin[pid] = now + timedelta(minutes=5) if back else None
                when = rejoin[pid]
                if when is not None and when <= now:
                    rejoin[pid] = None
                    await run(self.db, principals[pid], "path.choose")
            await self.scheduler.tick()
            if not people and not active and not free and all(
                    when is None for when in rejoin.values()):
                break
            self.clock.advance(STEP)

    @staticmethod
    def _plan(rng: random.Random, row: Any) -> Step:
        def after(low: float, high: float) -> datetime:
            base = row["started_at"] or row["called_at"]
            return base + timedelta(seconds=round(rng.uniform(low, high)))

        if row["status"] == "IN_PROGRESS":
            pin = row["requires_pin"] and rng.random() < 0.5
            return Step("pin" if pin else "done", after(60, 300))
        r = rng.random()
        if r < 0.04:
            return Step("ignore", after(0, 0))  # never comes: the scheduler times it out
        if r < 0.07:
            return Step("no_show", after(150, 180))
        if r < 0.09:
            return Step("skip", after(30, 90))
        if r < 0.15:
            return Step("pin" if row["requires_pin"] else "done", after(60, 240))
        return Step("start", after(10, 120))

    async def _act(self, row: Any, step: Step, principals: dict[str, Principal],
                   pins: dict[str, str]) -> None:
        clinic, number = row["clinic_code"], row["queue_number"]
        if step.action == "ignore":
            return
        if step.action == "pin":
            await run(self.db, principals[row["patient_id"]], "pin.submit",
                      {"clinic": clinic, "pin": pins[clinic]})
            return
        await run(self.db, staff(clinic), f"queue.{step.action}",
                  {"clinic": clinic, "number": number})
