"""Queue rules of DOMAIN.md: positions, statuses, skips, recalls, one active entry."""

from __future__ import annotations

import pytest

from server import errors
from tests.people import ADMIN, patient, run, staff


async def line_up(db, clinic: str, count: int, first_id: int = 90_000_000):
    people = []
    for i in range(count):
        who = await patient(db, str(first_id + i))
        await run(db, who, "queue.enter", {"clinic": clinic})
        people.append(who)
    return people


async def test_position_ahead_and_eta_follow_the_line(db, clock):
    """The third in line has two ahead; ETA = ahead x mean service / capacity."""
    people = await line_up(db, "eyes", 3)
    status = await run(db, people[2], "queue.status")
    assert (status["position"], status["ahead"], status["total_waiting"]) == (3, 2, 3)
    # No service today yet: the clinic's call_interval (300 s) is the mean.
    assert status["eta_minutes"] == 10
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    clock.advance(120)
    await run(db, ADMIN, "queue.done", {"clinic": "eyes"})
    status = await run(db, people[2], "queue.status")
    assert (status["ahead"], status["eta_minutes"]) == (1, 2)


async def test_entering_answers_with_the_place_status_gives(db, clock):
    """The enter reply's place (counted when the number was given) is the one
    queue.status counts afterwards, behind others and after a service has been timed."""
    await line_up(db, "eyes", 2)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    clock.advance(240)
    await run(db, ADMIN, "queue.done", {"clinic": "eyes"})
    await line_up(db, "eyes", 2, first_id=90_000_100)
    last = await patient(db, "90000200")
    entered = await run(db, last, "queue.enter", {"clinic": "eyes"})
    status = await run(db, last, "queue.status")
    fields = ("number", "status", "position", "ahead", "total_waiting", "eta_minutes")
    assert [entered[f] for f in fields] == [status[f] for f in fields]
    assert (entered["position"], entered["total_waiting"], entered["eta_minutes"]) == (4, 4, 12)
    assert entered["display_number"] == 4


async def test_entering_again_returns_the_existing_number(db):
    """ALREADY_IN_QUEUE, the same number, nothing new written."""
    (who,) = await line_up(db, "eyes", 1)
    again = await run(db, who, "queue.enter", {"clinic": "eyes"})
    assert (again["status"], again["number"]) == ("ALREADY_IN_QUEUE", 1)
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM queues") == 1


async def test_one_active_entry_in_the_whole_centre(db):
    """Waiting at eyes, entering ENT is a conflict."""
    (who,) = await line_up(db, "eyes", 1)
    with pytest.raises(errors.Conflict):
        await run(db, who, "queue.enter", {"clinic": "ent"})


async def test_womens_clinics_refuse_men(db):
    """A male examinee cannot enter a women's clinic."""
    who = await patient(db, "91000001", "male")
    with pytest.raises(errors.Forbidden):
        await run(db, who, "queue.enter", {"clinic": "derma_f"})


async def test_call_on_an_empty_clinic_is_empty(db):
    """Nobody waiting: the `empty` error."""
    with pytest.raises(errors.Empty):
        await run(db, ADMIN, "queue.call", {"clinic": "ecg"})


async def test_statuses_move_waiting_called_in_progress_completed(db):
    """call, start, done walk the statuses; each wrong step is a conflict."""
    (who,) = await line_up(db, "eyes", 1)
    assert (await run(db, ADMIN, "queue.call", {"clinic": "eyes"}))["called"]["status"] \
        == "CALLED"
    assert (await run(db, who, "queue.status"))["status"] == "CALLED"
    started = await run(db, ADMIN, "queue.start", {"clinic": "eyes", "number": 1})
    assert started["status"] == "IN_PROGRESS"
    with pytest.raises(errors.Conflict):
        await run(db, ADMIN, "queue.start", {"clinic": "eyes", "number": 1})
    with pytest.raises(errors.Conflict):
        await run(db, ADMIN, "queue.no_show", {"clinic": "eyes", "number": 1})
    assert (await run(db, ADMIN, "queue.done", {"clinic": "eyes", "number": 1}))["status"] \
        == "COMPLETED"
    with pytest.raises(errors.Conflict):
        await run(db, ADMIN, "queue.done", {"clinic": "eyes", "number": 1})


async def test_recall_announces_again_without_changing_state(db):
    """RECALLED is written; the entry stays CALLED."""
    await line_up(db, "eyes", 1)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    recalled = await run(db, ADMIN, "queue.recall", {"clinic": "eyes"})
    assert recalled["status"] == "CALLED"
    async with db.pool.acquire() as conn:
        types = [r["event_type"] for r in await conn.fetch(
            "SELECT event_type FROM events ORDER BY id")]
    assert types == ["ENTERED", "CALLED", "RECALLED"]


async def test_skip_moves_to_the_end_and_keeps_the_number(db):
    """A skipped entry goes behind everyone waiting, with its number."""
    people = await line_up(db, "eyes", 3)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    skipped = await run(db, ADMIN, "queue.skip", {"clinic": "eyes"})
    assert (skipped["number"], skipped["status"], skipped["postpone_count"]) == (1, "WAITING", 1)
    status = await run(db, people[0], "queue.status")
    assert (status["number"], status["ahead"]) == (1, 2)
    assert (await run(db, ADMIN, "queue.call", {"clinic": "eyes"}))["called"]["number"] == 2


async def test_third_skip_cancels(db):
    """After max_postpones (3) skips the entry is CANCELLED."""
    (who,) = await line_up(db, "eyes", 1)
    for expected in ("WAITING", "WAITING", "CANCELLED"):
        await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
        assert (await run(db, ADMIN, "queue.skip", {"clinic": "eyes"}))["status"] == expected
    assert (await run(db, who, "queue.status"))["status"] == "NONE"


async def test_no_show_closes_the_entry(db):
    """NO_SHOW ends the entry; the patient may enter again with a new number."""
    (who,) = await line_up(db, "eyes", 1)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    assert (await run(db, ADMIN, "queue.no_show", {"clinic": "eyes"}))["status"] == "NO_SHOW"
    again = await run(db, who, "queue.enter", {"clinic": "eyes"})
    assert again["number"] == 2


async def test_staff_act_only_on_their_own_clinic(db):
    """Staff of eyes cannot call lab; they may omit the clinic for their own."""
    await line_up(db, "eyes", 1)
    await line_up(db, "lab", 1, first_id=92_000_000)
    with pytest.raises(errors.Forbidden):
        await run(db, staff("eyes"), "queue.call", {"clinic": "lab"})
    assert (await run(db, staff("eyes"), "queue.call"))["called"]["clinic"] == "eyes"


async def test_staff_status_shows_numbers_only(db):
    """A clinic's status carries numbers and counts, never a patient ID."""
    await line_up(db, "eyes", 2)
    await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
    status = await run(db, staff("eyes"), "queue.status")
    assert (status["total_waiting"], status["serving"], status["called"]) == (1, [1], [1])
    assert "90000000" not in repr(status)


async def test_pause_and_resume_write_events_once(db):
    """Pausing twice writes one CLINIC_PAUSED; resume writes CLINIC_RESUMED."""
    await run(db, ADMIN, "admin.clinic.pause", {"clinic": "eyes"})
    paused = await run(db, ADMIN, "admin.clinic.pause", {"clinic": "eyes"})
    assert paused["is_paused"] is True
    await run(db, ADMIN, "admin.clinic.resume", {"clinic": "eyes"})
    async with db.pool.acquire() as conn:
        types = [r["event_type"] for r in await conn.fetch(
            "SELECT event_type FROM events ORDER BY id")]
    assert types == ["CLINIC_PAUSED", "CLINIC_RESUMED"]


async def test_settings_set_validates_and_broadcasts(db):
    """A valid setting is stored with SETTINGS_CHANGED; a bad one is refused."""
    result = await run(db, ADMIN, "admin.settings.set", {"key": "max_postpones", "value": 5})
    assert result["settings"]["max_postpones"] == 5
    for bad in ({"key": "max_postpones", "value": "5"}, {"key": "max_postpones", "value": True},
                {"key": "timezone", "value": "Mars/Olympus"}, {"key": "nope", "value": 1},
                {"key": "pin_reset_time", "value": "25:00"}):
        with pytest.raises(errors.BadRequest):
            await run(db, ADMIN, "admin.settings.set", bad)
    settings = (await run(db, ADMIN, "admin.settings.get"))["settings"]
    assert settings["max_postpones"] == 5
    assert settings["timezone"] == "Asia/Qatar"
