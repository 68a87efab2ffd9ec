"""The server restarts under an open display and phone: both say they are offline, grey
what they show, come back by themselves, never announce an old call again, announce a
new one once; a reload of either keeps the same state."""

from __future__ import annotations

from typing import Any

from server.clock import ManualClock
from tests.harness import free_port
from tests.realtime import Peer
from tests.web.browser import PHONE, WAIT_MS, WALL, open_page, site
from tests.web.scenes import Staff, announced, card, login

OFFLINE = ("() => !document.getElementById('connection').hidden"
           " && document.body.classList.contains('stale')")
ONLINE = "() => document.getElementById('connection').hidden"
LAB_SHOWS = "(n) => document.querySelector('[data-clinic=lab] .number').textContent === String(n)"
# Backoff after a restart may wait a few seconds before it tries again.
BACK_MS = 6 * WAIT_MS


async def test_a_restart_is_survived_without_a_second_announcement(
        browser: Any, dsn: str, clock: ManualClock) -> None:
    """Offline badge, resync, no repeated call, a new call heard once, reloads keep state."""
    port = free_port()
    async with site(dsn, clock, port) as live:
        staff = await Staff.open(live, dsn)
        display = await open_page(browser, f"{live.http_url}/display?clinics=lab&name=Lab",
                                  "restart-display", viewport=WALL)
        phone = await open_page(browser, live.http_url + "/", "restart-phone", viewport=PHONE)
        await login(phone, "31337", "male", "cooks")
        await staff.call("lab")
        await display.wait(LAB_SHOWS, 1)
        await phone.wait("() => !document.getElementById('turn').hidden")
        assert [a["number"] for a in await announced(display)] == [1]
        await staff.close()

    # The server is gone: within the heartbeat both pages say so and grey their numbers.
    await display.wait(OFFLINE)
    await phone.wait(OFFLINE)
    await display.shot("offline")
    await phone.shot("offline")

    async with site(dsn, clock, port) as live:
        staff = await Staff.open(live, dsn, accounts=False)
        await display.wait(ONLINE, within_ms=BACK_MS)
        await phone.wait(ONLINE, within_ms=BACK_MS)
        assert not await display.page.evaluate("document.body.classList.contains('stale')")
        assert (await card(phone))["turn"]
        assert [a["number"] for a in await announced(display)] == [1]

        # A reload remembers what was announced: the call on screen is not heard again.
        await display.page.reload()
        await display.wait("() => window.mmcProbe && window.mmcProbe.ready")
        await display.wait(LAB_SHOWS, 1)
        await display.wait(ONLINE)
        assert await announced(display) == []

        # A new call is heard once.
        other = await Peer.open(live.ws_url)
        await other.call("patient.login", {"patient_id": "4242", "gender": "male"})
        await other.call("route.create", {"exam_type": "cooks"})
        await staff.call("lab")
        await display.wait(LAB_SHOWS, 2)
        assert [a["number"] for a in await announced(display)] == [2]

        # The phone moves on, then a reload shows the same station and number.
        await staff.act("done", "lab", 1)
        await phone.wait("() => document.querySelector('.station.state-current')?.dataset.clinic"
                         " !== 'lab' && document.getElementById('card-number').textContent !== ''")
        before = await card(phone)
        await phone.page.reload()
        await phone.wait("() => window.mmcProbe && window.mmcProbe.ready")
        await phone.wait("(n) => document.getElementById('card-number').textContent === n",
                         before["number"])
        after = await card(phone)
        assert after == before
        assert [a["number"] for a in await announced(display)] == [2]
        await other.close()
        await staff.close()
    for page in (display, phone):
        page.errors = [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e
                       and "WebSocket" not in e]
        page.assert_clean()
