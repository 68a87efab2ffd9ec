"""PINs: one per clinic per day, distinct, idempotent rotation, attempts and lockout."""

from __future__ import annotations

import pytest

from server import errors
from tests.people import ADMIN, called_until, digest, patient, run, staff

PIN_CLINICS = {"eyes", "internal", "ent", "surgery", "dental", "psychiatry", "derma", "bones"}


async def called_at_eyes(db, pid: str = "88000001"):
    who = await patient(db, pid)
    await run(db, who, "queue.enter", {"clinic": "eyes"})
    await called_until(db, "eyes", who)
    return who


async def pins(db, clinic: str | None = None) -> dict[str, str]:
    args = {} if clinic is None else {"clinic": clinic}
    return (await run(db, ADMIN, "pin.current", args))["pins"]  # type: ignore[no-any-return]


def wrong_pin_for(correct: str) -> str:
    return "01" if correct != "01" else "02"


async def test_pins_exist_only_for_pin_clinics_and_are_distinct(db):
    """Today's PINs: two digits 01-99, one per PIN clinic, no two alike."""
    today = await pins(db)
    assert set(today) == PIN_CLINICS
    assert len(set(today.values())) == len(today)
    assert all(len(p) == 2 and p.isdigit() and p != "00" for p in today.values())


async def test_rotating_twice_in_one_day_changes_nothing(db):
    """A second rotation the same day returns the same PINs and emits nothing."""
    first = (await run(db, ADMIN, "pin.rotate"))["pins"]
    before = await digest(db)
    second = (await run(db, ADMIN, "pin.rotate"))["pins"]
    assert first == second
    assert await digest(db) == before


async def test_a_fresh_rotation_replaces_a_leaked_pin_at_once(db):
    """`fresh`: eyes gets a new PIN, distinct from every other of the day; the other
    clinics keep theirs; PIN_ROTATED (reason admin) is written for eyes only."""
    before = await pins(db)
    result = (await run(db, ADMIN, "pin.rotate", {"clinic": "eyes", "fresh": True}))["pins"]
    after = await pins(db)
    assert set(result) == {"eyes"} and result["eyes"] == after["eyes"] != before["eyes"]
    assert {c: p for c, p in after.items() if c != "eyes"} == \
        {c: p for c, p in before.items() if c != "eyes"}
    assert len(set(after.values())) == len(after)
    rotated = await db.call(
        "SELECT jsonb_agg(jsonb_build_object('clinic', clinic_code, 'data', data)) "
        "FROM events WHERE event_type = 'PIN_ROTATED' AND data->>'reason' = 'admin'")
    assert [r["clinic"] for r in rotated] == ["eyes"]
    everyone = (await run(db, ADMIN, "pin.rotate", {"fresh": True}))["pins"]
    assert set(everyone) == PIN_CLINICS
    assert all(everyone[c] != after[c] for c in everyone)
    assert len(set(everyone.values())) == len(everyone)


async def test_next_day_gets_new_pins(db, clock):
    """After the local reset time the PIN day changes and new PINs are drawn."""
    first = await pins(db)
    clock.advance(24 * 3600)
    second = await pins(db)
    assert set(first) == set(second)
    async with db.pool.acquire() as conn:
        days = await conn.fetchval("SELECT count(DISTINCT day) FROM pins")
    assert days == 2


async def test_right_pin_completes_the_station(db):
    """The clinic's PIN while CALLED completes the entry."""
    who = await called_at_eyes(db)
    result = await run(db, who, "pin.submit", {"clinic": "eyes", "pin": (await pins(db))["eyes"]})
    assert result["completed"] == "eyes"
    assert (await run(db, who, "queue.status"))["status"] == "NONE"


async def test_arabic_indic_pin_digits_are_accepted(db):
    """A PIN typed with Arabic-Indic digits is the same PIN."""
    who = await called_at_eyes(db)
    pin = (await pins(db))["eyes"]
    arabic = pin.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    result = await run(db, who, "pin.submit", {"clinic": "eyes", "pin": arabic})
    assert result["completed"] == "eyes"


async def test_wrong_pin_says_only_wrong_pin_and_changes_no_state(db):
    """A wrong PIN: `wrong_pin`, the entry and route untouched, no PIN in the message."""
    who = await called_at_eyes(db)
    correct = (await pins(db))["eyes"]
    before = await digest(db)
    with pytest.raises(errors.WrongPin) as caught:
        await run(db, who, "pin.submit", {"clinic": "eyes", "pin": wrong_pin_for(correct)})
    assert caught.value.envelope(1)["message"] == "wrong PIN"
    after = await digest(db)
    changed = {t for t in before if before[t] != after[t]}
    assert changed == {"pin_attempts"}


async def test_another_clinics_pin_is_wrong(db):
    """The PIN of a different clinic does not open this one."""
    who = await called_at_eyes(db)
    today = await pins(db)
    with pytest.raises(errors.WrongPin):
        await run(db, who, "pin.submit", {"clinic": "eyes", "pin": today["internal"]})


async def test_sixth_wrong_try_inside_the_window_is_locked(db, clock):
    """Five wrong tries, then `locked` with retry_after, even for the right PIN;
    after the window the right PIN works again."""
    who = await called_at_eyes(db)
    correct = (await pins(db))["eyes"]
    for _ in range(5):
        with pytest.raises(errors.WrongPin):
            await run(db, who, "pin.submit", {"clinic": "eyes", "pin": wrong_pin_for(correct)})
        clock.advance(10)
    with pytest.raises(errors.Locked) as caught:
        await run(db, who, "pin.submit", {"clinic": "eyes", "pin": correct})
    assert 0 < caught.value.retry_after <= 600
    assert correct not in caught.value.message
    clock.advance(600)
    result = await run(db, who, "pin.submit", {"clinic": "eyes", "pin": correct})
    assert result["completed"] == "eyes"


async def test_pin_only_while_called_at_that_clinic(db):
    """A waiting patient cannot use a PIN, and the try is not counted."""
    who = await patient(db, "88000010")
    await run(db, who, "queue.enter", {"clinic": "eyes"})
    with pytest.raises(errors.Conflict):
        await run(db, who, "pin.submit", {"clinic": "eyes", "pin": (await pins(db))["eyes"]})
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pin_attempts") == 0


async def test_clinic_without_pin_refuses_pin_submit(db):
    """The women's clinics and the lab have no PIN: pin.submit is a bad request."""
    who = await patient(db, "88000020", "female")
    await run(db, who, "queue.enter", {"clinic": "eyes_f"})
    await called_until(db, "eyes_f", who)
    with pytest.raises(errors.BadRequest):
        await run(db, who, "pin.submit", {"clinic": "eyes_f", "pin": "11"})


async def test_staff_see_only_their_own_clinics_pin(db):
    """Staff of eyes read eyes' PIN and are refused lab's or internal's."""
    own = (await run(db, staff("eyes"), "pin.current"))["pins"]
    assert set(own) == {"eyes"}
    with pytest.raises(errors.Forbidden):
        await run(db, staff("eyes"), "pin.current", {"clinic": "internal"})
    with pytest.raises(errors.Forbidden):
        await run(db, staff("eyes"), "pin.rotate")


async def test_patients_cannot_read_pins(db):
    """No operation gives a patient a PIN."""
    who = await patient(db, "88000030")
    for op in ("pin.current", "pin.rotate"):
        with pytest.raises(errors.Forbidden):
            await run(db, who, op, {"clinic": "eyes"})
