"""axe-core on every state of both pages, in Arabic and in English: no serious or
critical violation; a screenshot of each state goes to tests/artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from server.clock import ManualClock
from tests.web.browser import AXE, PHONE, WALL, Watched, axe_violations, missing, open_page, site
from tests.web.scenes import Staff, card

CLINICS = "lab,internal,ent,surgery"


class Audit:
    """Runs axe on each state it is shown and keeps what it found."""

    def __init__(self) -> None:
        self.found: dict[str, list[dict[str, Any]]] = {}

    async def check(self, page: Watched, state: str) -> None:
        await page.shot(state)
        violations = await axe_violations(page.page, None)
        if violations:
            self.found[f"{page.name}-{state}"] = violations


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_every_state_passes_axe(browser: Any, dsn: str, clock: ManualClock,
                                      lang: str) -> None:
    """Login, exam, waiting, called, PIN, wrong PIN, missed, completed; display idle and calling."""
    if not AXE.is_file():
        missing("axe-core (npm ci --prefix tests/web)")
    audit = Audit()
    async with site(dsn, clock) as live:
        staff = await Staff.open(live, dsn)
        wall = await open_page(browser, f"{live.http_url}/display?clinics={CLINICS}&name=Hall%20B",
                               f"{lang}-display-four", viewport=WALL, lang=lang, bypass_csp=True)
        single = await open_page(browser, f"{live.http_url}/display?clinics=lab&name=Lab",
                                 f"{lang}-display-one", viewport=WALL, lang=lang, bypass_csp=True)
        phone = await open_page(browser, live.http_url + "/", f"{lang}-phone", viewport=PHONE,
                                lang=lang, bypass_csp=True)
        assert await phone.page.evaluate("document.documentElement.lang") == lang
        assert await phone.page.evaluate("document.documentElement.dir") == (
            "rtl" if lang == "ar" else "ltr")
        await audit.check(wall, "idle")
        await audit.check(single, "idle")
        await audit.check(phone, "login")

        await phone.page.fill("#patient-id", "x1")
        await phone.page.click("#login-form button[type=submit]")
        await phone.wait("() => document.getElementById('login-error').textContent !== ''")
        await audit.check(phone, "login-error")

        patient = "5550001" if lang == "ar" else "5550002"
        await phone.page.fill("#patient-id", patient)
        await phone.page.check("input[name=gender][value=male]")
        await phone.page.click("#login-form button[type=submit]")
        await phone.wait("() => document.body.dataset.screen === 'exam'")
        await audit.check(phone, "exam")
        await phone.page.check("input[name=exam_type][value=cooks]")
        await phone.page.click("#exam-form button[type=submit]")
        await phone.wait("() => document.body.dataset.screen === 'route'")
        await audit.check(phone, "waiting")
        # The footer names the military ID as such: beside a queue number, "the number"
        # alone would be read as that.
        assert await phone.page.text_content("#signed-in") == (
            f"الرقم العسكري: {patient}" if lang == "ar" else f"ID: {patient}")

        await staff.call("lab")
        await phone.wait("() => !document.getElementById('turn').hidden")
        await wall.wait("() => document.querySelector('[data-clinic=lab] .number')"
                        ".textContent === '1'")
        await audit.check(phone, "called")
        await audit.check(wall, "calling")
        await audit.check(single, "calling")

        await staff.act("done", "lab", 1)
        await phone.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        await audit.check(phone, "advanced")
        shown = await card(phone)
        clinic, number = str(shown["current"]), int(shown["number"])
        await staff.call(clinic)
        await phone.wait("() => !document.getElementById('pin').hidden")
        await audit.check(phone, "pin")
        await phone.page.fill("#pin-input", "1")
        await phone.page.click("#pin-form button[type=submit]")
        await phone.wait("() => document.getElementById('pin-error').textContent !== ''")
        await audit.check(phone, "pin-error")

        await staff.act("no_show", clinic, number)
        await phone.wait("() => !document.getElementById('missed').hidden")
        assert (await card(phone))["number"] == ""
        await audit.check(phone, "missed")
        await phone.page.click("#rejoin")
        await phone.wait("() => document.getElementById('missed').hidden"
                         " && document.getElementById('card-number').textContent !== ''")

        while (await card(phone))["screen"] == "route":
            clinic = str((await card(phone))["current"])
            await staff.call(clinic)
            await phone.wait("() => !document.getElementById('pin').hidden")
            await phone.page.fill("#pin-input", await staff.pin(clinic))
            await phone.page.click("#pin-form button[type=submit]")
            await phone.wait("""(clinic) => document.body.dataset.screen === 'done'
                 || document.querySelector('.station.state-current')?.dataset.clinic !== clinic""",
                             clinic)
        await audit.check(phone, "completed")

        await phone.page.click("#logout")
        await phone.wait("() => document.body.dataset.screen === 'login'")
        await phone.page.reload()
        await phone.wait("() => window.mmcProbe && window.mmcProbe.ready")
        assert await phone.page.evaluate("document.body.dataset.screen") == "login"
        await staff.close()
    assert audit.found == {}
    for page in (wall, single, phone):
        page.assert_clean()
