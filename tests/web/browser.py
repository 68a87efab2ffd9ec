"""What the browser tests share: Debian's Chromium driven by Playwright (skipped plainly
when absent, unless MMC_REQUIRE_BROWSER=1), pages that record console errors and failed
requests (and keep their sockets' last frames, told when a wait times out), axe-core
runs, screenshots in tests/artifacts/, and the app served on a port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from server.app import create_app
from server.breaker import CircuitBreaker
from server.clock import Clock
from server.config import Config
from server.runner import Server, uvicorn_config
from tests.harness import MS, LiveServer, serve

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
REQUIRED = os.environ.get("MMC_REQUIRE_BROWSER") == "1"
# Playwright's waits, in milliseconds: for a state that will come, as long as a shared,
# loaded machine needs (what must happen within a time is measured by the benchmark).
WAIT_MS = max(15_000, int(15_000_000 * MS))
PHONE = {"width": 360, "height": 800}
WALL = {"width": 1920, "height": 1080}
FRAMES_KEPT = 60
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def missing(what: str) -> None:
    """Skip a test that needs `what`, or fail it where the environment demands it (CI)."""
    message = f"{what} is not installed; this browser test needs it"
    if REQUIRED:
        pytest.fail(message + " (MMC_REQUIRE_BROWSER=1)")
    pytest.skip(message)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def url_path(url: str) -> str:
    return urlsplit(url).path


def speech_statuses() -> set[tuple[str, int]]:
    """Without espeak-ng the server answers the spoken call with 503 and the display
    falls back to the browser's voice: expected, not an error of the page."""
    return set() if shutil.which("espeak-ng") else {("/api/v1/announce", 503)}


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, failed requests, error responses."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    expected_statuses: set[tuple[str, int]] = field(default_factory=set)
    # The last frames of the page's WebSockets, told when a wait times out.
    frames: deque[str] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))

    def attach(self) -> None:
        self.page.on("websocket", self._websocket)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)

    def _websocket(self, ws: Any) -> None:
        started = time.monotonic()

        def note(arrow: str, payload: Any) -> None:
            text = payload if isinstance(payload, str) else f"<{len(payload)} bytes>"
            self.frames.append(f"{time.monotonic() - started:8.3f} {arrow} {text[:300]}")

        self.frames.append(f"   0.000 open {ws.url}")
        ws.on("framesent", lambda payload: note("->", payload))
        ws.on("framereceived", lambda payload: note("<-", payload))
        ws.on("close", lambda _: self.frames.append(
            f"{time.monotonic() - started:8.3f} closed"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        # As in _failed: a server stopped under an open page (a restart, the test's end)
        # refuses what the page retries; the page's offline state is what tests check.
        if "net::ERR_CONNECTION_REFUSED" in message.text:
            return
        status = re.search(r"Failed to load resource: .* status of (\d+)", message.text)
        if status and (url_path(message.location.get("url", "")),
                       int(status.group(1))) in self.expected_statuses:
            return
        self.errors.append(f"console: {message.text}")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        # A page torn down by reload or a closed server aborts what it had in flight.
        if "ERR_ABORTED" in failure or "ERR_CONNECTION_REFUSED" in failure:
            return
        self.errors.append(f"request failed: {request.url} {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and (url_path(response.url),
                                       response.status) not in self.expected_statuses:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def assert_clean(self) -> None:
        assert self.errors == [], f"{self.name}: {self.errors}"

    async def shot(self, state: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{state}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def wait(self, js: str, arg: Any = None, *, within_ms: int = WAIT_MS) -> Any:
        try:
            return await self.page.wait_for_function(js, arg=arg, timeout=within_ms)
        except Exception as exc:
            if type(exc).__name__ != "TimeoutError":  # Playwright's, imported only if present
                raise
            # What the page heard and said is what tells a race from a wedge.
            exc.add_note(f"{self.name}: the last frames of its sockets:\n"
                         + "\n".join(self.frames))
            raise


async def axe_violations(page: Any, context: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it stands."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
             const r = await axe.run(document, {resultTypes: ["violations"]});
             return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
               .map(v => ({id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
           }""")
    assert isinstance(result, list)
    return result


@contextlib.asynccontextmanager
async def chromium(*, autoplay: bool = True) -> AsyncIterator[Any]:
    """A Chromium browser, or a skip (a failure under MMC_REQUIRE_BROWSER=1). Without
    `autoplay`, sound waits for a tap, as in a browser a person opened."""
    path = chromium_path()
    if path is None:
        missing("Chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("Playwright for Python")
    async with async_playwright() as driver:
        args = [a for a in CHROMIUM_ARGS if autoplay or not a.startswith("--autoplay-policy")]
        browser = await driver.chromium.launch(executable_path=path, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Any, url: str, name: str, *, viewport: dict[str, int],
                    lang: str | None = None, bypass_csp: bool = False,
                    expected: set[tuple[str, int]] | None = None) -> Watched:
    context = await browser.new_context(viewport=viewport, bypass_csp=bypass_csp,
                                        service_workers="block")
    if lang:
        await context.add_init_script(f"localStorage.setItem('mmc.lang', '{lang}')")
    page = await context.new_page()
    watched = Watched(page, name, expected_statuses=(expected or set()) | speech_statuses())
    watched.attach()
    await page.goto(url)
    await watched.wait("() => window.mmcProbe && window.mmcProbe.ready")
    return watched


@contextlib.asynccontextmanager
async def site(dsn: str, clock: Clock | None, port: int = 0, *,
               breaker: CircuitBreaker | None = None) -> AsyncIterator[LiveServer]:
    """The app on 127.0.0.1 (a fixed port when given, so that it can come back there),
    with `breaker` as its database's circuit breaker when given."""
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=10), clock=clock,
                     breaker=breaker)
    if port == 0:
        async with serve(app) as live:
            yield live
        return
    server = Server(uvicorn_config(app, host="127.0.0.1", port=port))
    # The test process owns its signals, as in tests/harness.py.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(10 * MS)
    try:
        yield LiveServer(server, task)
    finally:
        server.should_exit = True
        await task


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(50 * MS)
