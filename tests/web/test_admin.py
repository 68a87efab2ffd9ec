"""The admin dashboard (/admin) in Chromium: an account made in the Accounts tab calls by
keyboard at the console and the live board follows within 1 s; disabling it sends its
console (on another server process) back to the login within 2 s; reports of a simulated
day with charts and a CSV equal to the JSON; displays come and go; axe on every tab."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pytest

from server import reports
from server.clock import ManualClock
from server.db import Database
from server.scheduler import Scheduler
from tests.api import ADMIN_PASSWORD, create_accounts
from tests.simulation import Day, Simulation
from tests.web.browser import AXE, Watched, chromium, missing, site
from tests.web.staff_pages import (
    DESKTOP,
    ONE_SECOND_MS,
    Audit,
    admin_peer,
    open_staff,
    queue_examinees,
    sign_in,
    wall_clock,
)

NEW_PASSWORD = "nurse password 1"
BOARD_LAB = "document.querySelector('#board-rows tr[data-clinic=lab]')"


async def keyboard_sign_in(page: Any, username: str, password: str) -> None:
    """Tab to the username field, type, tab, type, Enter: no mouse."""
    for _ in range(6):
        if await page.evaluate("document.activeElement && document.activeElement.id") == "username":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "username"
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")


async def create_account(admin: Watched, username: str, clinic: str) -> None:
    page = admin.page
    await page.click("#tab-staff")
    await admin.wait("() => document.getElementById('new-clinic').options.length > 0")
    await page.fill("#new-username", username)
    await page.fill("#new-password", NEW_PASSWORD)
    await page.select_option("#new-role", "staff")
    await page.select_option("#new-clinic", clinic)
    await page.click("#staff-form button[type=submit]")
    await admin.wait(f"() => document.querySelector('#staff-rows tr[data-username={username}]')")


async def test_an_account_made_here_calls_by_keyboard_and_the_board_follows(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """Issue 22, item 1."""
    wall_clock(clock, 5)
    await create_accounts(dsn, staff_clinics=())
    async with site(dsn, clock) as live:
        peers = await queue_examinees(live, ["6100001", "6100002"])
        wall_clock(clock)
        admin = await open_staff(browser, f"{live.http_url}/admin", "admin-create",
                                viewport=DESKTOP, lang="en")
        await sign_in(admin, "admin", ADMIN_PASSWORD)
        await admin.wait(f"() => {BOARD_LAB} && {BOARD_LAB}.querySelector('.col-waiting')"
                         ".textContent === '2'")
        await create_account(admin, "nurse_lab", "lab")
        await admin.page.click("#tab-board")
        updates = await admin.page.evaluate("window.mmcProbe.boardUpdates")

        console = await open_staff(browser, f"{live.http_url}/clinic", "console-keyboard",
                                  viewport=DESKTOP, lang="en")
        await keyboard_sign_in(console.page, "nurse_lab", NEW_PASSWORD)
        await console.wait("() => document.body.dataset.screen === 'main'"
                           " && !document.getElementById('act-call').disabled")
        await console.page.keyboard.press("n")
        await console.wait("() => document.getElementById('current-number').textContent === '1'")
        # The board hears it on the admin channel: no reload, no polling.
        await admin.wait(f"() => {BOARD_LAB}.querySelector('.col-waiting').textContent === '1'"
                         f" && {BOARD_LAB}.querySelector('.col-serving').textContent === '1'",
                         within_ms=ONE_SECOND_MS)
        assert await admin.page.evaluate("window.mmcProbe.boardUpdates") > updates
        assert await admin.page.evaluate("performance.getEntriesByType('navigation').length") == 1
        for peer in peers:
            await peer.close()
        await console.page.context.close()
        await admin.page.context.close()
    admin.assert_clean()
    console.assert_clean()


async def test_disabling_an_account_ends_its_console_on_another_process(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """Issue 22, item 3: the console on one server process, the admin on another; a
    password reset ends the console's session too."""
    wall_clock(clock)
    await create_accounts(dsn)
    async with site(dsn, clock) as one, site(dsn, clock) as two:
        await queue_examinees(one, ["6200001"])
        console = await open_staff(browser, f"{one.http_url}/clinic", "console-disabled",
                                  viewport=DESKTOP, lang="en")
        await sign_in(console, "staff_lab", "staff password 1")
        await console.wait("() => document.getElementById('waiting-rows').children.length === 1")
        admin = await open_staff(browser, f"{two.http_url}/admin", "admin-disable",
                                viewport=DESKTOP, lang="en")
        await sign_in(admin, "admin", ADMIN_PASSWORD)
        await admin.page.click("#tab-staff")
        row = "#staff-rows tr[data-username=staff_lab]"
        await admin.page.wait_for_selector(row)
        started = time.monotonic()
        await admin.page.click(f"{row} button[data-action=disable]")
        await console.wait("() => document.body.dataset.screen === 'login'",
                           within_ms=2 * ONE_SECOND_MS)
        elapsed = time.monotonic() - started
        assert elapsed < 2 * ONE_SECOND_MS / 1000, elapsed
        assert await console.page.text_content("#login-error") != ""
        await admin.wait(f"() => document.querySelector('{row} button[data-action=enable]')")
        # The account is disabled: signing in again is refused.
        await console.page.fill("#username", "staff_lab")
        await console.page.fill("#password", "staff password 1")
        await console.page.click("#login-form button[type=submit]")
        await console.wait("() => document.getElementById('login-error').textContent !== ''"
                           " && document.body.dataset.screen === 'login'")
        # Enabled again, signed in again; a password reset ends that session the same way.
        await admin.page.click(f"{row} button[data-action=enable]")
        await admin.wait(f"() => document.querySelector('{row} button[data-action=disable]')")
        await sign_in(console, "staff_lab", "staff password 1")
        await admin.page.click(f"{row} button[data-action=reset]")
        await admin.page.fill("#reset-password", "a new password 9")
        await admin.page.click("#reset-save")
        await console.wait("() => document.body.dataset.screen === 'login'",
                           within_ms=2 * ONE_SECOND_MS)
        await sign_in(console, "staff_lab", "a new password 9")
        await console.page.context.close()
        await admin.page.context.close()
    admin.assert_clean()
    console.assert_clean()


REPORT_DAY = date(2026, 3, 1)


async def simulate(dsn: str, clock: ManualClock) -> None:
    """A committee morning through the commands (tests/simulation.py)."""
    db = await Database.connect(dsn, clock=clock, min_size=1, max_size=4)
    scheduler = Scheduler(dsn, clock=clock)
    try:
        async with db.pool.acquire() as conn:
            await conn.execute("UPDATE clinics SET call_interval = 90, capacity = 3")
        await Simulation(db, clock, scheduler).run_day(Day(REPORT_DAY, 30, 7, 34000000))
    finally:
        await scheduler.close()
        await db.close()


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_reports_chart_a_simulated_day_and_its_csv_is_the_json(
        browser: Any, dsn: str, clock: ManualClock, lang: str) -> None:
    """Issue 22, item 4, with axe on the charts."""
    await create_accounts(dsn)
    await simulate(dsn, clock)
    wall_clock(clock)
    audit = Audit()
    async with site(dsn, clock) as live:
        admin = await open_staff(browser, f"{live.http_url}/admin", f"{lang}-admin-reports",
                                viewport=DESKTOP, lang=lang, bypass_csp=True)
        page = admin.page
        await sign_in(admin, "admin", ADMIN_PASSWORD)
        await page.click("#tab-reports")
        await page.fill("#report-date", REPORT_DAY.isoformat())
        await page.select_option("#report-type", "daily")
        await page.click("#report-form button[type=submit]")
        await admin.wait("() => document.querySelectorAll('#report-charts figure').length === 5")
        peer = await admin_peer(live, dsn, clock)
        report = await peer.call("report.get", {"type": "daily", "date": REPORT_DAY.isoformat()})
        await peer.close()
        assert report["total"]["served"] > 0
        charted = await page.eval_on_selector_all("#report-charts figure:has(svg)",
                                                  "figures => figures.map(f => f.dataset.chart)")
        assert {"hours", "wait", "clinics"} <= set(charted), charted
        # The tables beside the charts hold the report's figures.
        served = await page.eval_on_selector_all(
            "figure[data-chart=hours] tbody tr",
            "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")
        by_hour = {f"{h['hour']:02d}": h["served"] for h in report["hours"]}
        assert all(by_hour[hour] == int(value) for hour, value in served), served
        assert sum(int(value) for _, value in served) == report["total"]["served"]
        breaches = await page.eval_on_selector_all(
            "figure[data-chart=sla] tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
        assert sum(int(v) for v in breaches) == report["total"]["sla_breaches"]
        await page.click("figure[data-chart=hours] summary")
        await audit.check(admin, "charts")
        async with page.expect_download() as info:
            await page.click("#report-csv")
        download = await info.value
        path = await download.path()
        assert download.suggested_filename == f"report-daily-{REPORT_DAY.isoformat()}.csv"
        assert path.read_bytes().decode() == reports.render_csv(report)
        await page.context.close()
    assert audit.found == {}
    admin.assert_clean()


async def test_displays_appear_go_and_show_muted(dsn: str, clock: ManualClock) -> None:
    """Issue 22, item 5: a display that never had a tap is muted; identify reaches it;
    closed, it is shown gone within 60 s."""
    wall_clock(clock)
    await create_accounts(dsn)
    async with chromium(autoplay=False) as quiet, site(dsn, clock) as live:
        wall = await open_staff(quiet, f"{live.http_url}/display?clinics=lab,xray&name=Hall%20M",
                               "display-presence", viewport={"width": 1280, "height": 720})
        admin = await open_staff(quiet, f"{live.http_url}/admin", "admin-displays",
                                viewport=DESKTOP, lang="en")
        await sign_in(admin, "admin", ADMIN_PASSWORD)
        await admin.page.click("#tab-displays")
        row = "#display-rows tr"
        await admin.wait(f"() => document.querySelector('{row}')"
                         f" && document.querySelector('{row} th').textContent === 'Hall M'"
                         f" && document.querySelector('{row}').dataset.connected === 'true'")
        assert await admin.page.get_attribute(row, "data-sound") == "false"
        assert await admin.page.get_attribute(row, "class") == "needs-care"
        await admin.page.click(f"{row} button")
        await wall.wait("() => !document.getElementById('identify').hidden")
        await wall.page.context.close()
        await admin.wait(f"() => document.querySelector('{row}').dataset.connected === 'false'",
                         within_ms=60_000)
        await admin.page.context.close()
    admin.assert_clean()


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_every_admin_tab_and_state_passes_axe(browser: Any, dsn: str, clock: ManualClock,
                                                    lang: str) -> None:
    """Issue 22, item 7 for the admin page: login, every tab, paused, refused values,
    a new account, the password dialog, a display present; screenshots of each."""
    if not AXE.is_file():
        missing("axe-core (npm ci --prefix tests/web)")
    wall_clock(clock, 15)
    await create_accounts(dsn)
    audit = Audit()
    async with site(dsn, clock) as live:
        await queue_examinees(live, ["7100001", "7100002", "7100003"])
        wall_clock(clock)
        wall = await open_staff(browser, f"{live.http_url}/display?clinics=lab&name=Lab%20door",
                               f"{lang}-admin-display", viewport={"width": 1280, "height": 720})
        admin = await open_staff(browser, f"{live.http_url}/admin", f"{lang}-admin",
                                viewport=DESKTOP, lang=lang, bypass_csp=True)
        page = admin.page
        await audit.check(admin, "login")
        await page.fill("#username", "admin")
        await page.fill("#password", "wrong password")
        await page.click("#login-form button[type=submit]")
        await admin.wait("() => document.getElementById('login-error').textContent !== ''")
        await audit.check(admin, "login-error")
        await sign_in(admin, "admin", ADMIN_PASSWORD)
        await admin.wait(f"() => {BOARD_LAB} && {BOARD_LAB}.querySelector('.col-waiting')"
                         ".textContent === '3'")
        await audit.check(admin, "board")
        await page.click("#board-rows tr[data-clinic=xray] button")
        await admin.wait("() => document.querySelector('#board-rows tr[data-clinic=xray]')"
                         ".classList.contains('is-paused')")
        await audit.check(admin, "board-paused")

        await page.click("#tab-pins")
        await admin.wait("() => document.querySelectorAll('#pin-cards li').length > 3")
        peer = await admin_peer(live, dsn, clock)
        pins = (await peer.call("pin.current"))["pins"]
        await peer.close()
        shown = await page.eval_on_selector_all(
            "#pin-cards li", "cards => Object.fromEntries(cards.map(c => [c.dataset.clinic,"
            " c.querySelector('.pin-card-value').textContent]))")
        assert shown == pins
        # A new PIN for eyes at once: the card shows the server's new PIN.
        await page.click("#pin-cards li[data-clinic=eyes] button")
        await admin.wait("old => !document.querySelector('#pin-cards li[data-clinic=eyes] button')"
                         ".disabled && document.getElementById('pins-error').textContent === ''"
                         " && document.querySelector('#pin-cards li[data-clinic=eyes] "
                         ".pin-card-value').textContent !== old", pins["eyes"])
        peer = await admin_peer(live, dsn, clock)
        fresh = (await peer.call("pin.current"))["pins"]
        await peer.close()
        assert fresh["eyes"] != pins["eyes"]
        assert {c: p for c, p in fresh.items() if c != "eyes"} == \
            {c: p for c, p in pins.items() if c != "eyes"}
        assert await page.text_content("#pin-cards li[data-clinic=eyes] .pin-card-value") == \
            fresh["eyes"]
        await audit.check(admin, "pins")
        await page.emulate_media(media="print")
        await audit.check(admin, "pins-print")
        await page.emulate_media(media="screen")

        await page.click("#tab-staff")
        await page.wait_for_selector("#staff-rows tr[data-username=staff_eyes]")
        await page.fill("#new-username", "short")
        await page.fill("#new-password", "short")
        await page.click("#staff-form button[type=submit]")
        await admin.wait("() => document.getElementById('staff-form-error').textContent !== ''")
        await audit.check(admin, "staff-refused")
        await create_account(admin, "desk_one", "lab")
        await audit.check(admin, "staff-created")
        await page.click("#staff-rows tr[data-username=desk_one] button[data-action=reset]")
        await admin.wait("() => document.getElementById('reset-dialog').open")
        await audit.check(admin, "staff-reset")
        await page.fill("#reset-password", "another password 2")
        await page.click("#reset-save")
        await admin.wait("() => !document.getElementById('reset-dialog').open")

        await page.click("#tab-settings")
        field = "#setting-max_postpones"
        await page.wait_for_selector(field)
        await page.fill(field, "99")
        await page.click("form[data-key=max_postpones] button")
        await admin.wait("() => document.getElementById('setting-max_postpones-error')"
                         ".textContent.includes('1..20')")
        assert await page.input_value(field) == "99"  # kept, to be corrected
        await audit.check(admin, "settings-refused")
        await page.fill(field, "4")
        await page.click("form[data-key=max_postpones] button")
        await admin.wait("() => document.querySelector('form[data-key=max_postpones] .saved')")
        await audit.check(admin, "settings")

        await page.click("#tab-displays")
        await admin.wait("() => document.querySelectorAll('#display-rows tr').length === 1")
        await audit.check(admin, "displays")
        await page.click("#tab-reports")
        await admin.wait("() => document.querySelectorAll('#report-charts figure').length === 5")
        await audit.check(admin, "reports")
        await page.click("#logout")
        await admin.wait("() => document.body.dataset.screen === 'login'")
        await wall.page.context.close()
        await page.context.close()
    assert audit.found == {}
    admin.assert_clean()
