"""The clinic console (/clinic) in Chromium: a double click on Call next calls exactly one
examinee (counted in the database); a fresh list refused while the database is away is
asked for again; every action by keyboard; No-show asks first; the clinic paused live;
axe and screenshots of every state, desktop and tablet, both languages."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from server.breaker import CircuitBreaker
from server.breaker import State as BreakerState
from server.clock import ManualClock
from server.pages import WEB_ROOT
from tests.api import STAFF_PASSWORD, create_accounts
from tests.harness import LiveServer
from tests.realtime import Peer
from tests.web.browser import AXE, Watched, missing, site
from tests.web.staff_pages import (
    DESKTOP,
    TABLET,
    Audit,
    StaffWatched,
    admin_peer,
    open_staff,
    queue_examinees,
    sign_in,
    wall_clock,
)
from tests.web.test_pages import markup, table

CURRENT = "() => document.getElementById('current-number').textContent"
ROWS = "document.getElementById('waiting-rows').children.length"


async def called_at(dsn: str, clinic: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT queue_number FROM queues WHERE clinic_code = $1"
                                " AND status = 'CALLED' ORDER BY queue_number", clinic)
    finally:
        await conn.close()
    return [r["queue_number"] for r in rows]


async def settled(console: Watched) -> None:
    """No request of the console is in flight."""
    await console.wait("() => document.getElementById('actions').getAttribute('aria-busy')"
                       " === 'false'")


async def lab_console(browser: Any, live: LiveServer, clock: ManualClock, prefix: str,
                      name: str) -> tuple[list[Peer], StaffWatched]:
    """Three examinees waiting at the laboratory (IDs `prefix` + 01..03, queued ten
    minutes ago) and its console signed in, in English on the desktop, showing them."""
    peers = await queue_examinees(live, [f"{prefix}{n:02d}" for n in (1, 2, 3)])
    wall_clock(clock)
    console = await open_staff(browser, f"{live.http_url}/clinic", name, viewport=DESKTOP,
                               lang="en")
    await sign_in(console, "staff_lab", STAFF_PASSWORD)
    await console.wait(f"() => {ROWS} === 3")
    return peers, console


async def test_a_double_click_on_call_next_calls_exactly_one(browser: Any, dsn: str,
                                                            clock: ManualClock) -> None:
    wall_clock(clock, 10)
    await create_accounts(dsn)
    async with site(dsn, clock) as live:
        peers, console = await lab_console(browser, live, clock, "40000", "console-double")
        await console.page.dblclick("#act-call")
        await console.wait("() => document.getElementById('action-done').textContent !== ''")
        await settled(console)
        await console.wait(f"() => {ROWS} === 2")
        assert await called_at(dsn, "lab") == [1]
        assert await console.page.evaluate("window.mmcProbe.sent.call") == 1
        assert await console.page.evaluate(CURRENT) == "1"
        for peer in peers:
            await peer.close()
        await console.page.context.close()
    console.assert_clean()


async def test_a_fresh_list_refused_while_the_database_is_away_is_asked_for_again(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """After an outage the hub is back before the breaker lets calls through: an event
    reaches the console, the fresh snapshot it asks for is refused (`unavailable`), and
    the console asks again until its list is current. (Before, it sat on the old list
    with no subscription left, so no later event could mend it.) The breaker is the
    server's own, opened as the pool opens it when Postgres cannot be reached."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=2.0)
    wall_clock(clock, 10)
    await create_accounts(dsn)
    async with site(dsn, clock, breaker=breaker) as live:
        peers, console = await lab_console(browser, live, clock, "41000", "console-refused")
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        # Another desk calls the next examinee; its commit reaches the hub, not the pool.
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT mmc_call_next($1, $2)", "lab", clock.now())
        finally:
            await conn.close()
        await console.wait(f"() => {ROWS} === 2"
                           " && document.getElementById('current-number').textContent === '1'")
        assert breaker.state is not BreakerState.OPEN
        for peer in peers:
            await peer.close()
        await console.page.context.close()
    console.assert_clean()


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_every_console_state_by_keyboard_passes_axe(browser: Any, dsn: str,
                                                          clock: ManualClock, lang: str) -> None:
    """Login (and a wrong password), the list with times waited, called, recalled,
    started, done, postponed, the No-show question (declined, then accepted), paused,
    the PIN's print view; shortcuts only, once signed in."""
    if not AXE.is_file():
        missing("axe-core (npm ci --prefix tests/web)")
    audit = Audit()
    wall_clock(clock, 25)
    await create_accounts(dsn)
    async with site(dsn, clock) as live:
        peers = await queue_examinees(live, ["5100001", "5100002", "123", "5100004"],
                                      clinic="eyes")
        wall_clock(clock)
        admin = await admin_peer(live, dsn, clock)
        await peers[1].close()
        console = await open_staff(browser, f"{live.http_url}/clinic", f"{lang}-console",
                                  viewport=DESKTOP, lang=lang, bypass_csp=True)
        page = console.page

        async def both(state: str) -> None:
            """The door's desktop, then its tablet."""
            await audit.check(console, state)
            await page.set_viewport_size(TABLET)
            await audit.check(console, f"{state}-tablet")
            await page.set_viewport_size(DESKTOP)

        await both("login")
        await page.fill("#username", "staff_eyes")
        await page.fill("#password", "not the password")
        await page.click("#login-form button[type=submit]")
        await console.wait("() => document.getElementById('login-error').textContent !== ''")
        await both("login-error")
        await sign_in(console, "staff_eyes", STAFF_PASSWORD)
        await console.wait("() => document.getElementById('waiting-rows').children.length === 4"
                           " && document.getElementById('pin-value').textContent !== ''")
        rows = await page.eval_on_selector_all("#waiting-rows tr", "rows => rows.map(r =>"
                                               " [...r.cells].map(c => c.textContent))")
        # Masked by the server: at most the last four digits, at least four hidden.
        assert [r[1] for r in rows] == ["****001", "****002", "***", "****004"]
        assert all("25" in r[2] for r in rows), rows
        pin = (await admin.call("pin.current", {"clinic": "eyes"}))["pins"]["eyes"]
        assert await page.text_content("#pin-value") == pin
        await both("waiting")

        await page.keyboard.press("n")
        await console.wait(CURRENT + " === '1'")
        await settled(console)
        await both("called")
        await page.keyboard.press("r")
        await console.wait("() => document.getElementById('action-done').textContent"
                           ".includes('1') && window.mmcProbe.sent.recall === 1")
        await settled(console)
        await page.keyboard.press("s")
        # In progress: only Done is left for this examinee.
        await console.wait("() => document.getElementById('act-start').disabled"
                           " && !document.getElementById('act-done').disabled")
        await settled(console)
        await both("in-progress")
        await page.keyboard.press("d")
        await console.wait(CURRENT + " === ''")
        await settled(console)
        await both("done")

        await page.keyboard.press("n")
        await console.wait(CURRENT + " === '2'")
        await settled(console)
        await page.keyboard.press("p")   # postponed: back in the list with one postponement
        await console.wait("() => [...document.querySelectorAll('#waiting-rows tr')].some("
                           "r => r.cells[0].textContent === '2' && r.cells[3].textContent === '1')")
        await settled(console)
        await both("postponed")

        await page.keyboard.press("n")
        await console.wait(CURRENT + " !== ''")
        await settled(console)
        number = int(await page.text_content("#current-number") or 0)
        await page.keyboard.press("x")
        await console.wait("() => document.getElementById('confirm-noshow').open")
        await both("no-show-question")
        await page.keyboard.press("Escape")
        await console.wait("() => !document.getElementById('confirm-noshow').open")
        assert number in await called_at(dsn, "eyes")  # declined: nothing happened
        await page.keyboard.press("x")
        await console.wait("() => document.getElementById('confirm-noshow').open")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await console.wait(CURRENT + " === ''")
        assert await called_at(dsn, "eyes") == []

        await admin.call("admin.clinic.pause", {"clinic": "eyes"})
        await console.wait("() => !document.getElementById('paused').hidden"
                           " && document.getElementById('act-call').disabled")
        await both("paused")
        await admin.call("admin.clinic.resume", {"clinic": "eyes"})
        await console.wait("() => document.getElementById('paused').hidden")

        await page.emulate_media(media="print")
        await both("print-pin")
        await page.emulate_media(media="screen")
        await page.click("#logout")
        await console.wait("() => document.body.dataset.screen === 'login'")
        await admin.close()
        for peer in peers:
            await peer.close()
        await page.context.close()
    assert audit.found == {}
    console.assert_clean()



def test_staff_pages_hold_no_text_and_their_sheet_is_logical() -> None:
    """As the public pages: markup names keys of the tables only, no inline code, and the
    staff sheet uses logical properties only (one sheet for both directions)."""
    keys = set(table("en"))
    for name in ("clinic.html", "admin.html", "reception.html"):
        parsed = markup(name)
        assert parsed.text == [], f"{name}: hard-coded text {parsed.text}"
        assert parsed.inline == [], f"{name}: inline code or style {parsed.inline}"
        assert parsed.keys <= keys, f"{name}: unknown keys {parsed.keys - keys}"
    css = (WEB_ROOT / "css" / "staff.css").read_text()
    physical = re.findall(r"(?:margin|padding|border)-(?:left|right)|(?<![-\w])(?:left|right)\s*:"
                          r"|text-align:\s*(?:left|right)|float:", css)
    assert physical == []
    # Keys the console builds from the server's states and its actions.
    for status in ("CALLED", "IN_PROGRESS"):
        assert f"console.status.{status}" in keys
    for action in ("call", "recall", "start", "done", "skip", "no_show"):
        assert f"console.did.{action}" in keys
