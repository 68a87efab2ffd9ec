"""What the staff pages' browser tests share: the clock at the wall's time (so "time
waited" reads true in Chromium), examinees queued over a real socket, signing in through
the form, and an axe audit that keeps a screenshot of every state it looks at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from server import accounts, auth
from server.auth import Principal
from server.clock import ManualClock
from server.db import init_connection
from tests.harness import MS, LiveServer
from tests.realtime import Peer
from tests.web.browser import Watched, axe_violations, open_page

DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 1024, "height": 768}
# The "within 1 s" (and 2 s), stretched only when the harness is told the machine is slow.
ONE_SECOND_MS = max(1000, int(1_000_000 * MS))
# Every other wait: a state that will come, given as long as a shared, loaded machine needs.
PATIENT_MS = max(15_000, int(15_000_000 * MS))


class StaffWatched(Watched):
    """A watched page whose waits default to PATIENT_MS (timed claims pass their own)."""

    async def wait(self, js: str, arg: Any = None, *, within_ms: int = PATIENT_MS) -> Any:
        return await super().wait(js, arg, within_ms=within_ms)


async def open_staff(browser: Any, url: str, name: str, **options: Any) -> StaffWatched:
    """open_page, with the patient waits; the listeners keep filling the same lists."""
    watched = await open_page(browser, url, name, **options)
    return StaffWatched(watched.page, watched.name, watched.errors, watched.expected_statuses,
                        watched.frames)


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


async def create_reception(dsn: str, username: str, password: str) -> None:
    """A reception account, as an admin's admin.staff.create makes it."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        await accounts.create_reception(conn, username, password)
    finally:
        await conn.close()


async def admin_peer(live: LiveServer, dsn: str, clock: ManualClock) -> Peer:
    """The admin on a raw socket, with a session made as a login makes one (without
    paying for argon2 on a loaded machine)."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        token = await auth.create_session(conn, Principal("admin", "admin"), clock.now())
    finally:
        await conn.close()
    peer = await Peer.open(live.ws_url)
    await peer.call("auth", {"token": token})
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
