"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

import pytest

from server import errors
from server.breaker import CircuitBreaker, State


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[CircuitBreaker, Ticks, list[State]]:
    ticks, changes = Ticks(), []
    breaker = CircuitBreaker(clock=ticks, on_change=changes.append)
    return breaker, ticks, changes


def test_five_consecutive_failures_open_it():
    """Four failures leave it closed; the fifth opens it."""
    breaker, _, changes = make()
    for _ in range(4):
        breaker.record_failure()
    breaker.check()
    breaker.record_failure()
    assert breaker.state is State.OPEN and changes == [State.OPEN]


def test_a_success_resets_the_failure_count():
    """Failures must be consecutive."""
    breaker, _, _ = make()
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is State.CLOSED


def test_open_fails_fast_with_retry_after_until_the_timeout():
    """While open, check() raises unavailable with the seconds left."""
    breaker, ticks, _ = make()
    for _ in range(5):
        breaker.record_failure()
    ticks.now += 20
    with pytest.raises(errors.Unavailable) as caught:
        breaker.check()
    assert caught.value.retry_after == pytest.approx(40)
    assert caught.value.envelope(1)["retry_after"] == 40


def test_after_the_timeout_two_successes_close_it():
    """60 s later a trial call half-opens it; two successes close it."""
    breaker, ticks, changes = make()
    for _ in range(5):
        breaker.record_failure()
    ticks.now += 60
    breaker.check()
    assert breaker.state is State.HALF_OPEN
    breaker.record_success()
    assert breaker.state is State.HALF_OPEN
    breaker.record_success()
    assert changes == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_a_failure_while_half_open_opens_it_again():
    """One failed trial re-opens it for another full timeout."""
    breaker, ticks, _ = make()
    for _ in range(5):
        breaker.record_failure()
    ticks.now += 60
    breaker.check()
    breaker.record_failure()
    assert breaker.state is State.OPEN
    assert breaker.retry_after() == pytest.approx(60)
