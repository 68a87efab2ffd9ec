"""The polling peer, the old system's way: each phone holds a keep-alive HTTP/1.1
connection and asks `GET /api/v1/queue-status` every 5 s (our server's own HTTP API,
its per-address limit off because the clients share 127.0.0.1-8). Beside it, the same
phones on our WebSocket under the same calls: server CPU per connected client per
minute, and staleness (commit to the last phone that knows, per call)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tests.bench import stats
from tests.bench.fanout import Load, run_round
from tests.bench.fleet import Fleet, merge
from tests.bench.loadgen import CALLER, PROBE, Spec, Window
from tests.bench.stage import Stage, launch, seed

if TYPE_CHECKING:
    from tests.bench.loadgen import Worker

PERIOD = 5.0
SEED = 6  # the pollers' phases: fixed, so every run polls at the same moments
PRIME = 2.0  # seconds for every phone's first poll before the calls begin


class _Connection:
    """One phone's keep-alive connection, opened again when the server has closed it
    (uvicorn drops idle keep-alives after 5 s, as a browser would then reconnect)."""

    def __init__(self, host: str, port: int, source: str, token: str) -> None:
        self.address = (host, port, source)
        self.request = (f"GET /api/v1/queue-status HTTP/1.1\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n").encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, out: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            if self.streams is None:
                host, port, source = self.address
                self.streams = await asyncio.open_connection(host, port,
                                                             local_addr=(source, 0))
                out["connections"] += 1
            reader, writer = self.streams
            try:
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body: dict[str, Any] = orjson.loads(await reader.readexactly(length))
                return body
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _poller(w: Window, connection: _Connection, clinic: str, phase: float,
                  until: float, out: dict[str, Any]) -> None:
    """One poll now (where the phone stands before any call), then every PERIOD."""
    base: int | None = None
    reached = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + phase
    n = -1
    try:
        while (due := start + n * PERIOD if n >= 0 else loop.time()) < until:
            await asyncio.sleep(max(0.0, due - loop.time()))
            n += 1
            body = await connection.get(out)
            t = time.time()
            out["requests"] += 1
            if not body.get("ok"):
                out["errors"] += 1
                continue
            ahead = body["result"].get("ahead")
            if ahead is None:
                continue
            if base is None:
                base = int(ahead)
            k = base - int(ahead)
            for j in range(reached + 1, k + 1):
                w.cover(clinic, j, t)
            reached = max(reached, k)
    finally:
        connection.close()


async def run_pollers(worker: Worker, host: str, port: int, source: str,
                      tokens: list[list[str]], seconds: float) -> dict[str, Any]:
    """Poll with every (clinic, token) for `seconds`; covers as the phones' would be."""
    w = worker.window or Window()
    out: dict[str, Any] = {"requests": 0, "errors": 0, "connections": 0}
    rng = random.Random(SEED)
    now = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(
        _poller(w, _Connection(host, port, source, token), clinic,
                PRIME + rng.uniform(0, PERIOD), now + PRIME + seconds, out)
        for clinic, token in tokens), return_exceptions=True)
    out["broken"] = sum(1 for r in results if isinstance(r, BaseException))
    return out


def ours_load(clients: int, seconds: float, rate: float) -> Load:
    return Load(clients, 0, clients // 16, rate=rate, latency_seconds=seconds,
                burst_seconds=0.0, burst_calls=0)


def run_polling(stage: Stage, clients: int, seconds: float, rate: float, *,
                cpus: tuple[set[int] | None, set[int] | None], log: Path) -> dict[str, Any]:
    """The polling peer's round: `clients` pollers, calls at `rate` per clinic."""
    server_cpus, load_cpus = cpus
    per_clinic = clients // 16
    calls = int(rate * seconds) + 1
    with stage.database() as dsn:
        seeded = stage.run(seed(dsn, calls + 10, per_clinic))
        with launch("ours", dsn, server_cpus, log, env={"HTTP_RATE_LIMIT": "0"}) as sut:
            fleet = Fleet(3, load_cpus)
            try:
                callers = [Spec(CALLER, c, None, seeded.admin_token) for c in seeded.clinics]
                callers += [Spec(PROBE, c, f"clinic:{c}") for c in seeded.clinics]
                fleet.connect(sut.ws_url, callers, members=fleet.members[-1:], concurrency=1)
                shares: list[list[list[str]]] = [[], []]
                for i in range(per_clinic):
                    for j, clinic in enumerate(seeded.clinics):
                        shares[(i * 16 + j) % 2].append([clinic, seeded.phones[clinic][i]])
                fleet.all({"cmd": "measure"})
                before = sut.usage()
                commands: list[dict[str, Any]] = [
                    {"cmd": "poll", "host": "127.0.0.1", "port": sut.port, "source": m.source,
                     "tokens": share, "seconds": seconds}
                    for m, share in zip(fleet.members[:2], shares, strict=True)]
                commands.append({"cmd": "call", "mode": "rate", "seconds": seconds,
                                 "rate": rate, "max_calls": calls, "delay": PRIME})
                answers = fleet.ask(fleet.members, commands)
                cpu = sut.usage()["cpu"] - before["cpu"]
                merged = merge(fleet.all({"cmd": "report"}))
            finally:
                fleet.close()
    staleness = stats.latency(merged, seen=merged["seen_at"], ranked=True)
    return {
        "clients": clients, "requests": sum(a["requests"] for a in answers[:2]),
        "errors": sum(a["errors"] for a in answers[:2]),
        "http_connections": sum(a["connections"] for a in answers[:2]),
        "failed_pollers": sum(a["broken"] for a in answers[:2]),
        "calls": answers[2]["calls"], "server_cpu_s": round(cpu, 2),
        "cpu_ms_per_client_min": round(cpu * 1000 / clients / (seconds / 60), 3),
        "p50_ms": staleness["phone_p50_ms"], "p99_ms": staleness["phone_p99_ms"],
        "max_ms": staleness["phone_max_ms"], "samples": staleness["phone_samples"],
    }


def run_ours_phones(stage: Stage, clients: int, seconds: float, rate: float, *,
                    cpus: tuple[set[int] | None, set[int] | None], log: Path
                    ) -> dict[str, Any]:
    """The same phones on our WebSocket under the same calls."""
    result = run_round(stage, "ours", ours_load(clients, seconds, rate), idle=False,
                       cpus=cpus, log=log)
    cpu = result["latency_cpu_s"]
    return {"clients": result["sockets"], "calls": result["calls"],
            "server_cpu_s": round(cpu, 2),
            "cpu_ms_per_client_min": round(cpu * 1000 / clients / (seconds / 60), 3),
            "p50_ms": result["phone_p50_ms"], "p99_ms": result["phone_p99_ms"],
            "max_ms": result["phone_max_ms"], "samples": result["phone_samples"],
            "lost": result["lost"]}
