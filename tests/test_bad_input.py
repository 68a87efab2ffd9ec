"""Bad input for every command: a clear error in the envelope, and no row changes."""

from __future__ import annotations

from typing import Any

import pytest

from server import commands, errors
from tests.people import ADMIN, ANON, called_until, digest, patient, run, staff

SQL = "eyes'; DROP TABLE queues; --"
# Digits str.isdigit() accepts and int() may or may not: superscripts, other scripts'
# digits, full-width and mathematical digits, and look-alike letters.
LOOKALIKES = ["²²", "¹²³⁴", "１２３４", "𝟏𝟐𝟑𝟒", "৪৫৬৭", "१२३४", "I2", "O1", "l234", "1\u200b2"]
HUGE = "7" * 10_240
WRONG_TYPES: list[Any] = [7, 3.5, True, [], {}, ["eyes"], {"$ne": 1}]

# Per op: the valid arguments, and which fields are free text (any string is valid).
VALID: dict[str, dict[str, Any]] = {
    "patient.login": {"patient_id": "12345678", "gender": "male"},
    "staff.login": {"username": "nurse", "password": "a long password"},
    "admin.login": {"username": "admin", "password": "a long password"},
    "route.create": {"exam_type": "recruitment"},
    "route.get": {},
    "path.choose": {},
    "queue.enter": {"clinic": "eyes"},
    "queue.status": {"clinic": "eyes"},
    "queue.call": {"clinic": "eyes"},
    "queue.recall": {"clinic": "eyes", "number": 1},
    "queue.start": {"clinic": "eyes", "number": 1},
    "queue.done": {"clinic": "eyes", "number": 1},
    "queue.skip": {"clinic": "eyes", "number": 1},
    "queue.no_show": {"clinic": "eyes", "number": 1},
    "pin.submit": {"clinic": "eyes", "pin": "42"},
    "pin.current": {"clinic": "eyes"},
    "pin.rotate": {"clinic": "eyes", "fresh": False},
    "stats.dashboard": {},
    "admin.staff.create": {"username": "newnurse", "password": "a long password",
                           "clinic": "eyes"},
    "admin.clinic.pause": {"clinic": "eyes"},
    "admin.clinic.resume": {"clinic": "eyes"},
    "admin.settings.get": {},
    "admin.settings.set": {"key": "max_postpones", "value": 4},
    "report.get": {"type": "daily", "date": "2026-03-01"},
    "ping": {},
    "display.hello": {"name": "Floor 2 hall", "clinics": ["eyes"], "sound": True,
                      "voice": "server", "last_announced": 5},
    "admin.displays": {},
    "admin.display.identify": {"display_id": "00000000-0000-4000-8000-000000000000"},
    "admin.staff.list": {},
    "admin.staff.disable": {"username": "nobody_here"},
    "admin.staff.enable": {"username": "nobody_here"},
    "admin.staff.reset_password": {"username": "nobody_here", "password": "a long password"},
    "reception.register": {"patient_id": "12345678", "gender": "male",
                           "exam_type": "recruitment"},
    "stream.ticket": {"channel": "clinic:eyes"},
}
FREE_TEXT = {"password"}
OPTIONAL = {("queue.status", "clinic"), ("pin.rotate", "fresh"),
            ("display.hello", "last_announced"), ("pin.current", "clinic"),
            ("pin.rotate", "clinic"),
            *((f"queue.{a}", "number") for a in ("recall", "start", "done", "skip", "no_show"))}
# Values that must be refused for a field, beyond wrong types.
BAD_VALUES: dict[str, list[Any]] = {
    "patient_id": ["1", "1234567890123", "12a4", "", " ", SQL, HUGE, "-123", "1e5",
                   *LOOKALIKES],
    "gender": ["other", "", "MALE", SQL, HUGE],
    "clinic": ["nope", "EYES", "", SQL, HUGE, "eyes\x00", "../eyes"],
    "number": [0, -1, 10**12],
    "pin": ["1", "123", "ab", "", SQL, HUGE, *LOOKALIKES],
    "exam_type": ["astronaut", "", SQL, HUGE],
    "username": ["", SQL, HUGE, "a b"],
    "password": ["", HUGE],
    "key": ["nope", "", SQL, HUGE],
    "value": ["4", None, -1, [4], {"v": 4}, HUGE],
    "type": ["hourly", "", SQL, HUGE],
    "date": ["2026-13-01", "yesterday", "", SQL, HUGE],
    "name": ["", "   ", "a\u202eb", "\x00", HUGE],
    "clinics": [[], ["nope"], ["eyes", "eyes"], [SQL], ["eyes"] * 7, "eyes", 7, True, {},
                [None], [["eyes"]]],
    "sound": ["true", 1, 0, 3.5, [], {}, SQL],
    "voice": ["robot", "", SQL, HUGE],
    "last_announced": [-1, 2**63, "5", "²", 3.5, True, [], {}],
    "display_id": ["nope", "", "²", SQL, HUGE],
    "fresh": ["true", 1, 0, 3.5, [], {}, SQL],
    "channel": ["", "nope", "clinic:", "clinic:EYES", "clinic:eyes:staff²", "me²", SQL, HUGE],
}
# Fields for which some of WRONG_TYPES are valid: their bad values are all listed above.
OWN_WRONG_TYPES = {"value", "clinics", "sound", "last_announced", "fresh"}


def cases() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for op in sorted(commands.OPERATIONS):
        valid = VALID[op]
        if valid:
            out += [(op, raw) for raw in ([], "args", 7, True)]
        for field in valid:
            if (op, field) not in OPTIONAL:
                out.append((op, {k: v for k, v in valid.items() if k != field}))
            values = list(BAD_VALUES[field])
            if field not in FREE_TEXT and field not in OWN_WRONG_TYPES:
                values += WRONG_TYPES
            elif field in FREE_TEXT:
                values += [7, [], {}, True]
            out += [(op, {**valid, field: bad}) for bad in values]
    return out


async def principal_for(db, op: str):
    if op in commands.LOGIN_OPERATIONS or op == "ping":
        return ANON
    if op in ("route.create", "route.get", "path.choose", "queue.enter", "pin.submit"):
        return await patient(db, "99000001")
    if op == "queue.status":
        return staff("eyes")
    return ADMIN


def test_every_operation_has_bad_input_cases():
    """A new operation must be added to this file's table."""
    assert set(commands.OPERATIONS) <= set(VALID)


async def test_bad_input_gets_a_clear_error_and_changes_nothing(db):
    """Every mutated request is refused with a non-internal error; tables unchanged."""
    # A patient waiting and another called at eyes, so deeper paths are reachable.
    await run(db, await patient(db, "99000002"), "queue.enter", {"clinic": "eyes"})
    called = await patient(db, "99000003")
    await run(db, called, "queue.enter", {"clinic": "eyes"})
    await called_until(db, "eyes", called)
    principals = {op: await principal_for(db, op) for op in commands.OPERATIONS}
    before = await digest(db)
    failures = []
    for op, raw in cases():
        if op not in commands.OPERATIONS:
            continue
        try:
            result = await run(db, principals[op], op, raw)
        except errors.Internal as exc:
            failures.append((op, raw, "internal", exc.message))
            continue
        except errors.MMCError as exc:
            envelope = exc.envelope(9)
            assert envelope["ok"] is False and envelope["id"] == 9
            assert envelope["status"] == exc.status and envelope["message"]
            continue
        failures.append((op, str(raw)[:80], "accepted", str(result)[:80]))
    assert failures == []
    assert await digest(db) == before


@pytest.mark.parametrize("op", ["no.such.op", "", "QUEUE.CALL", "queue.call "])
async def test_unknown_op_is_bad_request(db, op):
    """An unknown op is a bad request, whoever asks."""
    with pytest.raises(errors.BadRequest):
        await run(db, ADMIN, op, {})
