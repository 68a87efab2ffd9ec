"""Rate limiting in memory: a token bucket per socket (with how long a client has been
over it: docs/protocol.md closes it with 1008) and per HTTP client and endpoint. Login and
PIN attempts are counted in Postgres instead, so they hold across processes."""

from __future__ import annotations

import time
from collections import OrderedDict
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

    def refund(self) -> None:
        """Give back the token of a frame that turned out to cost nothing to limit."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + 1)

    def retry_after(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def over_for(self) -> float:
        """Seconds the client has been refused without a single accepted frame."""
        if self._over_since is None:
            return 0.0
        return self._clock() - self._over_since


class ClientLimits:
    """A bucket per (client address, endpoint) for the HTTP API, bounded in memory:
    the least recently used client is forgotten first (a forgotten client starts full,
    which errs on the side of serving it)."""

    def __init__(self, rate: float, burst: float, *, max_clients: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def retry_after(self, client: str, endpoint: str) -> float | None:
        """None when the request may go ahead, else the seconds to wait."""
        key = (client, endpoint)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, clock=self._clock)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return None if bucket.take() else bucket.retry_after()

    def refund(self, client: str, endpoint: str) -> None:
        bucket = self._buckets.get((client, endpoint))
        if bucket is not None:
            bucket.refund()
