"""The reception desk (/reception) in Chromium: a reception account registers an examinee
without a smartphone, the slip's QR code logs a phone straight into that route (once), and
axe finds nothing serious on any state in either language; screenshots of each."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from server.clock import ManualClock
from tests.api import STAFF_PASSWORD, create_accounts
from tests.web.browser import AXE, PHONE, missing, site
from tests.web.scenes import card
from tests.web.staff_pages import (
    DESKTOP,
    Audit,
    create_reception,
    open_staff,
    sign_in,
    wall_clock,
)

DESK_PASSWORD = "desk password 1"


async def qr_target(base: str, src: str) -> str:
    """The address a QR code on the page encodes (segno writes it as the SVG's title)."""
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get(src)
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    found = re.search(r"<title>(.*?)</title>", response.text)
    assert found is not None
    return unescape(found.group(1))


@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_a_slip_logs_a_phone_into_its_route(browser: Any, dsn: str, clock: ManualClock,
                                                   lang: str) -> None:
    """Issue 22, item 6 (and item 7 for the reception page)."""
    if not AXE.is_file():
        missing("axe-core (npm ci --prefix tests/web)")
    wall_clock(clock)
    await create_accounts(dsn)
    audit = Audit()
    async with site(dsn, clock) as live:
        await create_reception(dsn, "front_desk", DESK_PASSWORD)
        desk = await open_staff(browser, f"{live.http_url}/reception", f"{lang}-reception",
                               viewport=DESKTOP, lang=lang, bypass_csp=True)
        page = desk.page
        await audit.check(desk, "login")
        # A clinic's account is not a reception account.
        await page.fill("#username", "staff_lab")
        await page.fill("#password", STAFF_PASSWORD)
        await page.click("#login-form button[type=submit]")
        await desk.wait("() => document.getElementById('login-error').textContent !== ''"
                        " && document.body.dataset.screen === 'login'")
        await audit.check(desk, "login-refused")
        await sign_in(desk, "front_desk", DESK_PASSWORD)
        await audit.check(desk, "form")
        await page.fill("#patient-id", "12x")
        await page.click("#register-form button[type=submit]")
        await desk.wait("() => document.getElementById('register-error').textContent !== ''")
        await audit.check(desk, "form-error")

        patient = "81234567" if lang == "ar" else "81234568"
        await page.fill("#patient-id", patient)
        await page.check("input[name=gender][value=female]")
        await page.check("input[name=exam_type][value=promotion]")
        await page.click("#register-form button[type=submit]")
        await desk.wait("() => document.body.dataset.slip === 'shown'"
                        " && document.getElementById('slip-qr').complete")
        number = await page.text_content("#slip-number")
        assert number and number.isdigit()
        assert await page.text_content("#slip-id") == "****" + patient[-4:]
        await audit.check(desk, "slip")
        await page.set_viewport_size(PHONE)
        await audit.check(desk, "slip-phone")
        await page.emulate_media(media="print")
        await audit.check(desk, "slip-print")
        await page.emulate_media(media="screen")
        await page.set_viewport_size(DESKTOP)

        target = await qr_target(live.http_url, str(await page.evaluate("window.mmcProbe.qr")))
        parts = urlsplit(target)
        assert parts.path == "/" and parts.query.startswith(f"slip={patient}.f.")
        link = f"{live.http_url}/?{parts.query}"
        phone = await open_staff(browser, link, f"{lang}-reception-phone", viewport=PHONE,
                                lang=lang, bypass_csp=True)
        await phone.wait("() => document.body.dataset.screen === 'route'"
                         " && document.getElementById('card-number').textContent !== ''")
        shown = await card(phone)
        assert shown["number"] == number
        assert "slip=" not in phone.page.url  # the one-time code leaves the address bar
        await audit.check(phone, "after-qr")

        # The code is spent: the same link a second time signs no one in.
        again = await open_staff(browser, link, f"{lang}-reception-reused", viewport=PHONE,
                                lang=lang, bypass_csp=True,
                                expected={("/api/v1/patient-login", 401)})
        await again.wait("() => document.body.dataset.screen === 'login'"
                         " && document.getElementById('login-error').textContent !== ''")
        await audit.check(again, "reused")

        await page.click("#slip-new")
        await desk.wait("() => document.body.dataset.slip === 'none'")
        for watched in (desk, phone, again):
            await watched.page.context.close()
    assert audit.found == {}
    for watched in (desk, phone, again):
        watched.assert_clean()
