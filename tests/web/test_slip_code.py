"""The phone's sign-in form with a reception slip's code typed by hand (for a phone that
cannot scan the QR code): registered mode admits the code, refuses a wrong one plainly,
and open mode still signs in without one; axe and screenshots of each state."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from server.clock import ManualClock
from tests.web.browser import AXE, PHONE, missing, site
from tests.web.scenes import Staff, card
from tests.web.staff_pages import Audit, StaffWatched, open_staff, wall_clock
from tests.web.test_pages import table
from tests.web.test_phone import _fits

ERROR = "() => document.getElementById('login-error').textContent"
TOKEN = "() => localStorage.getItem('mmc.patient.token')"


def as_typed(code: str) -> str:
    """The code as a person may type it: lower case, a dash in the middle, the digits in
    Arabic-Indic (an Arabic keyboard's)."""
    typed = "".join(chr(0x660 + int(c)) if c.isdigit() else c.lower() for c in code)
    return f"{typed[:4]}-{typed[4:]}"


def another(code: str) -> str:
    """A code of the right shape that is not this one."""
    return ("B" if code[0] == "A" else "A") + code[1:]


async def sessions_of(dsn: str, patient_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM sessions WHERE role = 'patient'"
                                    " AND subject = $1", patient_id)
    finally:
        await conn.close()
    return int(count)


async def clinic_name(dsn: str, code: str, lang: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        name = await conn.fetchval(f"SELECT {'name_ar' if lang == 'ar' else 'name'}"
                                   " FROM clinics WHERE code = $1", code)
    finally:
        await conn.close()
    return str(name)


async def submit(phone: StaffWatched, patient_id: str, gender: str, code: str | None) -> None:
    page = phone.page
    await page.evaluate("document.getElementById('login-error').textContent = ''")
    await page.fill("#patient-id", patient_id)
    await page.check(f"input[name=gender][value={gender}]")
    if code is not None:
        if not await page.evaluate("document.getElementById('slip-box').open"):
            await page.click("#slip-box > summary")
        await page.fill("#login-code", code)
    await page.click("#login-form button[type=submit]")


async def refused_with(phone: StaffWatched, text: str) -> None:
    await phone.wait(f"() => ({ERROR})() !== ''")
    assert await phone.page.evaluate(ERROR) == text
    assert await phone.page.evaluate("document.body.dataset.screen") == "login"
    assert await phone.page.evaluate(TOKEN) is None


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_a_slip_code_typed_by_hand_signs_in(browser: Any, dsn: str, clock: ManualClock,
                                                   lang: str) -> None:
    """Registered mode: no code, a malformed code, a wrong code are refused plainly and
    sign no one in; the slip's code as typed signs in to the route's first clinic; open
    mode signs in without a code."""
    if not AXE.is_file():
        missing("axe-core (npm ci --prefix tests/web)")
    strings = table(lang)
    wall_clock(clock)
    audit = Audit()
    async with site(dsn, clock) as live:
        admin = await Staff.open(live, dsn)
        await admin.peer.call("admin.settings.set",
                              {"key": "patient_registration", "value": "registered"})
        patient = "71234567" if lang == "ar" else "71234568"
        slip = await admin.peer.call("reception.register", {
            "patient_id": patient, "gender": "female", "exam_type": "promotion"})
        code, first = slip["login_code"], slip["current"]

        phone = await open_staff(browser, f"{live.http_url}/", f"{lang}-slip-code",
                                 viewport=PHONE, lang=lang, bypass_csp=True)
        page = phone.page
        assert await page.evaluate("document.getElementById('slip-box').open") is False
        assert await page.is_hidden("#login-code")
        await audit.check(phone, "closed")

        # Registered mode and no code: what to check, and the code's box opens.
        await submit(phone, patient, "female", None)
        await refused_with(phone, strings["login.refused"])
        assert await page.is_visible("#login-code")
        await audit.check(phone, "refused-no-code")

        # A code of the wrong shape is said at once, without asking the server.
        await submit(phone, patient, "female", "AB2C")
        await refused_with(phone, strings["login.badCode"])
        assert await page.get_attribute("#login-code", "aria-invalid") == "true"
        assert await page.evaluate("document.activeElement.id") == "login-code"
        await audit.check(phone, "code-malformed")
        await submit(phone, patient, "female", "شسيبلاتن")
        await refused_with(phone, strings["login.codeLatin"])

        # A wrong code (right shape) and a wrong gender with the right code: refused.
        await submit(phone, patient, "female", another(code))
        await refused_with(phone, strings["login.refusedCode"])
        await audit.check(phone, "code-refused")
        # The same words in the other language after a switch; at 200% text, no sideways scroll.
        other = "en" if lang == "ar" else "ar"
        await page.click("#lang")
        assert await page.evaluate(ERROR) == table(other)["login.refusedCode"]
        await page.click("#lang")
        assert await page.evaluate(ERROR) == strings["login.refusedCode"]
        await page.evaluate("document.documentElement.style.fontSize = '200%'")
        await page.fill("#login-code", "WWWWWWWW")   # the widest code there can be
        await phone.shot("code-refused-200")
        assert await _fits(page)
        await page.evaluate("document.documentElement.style.fontSize = ''")
        await submit(phone, patient, "male", code)
        await refused_with(phone, strings["login.refusedCode"])
        assert await sessions_of(dsn, patient) == 0

        # The slip's code as a person types it: straight to the route's first clinic.
        await submit(phone, patient, "female", as_typed(code))
        await phone.wait("() => document.body.dataset.screen === 'route'"
                         " && document.getElementById('card-number').textContent !== ''")
        shown = await card(phone)
        assert shown["current"] == first["clinic"]
        assert shown["number"] == str(first["number"])
        assert shown["clinic"] == await clinic_name(dsn, first["clinic"], lang)
        assert await page.evaluate(TOKEN)
        assert await page.input_value("#login-code") == ""   # spent: not left on the phone
        assert await sessions_of(dsn, patient) == 1
        await audit.check(phone, "signed-in")

        # Open mode: the common case needs no code and does not send an empty one.
        await admin.peer.call("admin.settings.set",
                              {"key": "patient_registration", "value": "open"})
        await page.click("#logout")
        await phone.wait("() => document.body.dataset.screen === 'login'")
        assert await page.evaluate("document.getElementById('slip-box').open") is False
        walk_in = "6123456" if lang == "ar" else "6123457"
        await submit(phone, walk_in, "male", None)
        await phone.wait("() => document.body.dataset.screen === 'exam'")
        assert await sessions_of(dsn, walk_in) == 1
        await page.context.close()
        await admin.close()
    assert audit.found == {}, audit.found
    phone.assert_clean()
