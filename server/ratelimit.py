"""Per-connection rate limiting: an in-memory token bucket, and how long a client has
been over it (PROTOCOL.md: over the limit for too long closes the socket with 1008).
Login and PIN attempts are counted in Postgres instead, so they hold across processes."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one token per frame."""

    def __init__(self, rate: float, burst: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._over_since: float | None = None

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return now

    def take(self) -> bool:
        """Spend a token if there is one. A refusal starts (or extends) an overdraft."""
        now = self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            self._over_since = None
            return True
        if self._over_since is None:
            self._over_since = now
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def over_for(self) -> float:
        """Seconds the client has been refused without a single accepted frame."""
        if self._over_since is None:
            return 0.0
        return self._clock() - self._over_since
