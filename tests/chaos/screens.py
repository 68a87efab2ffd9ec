"""The real screens that ride through every fault behind nginx, in a process of their
own (clients/web in Debian's Chromium through Playwright): one waiting-room display and
one patient's phone; afterwards what each shows is set against the database."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from multiprocessing.connection import Connection
from typing import Any

import asyncpg

from server.db import init_connection
from tests.bench import worker
from tests.web.browser import PHONE, WALL, chromium_path

READ = """() => ({
  announced: window.mmcProbe.announced,
  shown: Array.from(document.querySelectorAll('.number')).map(e => e.textContent.trim()),
  stored: localStorage.getItem(Object.keys(localStorage)
            .find(k => k.startsWith('mmc.display.announced:')) || '') })"""

# What the phone shows, as the person reads it: which screen, and on the route screen
# the current station of the checklist and the card (clinic, number, status, ahead).
PHONE_SHOWN = """() => {
  const byId = (id) => document.getElementById(id);
  const screen = document.body.dataset.screen || null;
  if (screen !== 'route') return {screen};
  const number = byId('card-number').textContent;
  const ahead = byId('card-ahead');
  return {
    screen,
    station: document.querySelector('.station.state-current')?.dataset.clinic || null,
    clinic: number === '' ? null : byId('card-clinic').textContent,
    number: number === '' ? null : Number(number),
    status: number === '' ? null : byId('card').dataset.status || null,
    ahead: number === '' || ahead.parentElement.hidden ? null
      : Number(ahead.textContent.replace(/[^0-9]/g, '')),
  };
}"""

# Every distinct state the phone showed, with the time (ms since the epoch) it appeared:
# a state that flashes between two reads is still on the record.
PHONE_TRAIL = """() => {
  window.mmcPhoneShown = SHOWN;
  const trail = window.mmcPhoneTrail = {states: [], count: 0};
  const note = () => {
    const s = JSON.stringify(window.mmcPhoneShown());
    const last = trail.states[trail.states.length - 1];
    if (last && last.s === s) return;
    trail.count += 1;
    trail.states.push({t: Date.now(), s});
    if (trail.states.length > 2000) trail.states.splice(0, 1000);
  };
  new MutationObserver(note).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
  note();
}""".replace("SHOWN", PHONE_SHOWN)

PHONE_READ = """(since) => ({
  shown: window.mmcPhoneShown(),
  trail: window.mmcPhoneTrail.states.filter(x => x.t >= since)
           .map(x => ({t: x.t, shown: JSON.parse(x.s)})),
  states: window.mmcPhoneTrail.count })"""

# Every WebSocket a page opens, kept so that the reconnect storm can cut the screens'
# sockets too (installed before the page's own scripts run).
SOCKETS = """(() => {
  const Native = window.WebSocket;
  const open = window.mmcSockets = new Set();
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      open.add(this);
      this.addEventListener('close', () => open.delete(this));
    }
  };
})();"""

DROP = """() => { const n = window.mmcSockets.size;
                  window.mmcSockets.forEach(ws => ws.close()); return n; }"""

PHONE_EXAM = "recruitment"  # the longest route: ten stations


def available() -> str | None:
    """None when the screens can ride along, else what is missing."""
    if chromium_path() is None:
        return "Chromium is not installed"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed"
    return None


async def phone_truth(dsn: str, patient: str) -> dict[str, Any]:
    """What the phone of `patient` must show, from Postgres (as PHONE_SHOWN reads it)."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        route = await conn.fetchval(
            "SELECT mmc_route_view(r.id) FROM routes r "
            "WHERE r.patient_id = $1 AND r.day = mmc_local_day(now())", patient)
    finally:
        await conn.close()
    if route is None:
        return {"screen": "exam"}
    if route["status"] == "completed":
        return {"screen": "done"}
    entry = route.get("current") or {}
    active = entry.get("status") in ("WAITING", "CALLED", "IN_PROGRESS")
    return {"screen": "route", "station": route["current_clinic"],
            "clinic": entry["clinic_name"] if active else None,
            "number": entry["number"] if active else None,
            "status": entry["status"] if active else None,
            "ahead": entry["ahead"] if active and entry["status"] == "WAITING" else None}


async def phone_entries(dsn: str, patients: list[str]) -> set[tuple[str, int]]:
    """(clinic name, number) of every queue entry the phone's examinees ever had."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.name, q.queue_number FROM queues q JOIN clinics c ON c.code = q.clinic_code"
            " WHERE q.patient_id = ANY($1::text[])", patients)
    finally:
        await conn.close()
    return {(r["name"], r["queue_number"]) for r in rows}


RANK = {"WAITING": 0, "CALLED": 1, "IN_PROGRESS": 2}


def wrong_states(trail: list[dict[str, Any]], entries: set[tuple[str, int]]
                 ) -> dict[str, list[dict[str, Any]]]:
    """What the phone showed that was never so: an entry its examinees never had, an
    entry's status going back (the chaos driver only calls and completes), or an entry
    shown again after the phone had moved away from it (it was done by then)."""
    unknown: list[dict[str, Any]] = []
    back: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    rank: dict[tuple[str, int], int] = {}
    left: set[tuple[str, int]] = set()
    last: tuple[str, int] | None = None
    for x in trail:
        shown = x["shown"]
        key = (shown["clinic"], shown["number"]) if shown.get("number") is not None else None
        if last is not None and key != last:
            left.add(last)
        last = key
        if key is None:
            continue
        if key not in entries:
            unknown.append(x)
        elif key in left:
            again.append(x)
        status = RANK.get(shown["status"], -1)
        if status < rank.get(key, -1):
            back.append(x)
        rank[key] = max(status, rank.get(key, -1))
    return {"unknown": unknown[:5], "went_back": back[:5], "shown_again": again[:5]}


class Screens:
    def __init__(self) -> None:
        self.stack: Any = None
        self.browser: Any = None
        self.page: Any = None
        self.errors: list[str] = []
        self.phone: Any = None

    async def launch(self) -> Any:
        from tests.web.browser import chromium

        if self.browser is None:
            self.stack = chromium()
            self.browser = await self.stack.__aenter__()
        return self.browser

    async def watch(self, url: str, name: str, viewport: dict[str, int],
                    lang: str | None = None) -> Any:
        """A page whose sockets the storm can cut (SOCKETS, in force from a reload on)."""
        from tests.web.browser import open_page

        watched = await open_page(await self.launch(), url, name, viewport=viewport, lang=lang)
        await watched.page.context.add_init_script(SOCKETS)
        await watched.page.reload()
        await watched.wait("() => window.mmcProbe && window.mmcProbe.ready && window.mmcSockets")
        return watched

    async def cmd_open(self, url: str) -> dict[str, Any]:
        watched = await self.watch(url, "chaos-display", WALL)
        self.page, self.errors = watched.page, watched.errors
        # Its first snapshot's seq, where its ledger of announcements starts.
        await watched.wait("""() => Object.keys(localStorage).some(
            k => k.startsWith('mmc.display.announced:')
                 && Object.keys(JSON.parse(localStorage.getItem(k)) || {}).length > 0)""")
        return await self.cmd_read()

    async def cmd_read(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.page.evaluate(READ)
        state["errors"] = self.errors[:20]
        state["error_count"] = len(self.errors)
        return state

    # the phone ---------------------------------------------------------------------------

    async def cmd_drop(self) -> dict[str, Any]:
        """Cut every socket of both pages at once, as the storm cuts the crowd's."""
        pages = [p for p in (self.page, self.phone.page if self.phone else None) if p]
        return {"dropped": sum([await p.evaluate(DROP) for p in pages])}

    async def cmd_phone_open(self, url: str) -> dict[str, Any]:
        self.phone = await self.watch(url, "chaos-phone", PHONE, lang="en")
        await self.phone.page.evaluate(PHONE_TRAIL)
        return await self.cmd_phone_read()

    async def cmd_phone_walk_in(self, patient: str, gender: str) -> dict[str, Any]:
        """The phone changes hands: whoever was signed in logs out, `patient` types their
        ID, chooses their gender and the exam, as a person does; a refusal (the server
        busy) is met by trying again, as a person would."""
        page = self.phone.page
        if await page.evaluate("() => !document.getElementById('logout').hidden"):
            await page.click("#logout")
        for _ in range(8):
            screen = await page.evaluate("document.body.dataset.screen")
            if screen == "route":
                break
            if screen == "login":
                await page.fill("#patient-id", patient)
                await page.check(f"input[name=gender][value={gender}]")
                await self.submit("#login-form", "login", "login-error")
            elif screen == "exam":
                await page.check(f"input[name=exam_type][value={PHONE_EXAM}]")
                await self.submit("#exam-form", "exam", "exam-error")
            else:
                raise RuntimeError(f"the phone shows {screen} to {patient}")
        else:
            raise RuntimeError(f"the phone did not sign {patient} in")
        return await self.cmd_phone_read()

    async def submit(self, form: str, screen: str, error: str) -> None:
        """Send a form; wait until its screen is left or it says why not (then a pause,
        as a person reads the message before trying again)."""
        page = self.phone.page
        await page.evaluate(f"document.getElementById('{error}').textContent = ''")
        await page.click(f"{form} button[type=submit]")
        await self.phone.wait(
            "([screen, error]) => document.body.dataset.screen !== screen"
            " || document.getElementById(error).textContent !== ''", [screen, error])
        if await page.evaluate(f"document.getElementById('{error}').textContent !== ''"):
            await asyncio.sleep(1.0)

    async def cmd_phone_read(self, since: float | None = None) -> dict[str, Any]:
        state: dict[str, Any] = await self.phone.page.evaluate(
            PHONE_READ, (since if since is not None else time.time()) * 1000)
        state["errors"] = self.phone.errors[:20]
        state["error_count"] = len(self.phone.errors)
        return state

    async def close(self) -> None:
        stack, self.stack = self.stack, None
        if stack is not None:
            await stack.__aexit__(None, None, None)

    async def serve(self, conn: Connection) -> None:
        try:
            await worker.serve(conn, self, self.close)
        finally:
            await self.close()


def main(conn: Connection) -> None:
    asyncio.run(Screens().serve(conn))
