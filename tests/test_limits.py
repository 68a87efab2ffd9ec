"""Per-client HTTP rate limits: 429 with Retry-After for the client over its budget,
nobody else affected."""

from __future__ import annotations

from server.ratelimit import ClientLimits
from tests.api import running_api


async def test_a_client_over_its_budget_gets_429_and_others_do_not(dsn, clock, monkeypatch):
    """HTTP_RATE_LIMIT=2 (bursts of 6): the 7th quick request from one address is 429
    with Retry-After; another address and another endpoint still pass."""
    monkeypatch.setenv("HTTP_RATE_LIMIT", "2")
    async with running_api(dsn, clock) as api:
        greedy = {"X-Forwarded-For": "10.0.0.1"}
        polite = {"X-Forwarded-For": "10.0.0.2"}
        statuses = [(await api.client.get("/api/v1/stats-queues", headers=greedy)).status_code
                    for _ in range(7)]
        assert statuses[:6] == [200] * 6
        refused = await api.client.get("/api/v1/stats-queues", headers=greedy)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await api.client.get("/api/v1/stats-queues", headers=polite)).status_code == 200
        assert (await api.client.get("/api/v1/health", headers=greedy)).status_code == 200


def test_buckets_are_bounded_and_refill():
    """The least recently seen client is forgotten past max_clients; tokens refill."""
    now = [0.0]
    limits = ClientLimits(1, 1, max_clients=2, clock=lambda: now[0])
    assert limits.retry_after("a", "x") is None
    assert limits.retry_after("a", "x") == 1.0
    limits.retry_after("b", "x")
    limits.retry_after("c", "x")
    assert limits.retry_after("a", "x") is None  # forgotten, starts full again
    now[0] += 1
    assert limits.retry_after("c", "x") is None
