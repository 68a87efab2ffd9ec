"""The circuit breaker around the database (the migration plan's: 5 failures open it for 60 s,
2 successes close it), shared by HTTP, WebSocket and the hub of one process."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import structlog

from server import errors

log = structlog.get_logger(__name__)


class State(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    """CLOSED counts consecutive failures; at `failure_threshold` it OPENs and every
    call fails fast for `reset_timeout` seconds; then calls go through HALF_OPEN,
    where `success_threshold` successes close it and one failure opens it again."""

    def __init__(self, *, service: str = "database", failure_threshold: int = 5,
                 success_threshold: int = 2, reset_timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[State], None] | None = None) -> None:
        self.service = service
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._listeners: list[Callable[[State], None]] = [] if on_change is None else [on_change]
        self._state = State.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0

    @property
    def state(self) -> State:
        return self._state

    def add_listener(self, listener: Callable[[State], None]) -> None:
        """Call `listener(state)` now and on every change (metrics, readiness)."""
        self._listeners.append(listener)
        listener(self._state)

    def retry_after(self) -> float:
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def check(self) -> None:
        """Fail fast while open; let a trial call through once the timeout passed."""
        if self._state is State.OPEN:
            if self.retry_after() > 0:
                raise errors.Unavailable("the database is unavailable; retry shortly",
                                         retry_after=self.retry_after())
            self._set(State.HALF_OPEN)

    def record_success(self) -> None:
        self._failures = 0
        if self._state is State.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._set(State.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is State.HALF_OPEN or (
                self._state is State.CLOSED and self._failures >= self.failure_threshold):
            self._opened_at = self._clock()
            self._set(State.OPEN)

    def _set(self, state: State) -> None:
        if state is self._state:
            return
        log.warning("breaker.state", service=self.service, state=state.value,
                    previous=self._state.value)
        self._state = state
        self._successes = 0
        if state is State.CLOSED:
            self._failures = 0
        for listener in self._listeners:
            listener(state)
