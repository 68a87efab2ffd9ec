"""The people of a browser test: staff at their consoles over a real WebSocket (the
admin account, which may act at every clinic), and what a phone page shows."""

from __future__ import annotations

from typing import Any

from server.auth import Principal
from tests.api import create_accounts
from tests.harness import LiveServer
from tests.realtime import Peer, token_for
from tests.web.browser import Watched


class Staff:
    """The clinics' staff, acting through one admin socket."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    @classmethod
    async def open(cls, live: LiveServer, dsn: str, *, accounts: bool = True) -> Staff:
        if accounts:
            await create_accounts(dsn)
        # A session made as a login makes one, without argon2's wait on a loaded machine.
        db = live.server.lifespan.state["db"]
        peer = await Peer.open(live.ws_url)
        await peer.call("auth", {"token": await token_for(db, Principal("admin", "admin"))})
        return cls(peer)

    async def call(self, clinic: str) -> Any:
        return (await self.peer.call("queue.call", {"clinic": clinic}))["called"]

    async def act(self, action: str, clinic: str, number: int) -> Any:
        return await self.peer.call(f"queue.{action}", {"clinic": clinic, "number": number})

    async def pin(self, clinic: str) -> str:
        pins = (await self.peer.call("pin.current", {"clinic": clinic}))["pins"]
        return str(pins[clinic])

    async def close(self) -> None:
        await self.peer.close()


async def card(phone: Watched) -> dict[str, Any]:
    """What the phone's current card says, and which screen is up."""
    result = await phone.page.evaluate(
        """() => ({
             screen: document.body.dataset.screen || null,
             clinic: document.querySelector('#card .card-clinic')?.textContent || '',
             number: document.getElementById('card-number')?.textContent || '',
             current: document.querySelector('.station.state-current')?.dataset.clinic || null,
             turn: !document.getElementById('turn').hidden,
             pin: !document.getElementById('pin').hidden,
             missed: !document.getElementById('missed').hidden,
           })""")
    assert isinstance(result, dict)
    return result


async def login(phone: Watched, patient_id: str, gender: str, exam: str) -> None:
    """Type the ID, choose the gender and the exam, the way a person does."""
    page = phone.page
    await page.fill("#patient-id", patient_id)
    await page.check(f"input[name=gender][value={gender}]")
    await page.click("#login-form button[type=submit]")
    await phone.wait("() => document.body.dataset.screen === 'exam'")
    await page.check(f"input[name=exam_type][value={exam}]")
    await page.click("#exam-form button[type=submit]")
    await phone.wait("() => document.body.dataset.screen === 'route'"
                     " && document.getElementById('card-number').textContent !== ''")


async def announced(display: Watched) -> list[dict[str, Any]]:
    result = await display.page.evaluate("() => window.mmcProbe.announced")
    assert isinstance(result, list)
    return result
