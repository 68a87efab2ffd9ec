"""The NOTIFY floor: asyncpg's LISTEN round trip alone, no sockets. One process (pinned
where the server would be) holds a listening connection and 16 notifying ones, one per
clinic; at the fan-out's call rate for latency, then closed-loop for throughput. Each
payload carries clock_timestamp() taken inside the notifying statement, just before its
commit, as our events' `at` is."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from tests.bench import stats
from tests.bench.pinned import run_pinned

CHANNEL = "bench_floor"
NOTIFY = ("SELECT pg_notify($1, $2 || ':' || "
          "extract(epoch FROM clock_timestamp())::text)")


async def _measure(dsn: str, clinics: int, rate: float, seconds: float) -> dict[str, Any]:
    listener = await asyncpg.connect(dsn)
    senders = [await asyncpg.connect(dsn) for _ in range(clinics)]
    latencies: list[float] = []
    heard = [0] * clinics
    changed = asyncio.Event()

    def on_notify(conn: Any, pid: int, channel: str, payload: str) -> None:
        now = time.time()
        clinic, at = payload.split(":")
        latencies.append(now - float(at))
        heard[int(clinic)] += 1
        changed.set()

    await listener.add_listener(CHANNEL, on_notify)
    loop = asyncio.get_running_loop()

    async def paced(i: int) -> None:
        start = loop.time() + i / (clinics * rate)
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            await senders[i].execute(NOTIFY, CHANNEL, str(i))

    async def closed(i: int, until: float) -> int:
        sent = 0
        while loop.time() < until:
            await senders[i].execute(NOTIFY, CHANNEL, str(i))
            sent += 1
            while heard[i] < sent:
                changed.clear()
                await changed.wait()
        return sent

    try:
        await asyncio.gather(*(paced(i) for i in range(clinics)))
        await asyncio.sleep(0.5)
        out: dict[str, Any] = {
            "p50_ms": round((stats.percentile(latencies, 50) or 0) * 1000, 2),
            "p99_ms": round((stats.percentile(latencies, 99) or 0) * 1000, 2),
            "max_ms": round(max(latencies, default=0) * 1000, 2), "samples": len(latencies)}
        latencies.clear()
        heard[:] = [0] * clinics
        cpu, started = time.process_time(), loop.time()
        await asyncio.gather(*(closed(i, started + seconds) for i in range(clinics)))
        span, cpu = loop.time() - started, time.process_time() - cpu
        out.update(frames=len(latencies), frames_per_s=round(len(latencies) / span),
                   cpu_s_per_1k_frames=round(cpu / max(1, len(latencies)) * 1000, 4),
                   burst_p99_ms=round((stats.percentile(latencies, 99) or 0) * 1000, 2))
        return out
    finally:
        for conn in (listener, *senders):
            await conn.close()


def run_floor(dsn: str, *, clinics: int, rate: float, seconds: float,
              cpus: set[int] | None) -> dict[str, Any]:
    """One round in a child process; it is killed if it does not finish in time."""
    return run_pinned(_measure, dsn, clinics, rate, seconds, cpus=cpus,
                      timeout=4 * seconds + 60, name="the NOTIFY floor")
