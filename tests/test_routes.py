"""Routes: every exam type and gender walked to the end; path-choose by live load."""

from __future__ import annotations

import itertools

import pytest

from server import errors
from tests.people import ADMIN, called_until, patient, run

# DOMAIN.md's table, written out independently of the seed SQL.
RECRUIT_MALE = [["lab", "xray"], ["vitals"],
                ["eyes", "internal", "surgery", "bones", "ent", "psychiatry", "dental"]]
FEMALE = [["lab"], ["vitals"], ["ent", "surgery", "bones", "psychiatry", "dental"],
          ["internal_f", "eyes_f", "derma_f"]]
EXPECTED = {
    ("courses", "male"): [["lab"], ["vitals"], ["eyes", "internal", "surgery", "bones", "ent"]],
    ("aviation", "male"): [["lab"], ["eyes", "internal", "ent", "ecg", "audio"]],
    ("cooks", "male"): [["lab"], ["internal", "ent", "surgery"]],
    ("aviation", "female"): [["lab"], ["ent", "surgery", "bones", "psychiatry", "dental"],
                             ["internal_f", "eyes_f", "derma_f"]],
    **{(exam, "male"): RECRUIT_MALE
       for exam in ("recruitment", "promotion", "transfer", "referral", "contract")},
    **{(exam, "female"): FEMALE
       for exam in ("recruitment", "promotion", "transfer", "referral", "contract",
                    "cooks", "courses")},
}
_ids = itertools.count(10_000_001)


async def walk(db, exam: str, gender: str, *, by_pin: bool) -> list[str]:
    """Walk one examinee through their whole route; returns the clinics in order."""
    who = await patient(db, str(next(_ids)), gender)
    route = await run(db, who, "route.create", {"exam_type": exam})
    visited = []
    while route["status"] == "active":
        clinic = route["current"]["clinic"]
        visited.append(clinic)
        await called_until(db, clinic, who)
        needs_pin = route["current"]["requires_pin"]
        if by_pin and needs_pin:
            pins = (await run(db, ADMIN, "pin.current", {"clinic": clinic}))["pins"]
            result = await run(db, who, "pin.submit", {"clinic": clinic, "pin": pins[clinic]})
            assert result["completed"] == clinic
        else:
            await run(db, ADMIN, "queue.start", {"clinic": clinic})
            await run(db, ADMIN, "queue.done", {"clinic": clinic})
        route = await run(db, who, "route.get")
    assert route["status"] == "completed"
    assert route["current"] is None
    return visited


@pytest.mark.parametrize("by_pin", [False, True], ids=["staff_done", "pin"])
async def test_every_exam_type_and_gender_walks_to_route_completed(db, by_pin):
    """Each route of DOMAIN.md is visited stage by stage, every clinic once."""
    for (exam, gender), stages in EXPECTED.items():
        visited = await walk(db, exam, gender, by_pin=by_pin)
        assert len(visited) == len(set(visited)), (exam, gender, visited)
        flat = [c for stage in stages for c in stage]
        assert sorted(visited) == sorted(flat), (exam, gender)
        position = 0
        for stage in stages:
            assert set(visited[position:position + len(stage)]) == set(stage), (exam, gender)
            position += len(stage)
    async with db.pool.acquire() as conn:
        completed = await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'ROUTE_COMPLETED'")
    assert completed == len(EXPECTED)


async def test_route_is_sticky_for_the_day(db):
    """Asking again returns the same route, even for another exam type."""
    who = await patient(db, "20000001")
    first = await run(db, who, "route.create", {"exam_type": "recruitment"})
    again = await run(db, who, "route.create", {"exam_type": "aviation"})
    assert again["route_id"] == first["route_id"]
    assert again["exam_type"] == "recruitment"
    assert again["created"] is False


async def test_path_choose_takes_the_lowest_expected_wait(db):
    """Three waiting at lab (capacity 2) and none at xray: the route starts at xray."""
    for i in range(3):
        await run(db, await patient(db, f"3000000{i}"), "queue.enter", {"clinic": "lab"})
    who = await patient(db, "30000010")
    route = await run(db, who, "route.create", {"exam_type": "recruitment"})
    assert route["current"]["clinic"] == "xray"


async def test_path_choose_ties_go_by_template_order(db):
    """Equal expected waits: the clinic listed first in the template."""
    who = await patient(db, "30000020")
    route = await run(db, who, "route.create", {"exam_type": "recruitment"})
    assert route["current"]["clinic"] == "lab"


async def test_path_choose_weighs_mean_service_time_and_capacity(db, clock):
    """One waiting at a slow clinic costs more than one waiting at a fast one."""
    # lab serves in 60 s, xray in 600 s (today's completed services).
    for clinic, seconds in (("lab", 60), ("xray", 600)):
        done = await patient(db, f"4{seconds:07d}")
        await run(db, done, "queue.enter", {"clinic": clinic})
        await run(db, ADMIN, "queue.call", {"clinic": clinic})
        clock.advance(seconds)
        await run(db, ADMIN, "queue.done", {"clinic": clinic})
    for clinic, pid in (("lab", "40000100"), ("lab", "40000101"), ("xray", "40000102")):
        await run(db, await patient(db, pid), "queue.enter", {"clinic": clinic})
    # expected: lab 2 x 60 / 2 = 60 s; xray 1 x 600 / 2 = 300 s.
    who = await patient(db, "40000200")
    route = await run(db, who, "route.create", {"exam_type": "recruitment"})
    assert route["current"]["clinic"] == "lab"


async def test_path_choose_skips_paused_clinics(db):
    """A paused clinic is not chosen while another clinic of the stage is open."""
    await run(db, ADMIN, "admin.clinic.pause", {"clinic": "lab"})
    who = await patient(db, "30000030")
    route = await run(db, who, "route.create", {"exam_type": "recruitment"})
    assert route["current"]["clinic"] == "xray"


async def test_advance_enters_next_clinic_in_the_same_transaction(db):
    """Done at lab: the patient is already WAITING at the next clinic, with a number."""
    who = await patient(db, "30000040")
    await run(db, who, "route.create", {"exam_type": "cooks"})
    await called_until(db, "lab", who)
    await run(db, ADMIN, "queue.done", {"clinic": "lab"})
    status = await run(db, who, "queue.status")
    assert status["status"] == "WAITING"
    assert status["clinic"] in ("internal", "ent", "surgery")
    assert status["number"] == 1
    route = await run(db, who, "route.get")
    assert route["completed_clinics"] == ["lab"]
    assert route["current_clinic"] == status["clinic"]


async def test_unknown_exam_type_is_not_found_and_creates_nothing(db):
    """An exam type with no template for the patient's gender is refused."""
    who = await patient(db, "30000050")
    with pytest.raises(errors.NotFound):
        await run(db, who, "route.create", {"exam_type": "astronaut"})
    with pytest.raises(errors.NotFound):
        await run(db, who, "route.get")


async def test_entering_a_clinic_off_the_current_stage_is_refused(db):
    """With a route, only a clinic of the current stage may be entered."""
    who = await patient(db, "30000060")
    await run(db, who, "route.create", {"exam_type": "cooks"})
    await called_until(db, "lab", who)
    await run(db, ADMIN, "queue.no_show", {"clinic": "lab"})
    with pytest.raises(errors.Conflict):
        await run(db, who, "queue.enter", {"clinic": "ent"})
    again = await run(db, who, "queue.enter", {"clinic": "lab"})
    assert again["number"] == 2


async def test_path_choose_rejoins_the_route_after_a_no_show(db):
    """After a no-show the patient has no entry; path.choose enters the best clinic
    of the current stage again, and with an entry it only says where to go."""
    who = await patient(db, "30000070")
    await run(db, who, "route.create", {"exam_type": "recruitment"})
    await called_until(db, "lab", who)
    await run(db, ADMIN, "queue.no_show", {"clinic": "lab"})
    assert (await run(db, who, "queue.status"))["status"] == "NONE"
    chosen = await run(db, who, "path.choose")
    assert chosen["chosen"] is True
    assert chosen["current"]["clinic"] in ("lab", "xray")
    again = await run(db, who, "path.choose")
    assert again["chosen"] is False
    assert again["current"]["number"] == chosen["current"]["number"]


async def test_path_choose_without_a_route_is_not_found(db):
    """No route today: nothing to choose."""
    with pytest.raises(errors.NotFound):
        await run(db, await patient(db, "30000080"), "path.choose")
