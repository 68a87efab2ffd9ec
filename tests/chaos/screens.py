"""One real waiting-room display (clients/web, Debian's Chromium through Playwright) that
rides through every fault behind nginx, in a process of its own: afterwards the number
it shows and the calls it announced are set against the database."""

from __future__ import annotations

import asyncio
import importlib.util
import traceback
from multiprocessing.connection import Connection
from typing import Any

from tests.web.browser import WALL, chromium_path

READ = """() => ({
  announced: window.mmcProbe.announced,
  shown: Array.from(document.querySelectorAll('.number')).map(e => e.textContent.trim()),
  stored: localStorage.getItem(Object.keys(localStorage)
            .find(k => k.startsWith('mmc.display.announced:')) || '') })"""


def available() -> str | None:
    """None when a display can ride along, else what is missing."""
    if chromium_path() is None:
        return "Chromium is not installed"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed"
    return None


class Screens:
    def __init__(self) -> None:
        self.stack: Any = None
        self.page: Any = None
        self.errors: list[str] = []

    async def cmd_open(self, url: str) -> dict[str, Any]:
        from tests.web.browser import chromium, open_page

        self.stack = chromium()
        browser = await self.stack.__aenter__()
        watched = await open_page(browser, url, "chaos-display", viewport=WALL)
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

    async def close(self) -> None:
        if self.stack is not None:
            await self.stack.__aexit__(None, None, None)

    async def serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
                command = message.pop("cmd")
                if command == "close":
                    conn.send({})
                    return
                try:
                    result = await getattr(self, f"cmd_{command}")(**message)
                except Exception:
                    result = {"failed": traceback.format_exc(limit=-3)}
                conn.send(result)
        finally:
            await self.close()


def main(conn: Connection) -> None:
    asyncio.run(Screens().serve(conn))
