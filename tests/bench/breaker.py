"""How fast an open circuit breaker answers: `python -m tests.bench.breaker`.

The server runs on a throwaway embedded Postgres, which is then stopped; five failing
calls open the breaker, and the next REQUESTS calls are timed (each must be a 503).
tests/test_outage.py proves they make no database attempt; this measures their time,
which unit tests never assert (shared machines are noisy)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from server import logs
from server.app import create_app
from server.config import Config
from server.embedded import EmbeddedPostgres
from tests.bench import stats
from tests.harness import Cluster, serve

REQUESTS = 200
PATH = "/api/v1/stats-queues"


async def measure() -> dict[str, float | int]:
    logs.configure("json", "error")
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="mmc-breaker-")),
                                delete_on_stop=True)
    try:
        cluster = Cluster(embedded.start(), embedded)
        await cluster.create_template()
        dsn = cluster.dsn(await cluster.create_database())
        app = create_app(Config(database_url=dsn, http_rate_limit=0), run_scheduler=False)
        async with serve(app) as live, httpx.AsyncClient(base_url=live.http_url) as client:
            await asyncio.to_thread(embedded.pg_ctl, "stop", "-m", "fast", "-w")
            for _ in range(5):
                await client.get(PATH)
            times: list[float] = []
            for _ in range(REQUESTS):
                sent = time.perf_counter()
                response = await client.get(PATH)
                times.append(time.perf_counter() - sent)
                if response.status_code != 503 or "Retry-After" not in response.headers:
                    raise SystemExit(f"expected 503 with Retry-After, got {response.status_code}")
            await asyncio.to_thread(embedded.restart_if_stopped)
    finally:
        embedded.stop()
    ms = [t * 1000 for t in times]
    return {"requests": REQUESTS, "median_ms": round(statistics.median(ms), 2),
            "p99_ms": round(stats.percentile(ms, 99) or 0.0, 2), "max_ms": round(max(ms), 2)}


def main() -> int:
    sys.stdout.write(orjson.dumps(asyncio.run(measure())).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
