"""`/metrics` guarded and cached: an optional bearer token (METRICS_TOKEN), and one
refresh of the database-fed gauges shared by every scrape within a few seconds, so a
scraper (or anyone) cannot turn /metrics into a query flood. Rendering the in-memory
counters stays per scrape: it costs no query."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable


class ScrapeCache:
    def __init__(self, token: str | None, *, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self.ttl = ttl
        self.refreshes = 0
        self._clock = clock
        self._at: float | None = None
        self._lock = asyncio.Lock()

    def allows(self, authorization: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())

    async def refresh(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` unless it ran less than `ttl` seconds ago (one at a time)."""
        async with self._lock:
            if self._at is None or self._clock() - self._at >= self.ttl:
                await work()
                self.refreshes += 1
                self._at = self._clock()
