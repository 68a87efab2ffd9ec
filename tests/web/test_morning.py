"""A scripted morning in real Chromium: two phones and one display against the real
server; staff call over the WebSocket; calls are shown and heard once; a PIN (or Done)
moves a phone on until the completion screen."""

from __future__ import annotations

from typing import Any

from server.clock import ManualClock
from tests.web.browser import PHONE, WALL, Watched, open_page, site
from tests.web.scenes import Staff, announced, card, login

DISPLAY_CLINICS = "lab,internal,ent,surgery"


async def wait_called(display: Watched, clinic: str, number: int) -> None:
    await display.wait(
        """([clinic, number]) => {
             const n = document.querySelector(`[data-clinic="${clinic}"] .number`);
             return n && n.textContent === String(number);
           }""", [clinic, number])


async def test_a_morning_from_login_to_the_committee_reception(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """Arabic-Indic login, exam, calls shown and announced once, PIN, completion."""
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        display = await open_page(browser, f"{live.http_url}/display?clinics={DISPLAY_CLINICS}"
                                  "&name=Hall%20A", "morning-display", viewport=WALL)
        first = await open_page(browser, live.http_url + "/", "morning-phone-1", viewport=PHONE)
        second = await open_page(browser, live.http_url + "/", "morning-phone-2", viewport=PHONE)
        await first.shot("login")

        await login(first, "١٢٣٤٥٦", "male", "cooks")
        await login(second, "2002", "female", "recruitment")
        shown = await card(first)
        assert shown["number"] == "1" and shown["current"] == "lab"
        assert (await card(second))["number"] == "2"
        await first.shot("waiting")

        called = await staff.call("lab")
        assert called["number"] == 1
        await wait_called(display, "lab", 1)
        await first.wait("() => !document.getElementById('turn').hidden")
        assert [a["number"] for a in await announced(display)] == [1]
        assert await first.page.title() != await second.page.title()
        await first.shot("called")
        await display.shot("calling")

        # The laboratory uses no PIN: staff mark it done and the phone moves on.
        await staff.act("done", "lab", 1)
        await first.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        calls = 1
        wrong_tried = False
        while (await card(first))["screen"] == "route":
            clinic = str((await card(first))["current"])
            number = int((await card(first))["number"])
            await staff.call(clinic)
            calls += 1
            await wait_called(display, clinic, number)
            await first.wait("() => !document.getElementById('pin').hidden")
            pin = await staff.pin(clinic)
            if not wrong_tried:
                wrong_tried = True
                await first.page.fill("#pin-input", f"{(int(pin) + 1) % 100:02d}")
                await first.page.click("#pin-form button[type=submit]")
                await first.wait("() => document.getElementById('pin-error').textContent !== ''")
                assert await first.page.text_content("#pin-error") == (
                    "الرمز غير صحيح. تأكد منه لدى موظفي العيادة وحاول مرة أخرى.")
                await first.shot("pin-wrong")
            await first.page.fill("#pin-input", pin)
            await first.page.click("#pin-form button[type=submit]")
            await first.wait(
                """(clinic) => document.body.dataset.screen === 'done'
                     || document.querySelector('.station.state-current')?.dataset.clinic
                        !== clinic""", clinic)
        assert (await card(first))["screen"] == "done"
        assert "الطابق الأول" in (await first.page.text_content("#screen-done") or "")
        await first.shot("done")

        heard = await announced(display)
        assert len(heard) == calls == 4
        assert len({a["seq"] for a in heard}) == calls, heard
        # The second patient, never called, still waits at the laboratory.
        assert (await card(second))["current"] == "lab" and not (await card(second))["turn"]
        for page in (display, first, second):
            page.assert_clean()
        await staff.close()
