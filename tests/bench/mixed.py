"""Scenario 3, commands: the highest mixed enter / call / done rate our server sustains
with zero errors and zero duplicate numbers. `run_mixed` drives it inside one load
process (patients enter, staff call and finish them, each patient enters again);
`run_commands` searches the rate in steps and holds the best one for the full time."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.bench import profiling, stats
from tests.bench.fleet import Fleet
from tests.bench.loadgen import Spec
from tests.bench.stage import Stage, launch, postgres_cpu, seed

if TYPE_CHECKING:
    from tests.bench.loadgen import Client, Worker

PATIENTS_PER_CLINIC = 100
STAFF_SOCKETS = 400          # 20 frames/s each is the server's per-socket limit
REPLY_SECONDS = 10.0
TICK = 0.005


class _Floor:
    def __init__(self, patients: list[Client]) -> None:
        self.free: deque[Client] = deque(patients)
        self.waiting: dict[str, int] = defaultdict(int)
        self.called: dict[str, deque[int]] = defaultdict(deque)
        self.holder: dict[tuple[str, int], Client] = {}
        self.numbers: set[tuple[str, int]] = set()
        self.calls: set[tuple[str, int]] = set()

    async def resync(self, staff: list[Client]) -> None:
        """Start each step from the server's own counts, so that a step that fell
        behind (replies still in flight when it ended) cannot mislead the next."""
        for clinic in {c.spec.clinic for c in staff}:
            reply = await staff[0].request("queue.status", {"clinic": clinic})
            if reply.get("ok"):
                self.waiting[clinic] = int(reply["result"]["total_waiting"])
                serving = [int(n) for n in reply["result"]["serving"]]
                self.called[clinic] = deque(n for n in serving)


async def run_mixed(worker: Worker, rate: float, seconds: float) -> dict[str, Any]:
    """Issue enter, call and done in turn at `rate` a second for `seconds`."""
    # Who stands where carries over from step to step, as it does in the database.
    if "mixed" not in worker.extensions:
        worker.extensions["mixed"] = _Floor(
            [c for c in worker.clients if c.spec.kind == "patient" and not c.closed])
    floor: _Floor = worker.extensions["mixed"]
    free, waiting, called, holder = floor.free, floor.waiting, floor.called, floor.holder
    numbers, calls = floor.numbers, floor.calls
    staff = [c for c in worker.clients if c.spec.kind == "staff" and not c.closed]
    await floor.resync(staff)
    out: dict[str, Any] = {"ops": 0, "errors": {}, "duplicates": 0, "issued": 0}
    replies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    turn = 0
    staff_turn = 0

    def fail(code: str) -> None:
        out["errors"][code] = out["errors"].get(code, 0) + 1

    async def ask(client: Client, op: str, args: dict[str, Any]) -> dict[str, Any] | None:
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(REPLY_SECONDS):
                reply: dict[str, Any] = await client.request(op, args)
        except (TimeoutError, ConnectionError) as exc:
            fail(type(exc).__name__)
            return None
        replies.append(time.perf_counter() - sent)
        if not reply.get("ok"):
            fail(str(reply.get("error")))
            return None
        out["ops"] += 1
        return reply["result"]

    async def enter(patient: Client) -> None:
        clinic = patient.spec.clinic
        result = await ask(patient, "queue.enter", {"clinic": clinic})
        if result is None:
            free.append(patient)
            return
        key = (clinic, int(result["number"]))
        out["duplicates"] += key in numbers
        numbers.add(key)
        holder[key] = patient
        waiting[clinic] += 1

    async def call(client: Client, clinic: str) -> None:
        result = await ask(client, "queue.call", {"clinic": clinic})
        if result is None:
            waiting[clinic] += 1
            return
        key = (clinic, int(result["called"]["number"]))
        out["duplicates"] += key in calls
        calls.add(key)
        called[clinic].append(key[1])

    async def done(client: Client, clinic: str, number: int) -> None:
        if await ask(client, "queue.done", {"clinic": clinic, "number": number}) is not None:
            patient = holder.pop((clinic, number), None)
            if patient is not None:
                free.append(patient)

    def next_op() -> Any:
        nonlocal turn, staff_turn
        for _ in range(3):
            kind, turn = turn % 3, turn + 1
            if kind == 0 and free:
                return enter(free.popleft())
            ready = [c for c, n in waiting.items() if n > 0] if kind == 1 else \
                [c for c, q in called.items() if q]
            if ready:
                clinic = ready[staff_turn % len(ready)]
                client, staff_turn = staff[staff_turn % len(staff)], staff_turn + 1
                if kind == 1:
                    waiting[clinic] -= 1
                    return call(client, clinic)
                return done(client, clinic, called[clinic].popleft())
        return None

    loop = asyncio.get_running_loop()
    started = loop.time()
    while (elapsed := loop.time() - started) < seconds:
        while out["issued"] < rate * elapsed:
            op = next_op()
            if op is None:
                break
            out["issued"] += 1
            task = asyncio.create_task(op)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(TICK)
    span = loop.time() - started
    await asyncio.gather(*tasks)
    out.update(seconds=span, rate=rate, achieved=out["ops"] / span,
               reply_p50_ms=round((stats.percentile(replies, 50) or 0) * 1000, 2),
               reply_p99_ms=round((stats.percentile(replies, 99) or 0) * 1000, 2))
    return out


def sustained(step: dict[str, Any]) -> bool:
    """Zero errors, zero duplicates, the rate kept and no queue building up."""
    return (not step["errors"] and not step["duplicates"]
            and step["achieved"] >= 0.97 * step["rate"] and step["reply_p99_ms"] < 1000)


def run_commands(stage: Stage, *, quick: bool, cpus: tuple[set[int] | None, set[int] | None],
                 log: Path) -> dict[str, Any]:
    """Step the rate up until a step fails, then hold the best for the full time."""
    steps = [250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000]
    step_seconds, hold_seconds = (2.0, 5.0) if quick else (8.0, 60.0)
    server_cpus, load_cpus = cpus
    with stage.database() as dsn:
        seeded = stage.run(seed(dsn, 0, PATIENTS_PER_CLINIC, enter=False))
        specs = [Spec("patient", c, None, seeded.phones[c][i])
                 for i in range(PATIENTS_PER_CLINIC) for c in seeded.clinics]
        specs += [Spec("staff", seeded.clinics[i % 16], None, seeded.admin_token)
                  for i in range(STAFF_SOCKETS)]
        with launch("ours", dsn, server_cpus, log) as sut:
            fleet = Fleet(1, load_cpus)
            try:
                opened = fleet.connect(sut.ws_url, specs, concurrency=32)
                tried: list[dict[str, Any]] = []
                best = None
                for rate in steps:
                    step = _step(fleet, sut, rate, step_seconds, "step")
                    tried.append(step)
                    if not sustained(step):
                        break
                    best = rate
                held, holds = None, []
                # Three holds at most, from the best step down, in the quick run too: a
                # quick run's 2,500/s step often passes where its hold fails, and one
                # more shaky hold then left it with nothing held.
                for rate in [r for r in reversed(steps) if best and r <= best][:3]:
                    held = _step(fleet, sut, rate, hold_seconds, "hold")
                    holds.append(held)
                    if sustained(held):
                        break
                return {"sockets": opened["connected"], "connect_errors": opened["errors"],
                        "steps": tried, "holds": holds, "held": held,
                        "commands_per_s": round(held["achieved"]) if held and sustained(held)
                        else 0}
            finally:
                fleet.close()


def _step(fleet: Fleet, sut: Any, rate: float, seconds: float, name: str) -> dict[str, Any]:
    before, pg = sut.usage(), postgres_cpu()
    with profiling.recording(sut.process.pid, f"ours-commands-{name}-{rate}", seconds):
        step = fleet.all({"cmd": "mixed", "rate": rate, "seconds": seconds})[0]
    step["server_cpu_share"] = round((sut.usage()["cpu"] - before["cpu"]) / step["seconds"], 2)
    step["postgres_cpu_share"] = round((postgres_cpu() - pg) / step["seconds"], 2)
    step["achieved"] = round(step["achieved"], 1)
    return step
