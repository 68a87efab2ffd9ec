"""Staff calling, inside the caller's load process: `queue.call` per clinic either at a
fixed rate (the latency phase) or closed-loop (the next call once the clinic's probe
display has seen the last one: the throughput phase), the same for every system."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.bench.loadgen import Client, Worker

# A call whose CALLED event has not reached the probe by then counts as stalled.
STALL_SECONDS = 10.0
REPLY_SECONDS = 10.0


async def call_clinics(worker: Worker, mode: str, seconds: float, rate: float,
                       max_calls: int, window: int = 1, delay: float = 0.0) -> dict[str, Any]:
    """After `delay`, call in every clinic for `seconds`, at most `max_calls` each;
    closed-loop keeps `window` calls per clinic in flight."""
    await asyncio.sleep(delay)
    callers: dict[str, list[Client]] = defaultdict(list)
    for client in worker.clients:
        if client.spec.kind == "caller" and not client.closed:
            callers[client.spec.clinic].append(client)
    outcome: dict[str, Any] = {"calls": 0, "errors": {}, "stalls": 0}
    started = time.perf_counter()
    clinics = sorted(callers)
    if mode == "rate":
        runs = [_paced(callers[c], i / (len(clinics) * rate), seconds, rate, max_calls, outcome)
                for i, c in enumerate(clinics)]
    else:
        runs = [_closed(worker, c, callers[c], seconds, max_calls, window, outcome)
                for c in clinics]
    await asyncio.gather(*runs)
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def _note(outcome: dict[str, Any], reply: dict[str, Any] | BaseException) -> bool:
    if isinstance(reply, BaseException):
        code = type(reply).__name__
    elif reply.get("ok"):
        outcome["calls"] += 1
        return True
    else:
        code = str(reply.get("error"))
    outcome["errors"][code] = outcome["errors"].get(code, 0) + 1
    return False


async def _one(client: Client, clinic: str, outcome: dict[str, Any]) -> bool:
    try:
        async with asyncio.timeout(REPLY_SECONDS):
            reply = await client.request("queue.call", {"clinic": clinic})
    except (TimeoutError, ConnectionError) as exc:
        return _note(outcome, exc)
    return _note(outcome, reply)


async def _paced(sockets: list[Client], offset: float, seconds: float, rate: float,
                 max_calls: int, outcome: dict[str, Any]) -> None:
    """Open loop: call n is sent at offset + n / rate whatever the replies do."""
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    tasks = []
    n = 0
    while n < max_calls and n / rate < seconds:
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        client = sockets[n % len(sockets)]
        tasks.append(asyncio.create_task(_one(client, client.spec.clinic, outcome)))
        n += 1
    await asyncio.gather(*tasks)


async def _closed(worker: Worker, clinic: str, sockets: list[Client], seconds: float,
                  max_calls: int, window: int, outcome: dict[str, Any]) -> None:
    """Closed loop: `window` lanes per clinic, each with one call in flight until the
    clinic's probe has seen as many CALLED events as calls were answered. Lanes use
    their own caller sockets to stay inside the per-socket rate limit."""
    deadline = time.perf_counter() + seconds
    base = worker.probe_seen.get(clinic, 0)
    state = {"issued": 0, "answered": 0}

    async def lane(i: int) -> None:
        mine = sockets[i::window] or sockets
        n = 0
        while state["issued"] < max_calls and time.perf_counter() < deadline:
            state["issued"] += 1
            if not await _one(mine[n % len(mine)], clinic, outcome):
                state["issued"] -= 1
                if outcome["errors"].get("empty"):
                    return
                await asyncio.sleep(0.05)
                continue
            n += 1
            state["answered"] += 1
            target = base + state["answered"] - window + 1
            try:
                async with asyncio.timeout(STALL_SECONDS):
                    while worker.probe_seen.get(clinic, 0) < target:
                        worker.probe_changed.clear()
                        await worker.probe_changed.wait()
            except TimeoutError:
                outcome["stalls"] += 1

    await asyncio.gather(*(lane(i) for i in range(window)))
