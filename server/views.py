"""What each audience may see: event rows turned into per-channel frame data, the
snapshots and the replay read from SQL (schema/004), and the per-process cache of
snapshots under the migration plan's keys (`queue:status:<clinic>`, `stats:dashboard`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from server import errors, protocol
from server.db import Database
from server.protocol import Channel

EVENT_COLUMNS = "id, event_type, clinic_code, patient_id, queue_number, data, created_at"

# What survives into a staff frame's data (a display's carries only the number).
STAFF_KEYS = ("number", "is_paused", "reason", "postpone_count", "by", "day")

# A cached snapshot is trusted this long even without an invalidation: the local day
# can turn over without any event.
CACHE_TTL = timedelta(seconds=60)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    type: str
    clinic: str | None
    patient: str | None
    number: int | None
    data: dict[str, Any]
    at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> EventRow:
        data = r["data"] if isinstance(r["data"], dict) else {}
        return cls(r["id"], r["event_type"], r["clinic_code"], r["patient_id"],
                   r["queue_number"], data, r["created_at"])

    @classmethod
    def from_notify(cls, payload: object) -> EventRow | None:
        """The event carried by an events NOTIFY (schema/010); None when the payload
        holds the ids only (the event was too large for NOTIFY) or is not one."""
        if not isinstance(payload, str):
            return None
        try:
            n = orjson.loads(payload)
            at = EPOCH + timedelta(microseconds=n["at_us"])
            data = n["data"] if isinstance(n["data"], dict) else {}
            return cls(int(n["id"]), n["type"], n["clinic"], n["patient"], n["number"],
                       data, at)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


DataBuilder = Callable[[EventRow], dict[str, Any]]


def mask_patient_id(patient_id: str) -> str:
    """What staff see of an ID (as mmc_mask_patient in schema/013): at most the last
    four digits, and at least four always hidden, so a short ID shows fewer."""
    shown = min(4, max(0, len(patient_id) - 4))
    return "*" * (len(patient_id) - shown) + (patient_id[-shown:] if shown else "")


def public_data(row: EventRow) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if row.number is not None:
        data["number"] = row.number
    if "is_paused" in row.data:
        data["is_paused"] = row.data["is_paused"]
    return data


def staff_data(row: EventRow) -> dict[str, Any]:
    data = {k: row.data[k] for k in STAFF_KEYS if k in row.data}
    if row.number is not None:
        data["number"] = row.number
    if row.patient is not None:
        data["patient"] = mask_patient_id(row.patient)
    return data


def own_data(row: EventRow) -> dict[str, Any]:
    """A patient's own event: everything it holds, and where."""
    return {**row.data, "clinic": row.data.get("clinic", row.clinic),
            "number": row.data.get("number", row.number)}


def admin_data(row: EventRow) -> dict[str, Any]:
    return {**own_data(row), "patient": row.patient}


def audiences(row: EventRow) -> Iterator[tuple[str, str, DataBuilder]]:
    """(channel key, channel name, data builder) for everyone this event goes to."""
    if row.clinic is not None:
        if row.type in protocol.PUBLIC_EVENTS:
            name = f"clinic:{row.clinic}"
            yield name, name, public_data
        if row.type in protocol.STAFF_EVENTS:
            name = f"clinic:{row.clinic}:staff"
            yield name, name, staff_data
    if row.patient is not None:
        yield f"me:{row.patient}", "me", own_data
    yield "admin", "admin", admin_data


def frame_for(channel: Channel, row: EventRow) -> str | None:
    """The frame `channel` gets for `row`, or None when the event is not for it."""
    for key, name, build in audiences(row):
        if key == channel.key:
            return protocol.event(name, row.id, row.type, build(row), row.at)
    return None


def invalidations(row: EventRow) -> Iterator[tuple[str, str]]:
    """(channel key, cache key) pairs this event makes stale."""
    if row.type == "PIN_ROTATED" and row.clinic is not None:
        yield f"clinic:{row.clinic}:staff", "pins:current"
        yield "admin", "pins:current"
    elif row.clinic is not None:
        yield from queue_invalidations(row.clinic)
    if row.type in protocol.ROUTE_EVENTS and row.patient and row.data.get("route_id"):
        yield f"me:{row.patient}", f"route:{row.data['route_id']}"
    if row.type == "CACHE_INVALIDATED":
        for key in row.data.get("keys") or ():
            if isinstance(key, str):
                yield "admin", key


def queue_invalidations(clinic: str) -> Iterator[tuple[str, str]]:
    """(channel key, cache key) pairs a change of a queue row makes stale."""
    status = f"queue:status:{clinic}"
    yield f"clinic:{clinic}", status
    yield f"clinic:{clinic}:staff", status
    yield "admin", status
    yield "admin", "stats:dashboard"


@dataclass
class _Entry:
    value: tuple[int, Any]
    stored_at: datetime


@dataclass
class ViewCache:
    """Snapshots by cache key. A value is stored only if its key was not invalidated
    while it was being computed, so a stale snapshot never outlives its NOTIFY.

    A generation is a tick of one counter: `drop` stamps the key with a new tick, and a
    value computed from tick g is kept only if its key was not stamped after g. The
    stamps are bounded (`max_stamps`; a day's route keys would otherwise pile up): when
    they overflow they are forgotten and every computation begun before is refused."""

    max_stamps: int = 4096
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _stamps: dict[str, int] = field(default_factory=dict)
    _tick: int = 0
    _floor: int = 0

    def generation(self, key: str) -> int:
        return self._tick

    def get(self, key: str, variant: str, now: datetime) -> tuple[int, Any] | None:
        entry = self._entries.get((key, variant))
        if entry is None or now - entry.stored_at > CACHE_TTL or now < entry.stored_at:
            return None
        return entry.value

    def store(self, key: str, variant: str, generation: int, value: tuple[int, Any],
              now: datetime) -> None:
        if generation >= self._floor and self._stamps.get(key, -1) <= generation:
            self._entries[(key, variant)] = _Entry(value, now)

    def drop(self, key: str) -> None:
        self._tick += 1
        if key not in self._stamps and len(self._stamps) >= self.max_stamps:
            self._stamps.clear()
            self._floor = self._tick
        self._stamps[key] = self._tick
        for entry_key in [k for k in self._entries if k[0] == key]:
            del self._entries[entry_key]

    def clear(self) -> None:
        self._tick += 1
        self._floor = self._tick
        self._stamps.clear()
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._stamps)


def cache_key(channel: Channel) -> str | None:
    if channel.kind in ("clinic", "staff"):
        return f"queue:status:{channel.clinic}"
    if channel.kind == "admin":
        return "stats:dashboard"
    return None


@dataclass
class Replay:
    """Events of one channel after `since`, or `resumable` False when some of them
    were pruned (or `since` is not a seq this log has reached)."""

    resumable: bool
    rows: list[EventRow]
    head: int


class Views:
    """Snapshots, replays and positions, read through the pool."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cache = ViewCache()

    async def snapshot(self, channel: Channel) -> tuple[int, Any]:
        """(seq, state) of `channel`; the state reflects every event up to seq."""
        now = self.db.now()
        key = cache_key(channel)
        if key is not None:
            hit = self.cache.get(key, channel.kind, now)
            if hit is not None:
                return hit
        generation = self.cache.generation(key) if key is not None else 0
        if channel.kind == "admin":
            found = await self.db.call("SELECT mmc_snapshot_admin($1)", now)
        elif channel.kind == "me":
            found = await self.db.call("SELECT mmc_snapshot_me($1, $2)", channel.patient, now)
        else:
            sql = ("SELECT mmc_snapshot_clinic($1, $2)" if channel.kind == "clinic"
                   else "SELECT mmc_snapshot_staff($1, $2)")
            found = await self.db.call(sql, channel.clinic, now)
        if found is None:
            raise errors.NotFound("unknown clinic")
        value = (int(found["seq"]), found["state"])
        if key is not None:
            self.cache.store(key, channel.kind, generation, value, now)
        return value

    async def replay(self, channel: Channel, since: int, limit: int) -> Replay:
        """Up to `limit` events of `channel` after `since`, read in one snapshot with
        the watermark so a prune in between cannot open a gap."""
        clinic = channel.clinic if channel.kind in ("clinic", "staff") else None
        types = (sorted(protocol.PUBLIC_EVENTS) if channel.kind == "clinic"
                 else sorted(protocol.STAFF_EVENTS) if channel.kind == "staff" else None)
        async with self.db.transaction() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            marks = await conn.fetchrow(
                "SELECT pruned_through, mmc_head_seq() AS head FROM event_watermark")
            assert marks is not None
            head = int(marks["head"])
            if since < marks["pruned_through"] or since > head:
                return Replay(False, [], head)
            records = await conn.fetch(
                f"""SELECT {EVENT_COLUMNS} FROM events
                     WHERE id > $1 AND ($2::text IS NULL OR clinic_code = $2)
                       AND ($3::text IS NULL OR patient_id = $3)
                       AND ($4::text[] IS NULL OR event_type = ANY($4))
                     ORDER BY id LIMIT $5""",
                since, clinic, channel.patient, types, limit + 1)
        if len(records) > limit:
            return Replay(False, [], head)
        return Replay(True, [EventRow.from_record(r) for r in records], head)

    async def positions(self, clinic: str, patients: list[str] | None = None
                        ) -> dict[str, Any] | None:
        """Where `patients` (default: everyone) waiting or called at `clinic` today
        stand, with their `ahead`, at a seq; None for an unknown clinic."""
        found = await self.db.row("SELECT * FROM mmc_clinic_positions($1, $2, $3)",
                                  clinic, self.db.now(), patients)
        if found is None:
            return None
        columns = zip(found["patients"], found["numbers"], found["statuses"],
                      found["aheads"], found["etas"], strict=True)
        return {"seq": found["seq"], "clinic": found["clinic"], "name": found["name"],
                "name_ar": found["name_ar"], "floor": found["floor"],
                "near_ahead": found["near_ahead"],
                "positions": [{"patient": p, "number": n, "status": s, "ahead": a,
                               "eta_minutes": e} for p, n, s, a, e in columns]}
