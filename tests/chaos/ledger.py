"""The ledger's other half, read from Postgres: which seqs each channel committed, set
against what every client accepted (lost, duplicated, out of order), the database's
invariants, and what the servers' log lines may never hold."""

from __future__ import annotations

import bisect
import itertools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

from server import protocol
from server.db import init_connection

# Ten digits or more standing alone (times are ISO). A request id is 16 hex digits,
# all of them decimal digits about once in 1,800 requests: its value is not scanned.
FULL_ID = re.compile(r"(?<![0-9A-Za-z])[0-9]{10,}(?![0-9A-Za-z])")
REQUEST_ID = re.compile(r'"request_id":\s*"[0-9a-f]*"')
PIN_FIELD = re.compile(r'"pins?"\s*:')


async def committed(dsn: str, keys: set[str], low: int, high: int
                    ) -> dict[str, tuple[list[int], list[int]]]:
    """Per channel key in `keys`: the ids in (low, high] filed under it, and their
    running sums (for a segment's expected count and sum in two bisects)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, event_type, clinic_code, patient_id FROM events "
            "WHERE id > $1 AND id <= $2 ORDER BY id", low, high)
    finally:
        await conn.close()
    ids: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        seq, kind, clinic, patient = row["id"], row["event_type"], row["clinic_code"], \
            row["patient_id"]
        if clinic is not None:
            if kind in protocol.PUBLIC_EVENTS:
                ids[f"clinic:{clinic}"].append(seq)
            if kind in protocol.STAFF_EVENTS:
                ids[f"clinic:{clinic}:staff"].append(seq)
        if patient is not None:
            ids[f"me:{patient}"].append(seq)
    return {k: (v, list(itertools.accumulate(v))) for k, v in ids.items() if k in keys}


async def compare(dsn: str, clients: list[dict[str, Any]]) -> dict[str, Any]:
    """Every client's segments against the log: totals and the worst clients."""
    keys = {c["key"] for c in clients}
    starts = [s[0] for c in clients for s in c["segments"]]
    lasts = [s[1] for c in clients for s in c["segments"]]
    log = await committed(dsn, keys, min(starts, default=0), max(lasts, default=0))
    total = {"clients": len(clients), "accepted": 0, "expected": 0, "lost": 0,
             "foreign": 0, "duplicates": 0, "out_of_order": 0, "resets": 0}
    worst: list[dict[str, Any]] = []
    for c in clients:
        ids, sums = log.get(c["key"], ([], []))
        lost = foreign = expected = accepted = 0
        for start, last, count, got_sum in c["segments"]:
            lo, hi = bisect.bisect_right(ids, start), bisect.bisect_right(ids, last)
            want = hi - lo
            want_sum = (sums[hi - 1] if hi else 0) - (sums[lo - 1] if lo else 0)
            expected += want
            accepted += count
            if count < want:
                lost += want - count
            elif count > want or got_sum != want_sum:
                # Seqs this channel never committed (or the same count, other seqs).
                foreign += max(1, count - want)
        total["accepted"] += accepted
        total["expected"] += expected
        total["lost"] += lost
        total["foreign"] += foreign
        for name in ("duplicates", "out_of_order", "resets"):
            total[name] += c[name]
        if lost or foreign or c["out_of_order"] or c["duplicates"] or c["resets"]:
            worst.append({"key": c["key"], "kind": c["kind"], "lost": lost,
                          "foreign": foreign, "duplicates": c["duplicates"],
                          "out_of_order": c["out_of_order"], "resets": c["resets"]})
    worst.sort(key=lambda w: -(w["lost"] + w["foreign"] + w["out_of_order"]))
    total["clients_with_findings"] = len(worst)
    total["examples"] = worst[:5]
    return total


INVARIANTS = {
    "duplicate_numbers": (
        "SELECT count(*) FROM (SELECT 1 FROM queues GROUP BY clinic_code, day, queue_number "
        "HAVING count(*) > 1) d"),
    "active_twice": (
        "SELECT count(*) FROM (SELECT 1 FROM queues WHERE status IN "
        "('WAITING', 'CALLED', 'IN_PROGRESS') GROUP BY patient_id HAVING count(*) > 1) d"),
    "routes_inconsistent": (
        "SELECT count(*) FROM queues q JOIN routes r ON r.id = q.route_id "
        "WHERE q.status IN ('WAITING', 'CALLED', 'IN_PROGRESS') AND (r.patient_id <> q.patient_id "
        "OR r.status <> 'active' OR r.current_clinic IS DISTINCT FROM q.clinic_code)"),
    "routes_active_without_entry_elsewhere": (
        # An active route's patient never waits in a clinic other than its current one.
        "SELECT count(*) FROM routes r JOIN queues q ON q.patient_id = r.patient_id "
        "AND q.day = r.day WHERE r.status = 'active' AND q.status IN "
        "('WAITING', 'CALLED', 'IN_PROGRESS') AND q.route_id = r.id "
        "AND q.clinic_code IS DISTINCT FROM r.current_clinic"),
}


async def invariants(dsn: str) -> dict[str, int]:
    """Each invariant's count of violating rows (all zero when they hold)."""
    conn = await asyncpg.connect(dsn)
    try:
        return {name: int(await conn.fetchval(sql)) for name, sql in INVARIANTS.items()}
    finally:
        await conn.close()


async def heads(dsn: str, keys: set[str], after: int) -> dict[str, int]:
    """The newest seq committed so far per channel key among `keys` (ids above `after`)."""
    conn = await asyncpg.connect(dsn)
    try:
        head = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM events"))
    finally:
        await conn.close()
    log = await committed(dsn, keys, after, head)
    return {k: v[0][-1] for k, v in log.items() if v[0]}


async def head(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM events"))
    finally:
        await conn.close()


class LogScan:
    """New lines of the servers' logs since the last scan: errors, and anything that
    looks like a full patient ID or a PIN."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.offsets = {p: 0 for p in paths}

    def scan(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lines": 0, "errors": 0, "full_ids": 0, "pins": 0,
                               "examples": []}
        for path in self.paths:
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.offsets[path])
                data = f.read()
                self.offsets[path] += len(data)
            for raw in data.decode(errors="replace").splitlines():
                out["lines"] += 1
                line = raw.strip()
                if '"level": "error"' in line or '"level":"error"' in line \
                        or line.startswith("Traceback"):
                    out["errors"] += 1
                    _example(out, path.name, line)
                if FULL_ID.search(REQUEST_ID.sub("", line)):
                    out["full_ids"] += 1
                    _example(out, path.name, line)
                if PIN_FIELD.search(line):
                    out["pins"] += 1
                    _example(out, path.name, line)
        return out


def _example(out: dict[str, Any], name: str, line: str) -> None:
    if len(out["examples"]) < 5:
        out["examples"].append(f"{name}: {line[:300]}")


async def display_check(dsn: str, clinic: str, since: int, state: dict[str, Any]
                        ) -> dict[str, Any]:
    """The real display against the database: every call of its clinic after its first
    snapshot announced exactly once, and the number it shows the one Postgres says."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        expected = [r["id"] for r in await conn.fetch(
            "SELECT id FROM events WHERE clinic_code = $1 AND id > $2 "
            "AND event_type IN ('CALLED', 'RECALLED') ORDER BY id", clinic, since)]
        snapshot = await conn.fetchval("SELECT mmc_snapshot_clinic($1, now())", clinic)
    finally:
        await conn.close()
    called = ((snapshot or {}).get("state") or {}).get("called") or []
    announced = [int(a["seq"]) for a in state["announced"] if a.get("clinic") == clinic]
    want, got = set(expected), set(announced)
    shown = state["shown"][0] if state["shown"] else None
    return {"clinic": clinic, "calls": len(expected), "announced": len(announced),
            "missing": len(want - got), "twice": len(announced) - len(got),
            "never_called": len(got - want), "in_order": announced == sorted(announced),
            "shown": shown, "database": str(called[0]) if called else None,
            "page_errors": state["error_count"], "page_error_examples": state["errors"][:5]}
