"""What the staff pages' browser tests share: the clock at the wall's time (so "time
waited" reads true in Chromium), examinees queued over a real socket, signing in through
the form, and an axe audit that keeps a screenshot of every state it looks at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from server.clock import ManualClock
from tests.api import ADMIN_PASSWORD
from tests.harness import MS, LiveServer
from tests.realtime import Peer
from tests.web.browser import Watched, axe_violations

DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 1024, "height": 768}
# The "within 1 s" (and 2 s), stretched only when the harness is told the machine is slow.
ONE_SECOND_MS = max(1000, int(1_000_000 * MS))


def wall_clock(clock: ManualClock, minutes_ago: float = 0) -> None:
    clock.set(datetime.now(UTC) - timedelta(minutes=minutes_ago))


async def queue_examinees(live: LiveServer, ids: list[str], *, exam: str = "cooks",
                          clinic: str | None = None) -> list[Peer]:
    """Examinees logged in on their phones (raw sockets), in `clinic`'s queue when given,
    else with today's route begun (`cooks` starts at the laboratory)."""
    peers = []
    for patient_id in ids:
        peer = await Peer.open(live.ws_url)
        await peer.call("patient.login", {"patient_id": patient_id, "gender": "male"})
        if clinic is None:
            await peer.call("route.create", {"exam_type": exam})
        else:
            await peer.call("queue.enter", {"clinic": clinic})
        peers.append(peer)
    return peers


async def admin_peer(live: LiveServer) -> Peer:
    peer = await Peer.open(live.ws_url)
    await peer.call("admin.login", {"username": "admin", "password": ADMIN_PASSWORD})
    return peer


async def sign_in(page: Watched, username: str, password: str) -> None:
    await page.page.fill("#username", username)
    await page.page.fill("#password", password)
    await page.page.click("#login-form button[type=submit]")
    await page.wait("() => document.body.dataset.screen === 'main'")


class Audit:
    """axe on each state shown (serious and critical only), and a screenshot of it."""

    def __init__(self) -> None:
        self.found: dict[str, list[dict[str, Any]]] = {}
        self.shots: list[str] = []

    async def check(self, page: Watched, state: str) -> None:
        path = await page.shot(state)
        self.shots.append(path.name)
        violations = await axe_violations(page.page, None)
        if violations:
            self.found[f"{page.name}-{state}"] = violations
