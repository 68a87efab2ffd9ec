"""The patient's phone beyond the happy path: the turn drawing near, a postponed turn,
a PIN lockout said with its minutes, text at 200% without loss, and the route's
refresh refused once or answered after newer events."""

from __future__ import annotations

import re
from typing import Any

import orjson

from server.clock import ManualClock
from tests.harness import LiveServer
from tests.realtime import Peer
from tests.web.browser import PHONE, Watched, eventually, open_page, site
from tests.web.scenes import Staff, card, login

NOTICE = "() => document.getElementById('notice').textContent"


async def test_near_turn_postponement_and_lockout_are_said_plainly(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """NEAR_TURN banner, SKIPPED back in the queue, YOUR_TURN title, PIN locked for minutes."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        others = []
        for n in range(4):
            other = await Peer.open(live.ws_url)
            await other.call("patient.login", {"patient_id": f"90{n}", "gender": "male"})
            await other.call("route.create", {"exam_type": "cooks"})
            others.append(other)
        phone = await open_page(browser, live.http_url + "/", "en-phone-journey",
                                viewport=PHONE, lang="en")
        await login(phone, "4711", "male", "cooks")
        assert (await card(phone))["number"] == "5"
        assert await phone.page.evaluate(NOTICE) == ""

        await staff.call("lab")   # number 1: four ahead becomes three (lab serves two at once)
        await staff.call("lab")
        await phone.wait("() => document.getElementById('notice').textContent.includes('near')")
        await phone.shot("near-turn")

        await staff.act("skip", "lab", 5)
        await phone.wait("() => document.getElementById('notice').textContent"
                         ".includes('postponed')")
        assert (await card(phone))["number"] == "5"
        await phone.shot("skipped")

        for number in (1, 2):
            await staff.act("done", "lab", number)
        called = None
        while called != 5:
            called = (await staff.call("lab"))["number"]
            if called != 5:
                await staff.act("done", "lab", called)
        await phone.wait("() => !document.getElementById('turn').hidden")
        assert "Laboratory" in await phone.page.title()
        await staff.act("done", "lab", 5)
        await phone.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        # "Next: <clinic>", or already "near" there when the others went first.
        shown = await card(phone)
        assert shown["clinic"] and shown["clinic"] in await phone.page.evaluate(NOTICE)
        clinic, mine = str(shown["current"]), int(shown["number"])
        while (called := (await staff.call(clinic))["number"]) != mine:
            await staff.act("done", clinic, called)
        await phone.wait("() => !document.getElementById('pin').hidden")
        wrong = f"{(int(await staff.pin(clinic)) + 1) % 100:02d}"
        for _ in range(6):
            await phone.page.fill("#pin-input", wrong)
            await phone.page.click("#pin-form button[type=submit]")
            await phone.wait("() => document.getElementById('pin-error').textContent !== ''")
            text = await phone.page.text_content("#pin-error")
            if text and "minutes" in text:
                break
            await phone.page.evaluate("document.getElementById('pin-error').textContent = ''")
        assert await phone.page.text_content("#pin-error") == (
            "Too many wrong tries. Try again in 10 minutes.")
        await phone.shot("locked")
        phone.assert_clean()
        for other in others:
            await other.close()
        await staff.close()


async def test_text_at_twice_the_size_keeps_every_state_readable(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """At 200% text the phone pages need no sideways scrolling."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        for lang in ("ar", "en"):
            phone = await open_page(browser, live.http_url + "/", f"{lang}-phone-200",
                                    viewport=PHONE, lang=lang)
            await phone.page.evaluate("document.documentElement.style.fontSize = '200%'")
            await phone.shot("login")
            assert await _fits(phone.page)
            await login(phone, "6060" if lang == "ar" else "6061", "female", "aviation")
            await phone.shot("waiting")
            assert await _fits(phone.page)
            phone.assert_clean()
        await staff.close()


async def _fits(page: Any) -> bool:
    wide = await page.evaluate(
        """() => [...document.querySelectorAll('body *')].filter(e => {
                const r = e.getBoundingClientRect();
                return r.width > 0 && (r.left < -1 || r.right > innerWidth + 1
                                       || e.scrollWidth > e.clientWidth + 1);
              }).map(e => e.id || e.className || e.tagName)""")
    assert wide == []
    return bool(await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


class RouteGetBetween:
    """Between the phone and the server, watching the answers to route.get: `answer`
    says what the phone gets of each (the same, another message, or None: held)."""

    def __init__(self) -> None:
        self.asked: set[int] = set()
        self.ws: Any = None

    def __call__(self, ws: Any) -> None:
        self.ws = ws
        server = ws.connect_to_server()

        def up(message: str | bytes) -> None:
            frame = orjson.loads(message)
            if frame.get("op") == "route.get":
                self.asked.add(frame["id"])
            server.send(message)

        def down(message: str | bytes) -> None:
            frame = orjson.loads(message)
            if "ok" in frame and frame.get("id") in self.asked:
                self.asked.discard(frame["id"])
                message = self.answer(frame, str(message))
            if message is not None:
                ws.send(message)

        ws.on_message(up)
        server.on_message(down)

    def answer(self, frame: dict[str, Any], message: str) -> str | None:
        return message


class RefuseRouteGet(RouteGetBetween):
    """While armed, the next route.get is answered `unavailable` with a retry_after, as
    when Postgres restarts just after an event."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.answered = 0
        self.refused = 0

    def answer(self, frame: dict[str, Any], message: str) -> str | None:
        self.answered += 1
        if not self.armed:
            return message
        self.armed = False
        self.refused += 1
        return orjson.dumps({"id": frame["id"], "ok": False, "error": "unavailable",
                             "retry_after": 1,
                             "message": "the database is unavailable"}).decode()


async def waiting_through(browser: Any, live: LiveServer, name: str, patient: str,
                          between: RouteGetBetween) -> Watched:
    """A phone whose examinee waits first at the lab, its socket through `between`."""
    phone = await open_page(browser, live.http_url + "/", name, viewport=PHONE, lang="en")
    await login(phone, patient, "male", "cooks")
    await phone.page.route_web_socket(re.compile(r"/ws$"), between)
    await phone.page.reload()  # its socket now passes through `between`
    await phone.wait("() => window.mmcProbe && window.mmcProbe.ready"
                     " && document.getElementById('card-number').textContent === '1'")
    return phone


async def test_a_refused_refresh_is_asked_again(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """After its station is done the phone asks for the route; refused once (the
    database away a moment), it asks again after retry_after and shows the next clinic,
    instead of "no number" until its next event."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        between = RefuseRouteGet()
        phone = await waiting_through(browser, live, "en-phone-refused-refresh", "4713", between)
        before = between.answered
        await staff.call("lab")
        await phone.wait("() => !document.getElementById('turn').hidden")
        await eventually(lambda: between.answered > before)  # the call's own refresh
        between.armed = True
        await staff.act("done", "lab", 1)
        await phone.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        assert between.refused == 1
        assert not (await card(phone))["missed"]
        phone.assert_clean()
        await staff.close()


class HoldRouteGet(RouteGetBetween):
    """Answers to route.get are held until released, so that events the server sent
    after them reach the phone first (as when an answer read before a completion leaves
    the server after the completion's events)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[str] = []

    def answer(self, frame: dict[str, Any], message: str) -> str | None:
        self.held.append(message)
        return None

    def release(self) -> None:
        for message in self.held:
            self.ws.send(message)
        self.held.clear()


# Every (station, number) the phone's card showed, in order.
SHOWN_TRAIL = """() => {
  const trail = window.shownTrail = [];
  const note = () => {
    const s = (document.querySelector('.station.state-current')?.dataset.clinic || '') + ' '
      + document.getElementById('card-number').textContent;
    if (trail[trail.length - 1] !== s) trail.push(s);
  };
  new MutationObserver(note).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
  note();
}"""


async def test_an_answer_older_than_an_event_is_not_shown(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """A route.get answered before the station was done reaches the phone after the
    completion's events: the phone never shows the done station's number again."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        between = HoldRouteGet()
        phone = await waiting_through(browser, live, "en-phone-late-answer", "4714", between)
        between.release()
        await phone.page.evaluate(SHOWN_TRAIL)
        await staff.call("lab")
        await eventually(lambda: len(between.held) == 1)  # the call's refresh: lab, called
        await staff.act("done", "lab", 1)
        await phone.wait("() => document.getElementById('card-number').textContent === ''")
        await eventually(lambda: len(between.held) == 2)  # the completion's refresh
        between.release()
        await phone.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        trail = await phone.page.evaluate("window.shownTrail")
        left = trail.index("lab ")
        assert "lab 1" not in trail[left:], trail
        phone.assert_clean()
        await staff.close()
