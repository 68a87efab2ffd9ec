"""The waiting-room display on its own: it introduces itself (and keeps its id across a
reload), flashes its name when the admin asks, speaks with the server's voice, asks for
a tap before sound, notices a dead link without the server closing it, and asks again
for waiting counts the server refused."""

from __future__ import annotations

import shutil
from typing import Any

import asyncpg

from server.breaker import CircuitBreaker
from server.clock import ManualClock
from server.db import init_connection
from tests.realtime import Peer
from tests.web.browser import (
    AXE,
    WALL,
    Watched,
    axe_violations,
    chromium,
    eventually,
    missing,
    open_page,
    site,
)
from tests.web.link import link_to
from tests.web.scenes import Staff, announced

SHOWS = ("([clinic, n]) => document.querySelector(`[data-clinic=${clinic}] .number`)"
         ".textContent === String(n)")


async def displays(staff: Staff) -> list[dict[str, Any]]:
    result = (await staff.peer.call("admin.displays"))["displays"]
    assert isinstance(result, list)
    return result


async def test_a_display_reports_its_presence_and_flashes_its_name(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """display.hello with name, clinics, sound and voice; the same id after a reload."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        url = f"{live.http_url}/display?clinics=eyes,ent&name=Hall%20C"
        display = await open_page(browser, url, "presence-display", viewport=WALL)
        seen = await eventually(lambda: _named(staff, "Hall C"))
        assert seen["clinics"] == ["eyes", "ent"]
        assert seen["sound"] is True
        assert seen["voice"] in ("server", "browser", "none")
        await display.page.reload()
        await display.wait("() => window.mmcProbe && window.mmcProbe.ready")
        await display.wait("() => document.getElementById('connection').dataset.state === 'online'")
        # The reload said hello with the id it kept: still one display, not two.
        await eventually(lambda: _named(staff, "Hall C"))
        assert len(await displays(staff)) == 1

        await staff.peer.call("admin.display.identify", {"display_id": seen["display_id"]})
        await display.wait("() => !document.getElementById('identify').hidden")
        assert await display.page.text_content("#identify-name") == "Hall C"
        await display.shot("identify")
        display.assert_clean()
        await staff.close()


async def _announced(staff: Staff, seq: int) -> dict[str, Any] | None:
    for row in await displays(staff):
        if row.get("last_announced") == seq:
            return row
    return None


async def _named(staff: Staff, name: str) -> dict[str, Any] | None:
    for row in await displays(staff):
        if row.get("name") == name and row.get("connected"):
            return row
    return None


async def test_a_call_is_spoken_by_the_server_in_both_languages(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """The chime, then the server's WAV in Arabic and English (espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng")
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        display = await open_page(browser, f"{live.http_url}/display?clinics=lab&name=Lab",
                                  "voice-display", viewport=WALL)
        fetched: list[str] = []
        display.page.on("response", lambda r: fetched.append(r.url)
                        if "/api/v1/announce" in r.url and r.status == 200 else None)
        patient = await Peer.open(live.ws_url)
        await patient.call("patient.login", {"patient_id": "777", "gender": "male"})
        await patient.call("route.create", {"exam_type": "cooks"})
        await staff.call("lab")
        await display.wait(SHOWS, ["lab", 1])
        # The chime and two spoken sentences take a few seconds of real time.
        await display.wait("() => window.mmcProbe.played.length === 1", within_ms=30000)
        played = await display.page.evaluate("window.mmcProbe.played")
        heard = await announced(display)
        assert played == [{"clinic": "lab", "number": 1, "seq": heard[0]["seq"],
                           "voices": ["server", "server"]}]
        assert sorted(u.rsplit("lang=", 1)[-1] for u in fetched) == ["ar", "en"]
        assert len(heard) == 1
        # The next hello tells the admin which call the screen actually said.
        await display.page.reload()
        row = await eventually(lambda: _announced(staff, heard[0]["seq"]))
        assert row["voice"] == "server" and row["sound"] is True
        display.assert_clean()
        await patient.close()
        await staff.close()


async def test_a_recording_refused_for_a_moment_does_not_silence_the_server_voice(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """A 503 with Retry-After: 1 (a recording the server could not make just now) puts
    the browser's voice in for that second, not for the ten minutes kept for a server
    without espeak-ng: the next call is spoken by the server again."""
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng")
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        display = await open_page(browser, f"{live.http_url}/display?clinics=lab&name=Lab",
                                  "voice-refused", viewport=WALL)
        refused: list[str] = []

        async def refuse_once(route: Any) -> None:
            if refused:
                await route.continue_()
            else:
                refused.append(route.request.url)
                await route.fulfill(status=503, headers={"Retry-After": "1"}, body="")

        await display.page.route("**/api/v1/announce*", refuse_once)
        fetched: list[str] = []
        display.page.on("response", lambda r: fetched.append(r.url)
                        if "/api/v1/announce" in r.url and r.status == 200 else None)
        patients = []
        for n in ("778", "779"):
            patient = await Peer.open(live.ws_url)
            await patient.call("patient.login", {"patient_id": n, "gender": "male"})
            await patient.call("route.create", {"exam_type": "cooks"})
            patients.append(patient)
        await staff.call("lab")
        await display.wait("() => window.mmcProbe.played.length === 1", within_ms=30000)
        await display.page.wait_for_timeout(1500)  # past the Retry-After
        await staff.call("lab")
        await display.wait("() => window.mmcProbe.played.length === 2", within_ms=30000)
        played = await display.page.evaluate("window.mmcProbe.played")
        assert refused and played[0]["voices"][0] != "server"
        assert played[1]["number"] == 2 and played[1]["voices"] == ["server", "server"]
        assert len(fetched) == 2
        for patient in patients:
            await patient.close()
        await staff.close()


async def test_sound_waits_for_a_tap_where_the_browser_blocks_it(
        dsn: str, clock: ManualClock) -> None:
    """Without the kiosk's autoplay flag the overlay asks for a tap; the tap unlocks."""
    async with site(dsn, clock) as live, chromium(autoplay=False) as plain:
        display = await open_page(plain, f"{live.http_url}/display?clinics=lab&name=Lab",
                                  "tap-display", viewport=WALL, bypass_csp=True)
        await display.wait("() => !document.getElementById('sound-overlay').hidden")
        await display.shot("tap-for-sound")
        if AXE.is_file():
            assert await axe_violations(display.page, None) == []
        await display.page.click("#sound-overlay")
        await display.wait("() => document.getElementById('sound-overlay').hidden")
        display.assert_clean()


async def test_a_dead_link_shows_offline_and_recovers(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """The heartbeat notices a link that went silent; the display greys and comes back."""
    async with site(dsn, clock) as live, link_to(live.port) as link:
        display: Watched = await open_page(
            browser, f"{link.http_url}/display?clinics=lab&name=Lab", "dead-link-display",
            viewport=WALL)
        # Hidden alone may be the grace of a first connection still under way.
        await display.wait("() => document.getElementById('connection').dataset.state"
                           " === 'online'")
        link.stall()
        await display.wait("() => !document.getElementById('connection').hidden"
                           " && document.body.classList.contains('stale')")
        link.restore()
        await display.wait("() => document.getElementById('connection').hidden"
                           " && !document.body.classList.contains('stale')", within_ms=30000)
        display.errors = [e for e in display.errors if "WebSocket" not in e]
        display.assert_clean()


async def test_a_waiting_count_refused_for_a_moment_is_asked_for_again(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """A called examinee is sent back to wait (skipped) while the breaker is open: no
    public event counts that, the display's fresh count is refused (503, Retry-After),
    and the display asks again rather than wait for the next change, which a quiet
    clinic may not bring for long. After an outage the hub is back before the pool is
    let through; the breaker is the server's own, opened as the pool opens it."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=2.0)
    async with site(dsn, clock, breaker=breaker) as live:
        peer = await Peer.open(live.ws_url)
        await peer.call("patient.login", {"patient_id": "4200001", "gender": "male"})
        await peer.call("queue.enter", {"clinic": "lab"})
        display = await open_page(
            browser, f"{live.http_url}/display?clinics=lab&name=Lab", "refused-count-display",
            viewport=WALL, expected={("/api/v1/stats-queues", 503), ("/api/v1/announce", 503)})
        count = "document.querySelector('[data-clinic=lab] .waiting .count').textContent"
        await display.wait("() => document.getElementById('connection').dataset.state"
                           f" === 'online' && {count} === '1'")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT mmc_call_next($1, $2)", "lab", clock.now())
            await display.wait(SHOWS, ["lab", 1])
            await display.wait(f"() => {count} === '0'")
            breaker.record_failure()
            await conn.execute("SELECT mmc_entry_action($1, $2, $3, $4)", "lab", 1, "skip",
                               clock.now())
        finally:
            await conn.close()
        await display.wait(f"() => {count} === '1'")
        display.assert_clean()
        await peer.close()
        await display.page.context.close()


async def test_a_display_offline_for_ten_minutes_reloads_itself(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """After ten minutes without the server the page loads itself again (fake clock)."""
    async with site(dsn, clock) as live:
        url = f"{live.http_url}/display?clinics=lab&name=Lab"
        context = await browser.new_context(viewport=WALL)
        page = await context.new_page()
        await page.clock.install()
        await page.goto(url)
        await page.wait_for_function("() => window.mmcProbe && window.mmcProbe.ready"
                                     " && document.getElementById('connection').hidden")
    await page.wait_for_function("() => !document.getElementById('connection').hidden")
    await page.clock.fast_forward("09:00")
    assert await page.evaluate("window.mmcProbe && window.mmcProbe.ready")
    async with page.expect_request(lambda r: r.url == url and r.is_navigation_request()):
        await page.clock.fast_forward("02:00")
    await context.close()


SIX = ("lab", "xray", "vitals", "eyes", "internal", "ent")


async def test_six_clinics_fit_one_screen_in_both_languages(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """Six clinics, each with a number and four earlier calls, without scrolling."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        for i, clinic in enumerate(SIX):
            for n in range(6):
                patient = f"8{i}{n:04d}"
                await conn.execute("SELECT mmc_patient_login($1, 'male', $2)", patient,
                                   clock.now())
                await conn.execute("SELECT mmc_queue_enter($1, $2, $3)", patient, clinic,
                                   clock.now())
    finally:
        await conn.close()
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        for _ in range(5):
            for clinic in SIX:
                await staff.call(clinic)
        for lang in ("ar", "en"):
            display = await open_page(
                browser, f"{live.http_url}/display?clinics={','.join(SIX)}&name=Hall%20D",
                f"{lang}-display-six", viewport=WALL, lang=lang)
            await display.wait("() => document.querySelectorAll('.recent-list li').length"
                               " === 24")
            await display.shot("calling")
            # Every piece of every card inside its card (a card hides what overflows).
            crowded = await display.page.evaluate(
                """() => [...document.querySelectorAll('.clinic')].flatMap(card => {
                     const box = card.getBoundingClientRect();
                     return [...card.querySelectorAll('*')].filter(e => {
                       const r = e.getBoundingClientRect();
                       return r.height > 0 && (r.bottom > box.bottom + 1 || r.top < box.top - 1
                         || r.left < box.left - 1 || r.right > box.right + 1);
                     }).map(e => `${card.dataset.clinic}: ${e.className || e.tagName}`);
                   })""")
            assert crowded == []
            assert await display.page.evaluate(
                "document.documentElement.scrollHeight <= innerHeight")
            display.assert_clean()
        await staff.close()
