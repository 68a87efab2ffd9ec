"""The mixed command driver of the chaos crowd: enter, call and done in turn (as
tests/bench/mixed.py) at a steady rate through every fault, each outcome counted, with
at most WAITING_CAP patients waiting per clinic so the load is a steady state."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from tests.bench import stats

if TYPE_CHECKING:
    from tests.chaos.crowd import Client, Crowd

PHONE, STAFF = "phone", "staff"
REPLY_TIMEOUT = 10.0          # a command unanswered this long is a hang
TERMINAL = {"COMPLETED", "SKIPPED", "NO_SHOW", "CANCELLED"}
WAITING, CALLED, FINISHED = 1, 2, 3
# A phone's own entry is active in these (snapshot statuses and event names alike).
ACTIVE = {"WAITING", "CALLED", "IN_PROGRESS", "ENTERED", "RECALLED"}
# A phone enters only while fewer than this wait (or are entering) at its clinic. The
# work of a command grows with the waiting list (every waiting phone is told its new
# position on each move); without a cap the list grows whenever replies slow down,
# which slows them further, and a soak measures that spiral instead of drift.
WAITING_CAP = 5


class Driver:
    """The mixed commands (enter, call, done in turn, as tests/bench/mixed.py), issued
    at a steady rate whatever happens; who waits and who is called is read from the
    staff channels' events, so a reply lost in a fault cannot mislead it."""

    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self.stop = False
        self.waiting: dict[str, set[int]] = {}
        self.called: dict[str, list[int]] = {}  # in the order they were called
        self.applied: dict[str, int] = {}
        self.rank: dict[str, dict[int, int]] = {}
        self.inflight: set[tuple[str, str, int]] = set()
        self.entering: dict[str, str] = {}  # patient -> clinic, enter awaiting its reply
        self.failure: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # commands awaiting their replies
        self.idle = asyncio.Event()
        self.idle.set()
        self.reset()

    def reset(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.replies: list[float] = []
        self.issued = 0
        self.not_sent = 0
        self.waited = 0
        self.without_retry_after = 0

    def on_staff_event(self, clinic: str, seq: int, name: str | None,
                       number: int | None) -> None:
        if seq <= self.applied.get(clinic, 0) or number is None:
            return
        self.applied[clinic] = seq
        if name == "ENTERED":
            self.advance(clinic, number, WAITING)
        elif name in ("CALLED", "RECALLED"):
            self.advance(clinic, number, CALLED)
        elif name in TERMINAL:
            self.advance(clinic, number, FINISHED)

    def advance(self, clinic: str, number: int, rank: int) -> None:
        """A number only moves forward (waiting, called, finished): a reply and the
        event it caused arrive in either order, and neither may undo the other."""
        ranks = self.rank.setdefault(clinic, {})
        before = ranks.get(number, 0)
        if rank <= before:
            return
        ranks[number] = rank
        waiting = self.waiting.setdefault(clinic, set())
        called = self.called.setdefault(clinic, [])
        if before == WAITING:
            waiting.discard(number)
        elif before == CALLED and number in called:
            called.remove(number)
        if rank == WAITING:
            waiting.add(number)
        elif rank == CALLED:
            called.append(number)

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    async def ask(self, client: Client, op: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """The result of `op`, or None (each outcome counted by name)."""
        if not client.up:
            self.not_sent += 1  # reconnecting: a real client would wait for its socket
            return None
        if client.not_before > time.monotonic():
            self.waited += 1  # told to retry later: a real client waits, so does this one
            return None
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                reply = await client.request(op, args)
        except TimeoutError:
            self.outcome("hang")
            return None
        except ConnectionError:
            self.outcome("socket_closed")
            return None
        self.replies.append(time.perf_counter() - sent)
        if reply.get("ok"):
            self.outcome("ok")
            result: dict[str, Any] = reply.get("result") or {}
            return result
        code = str(reply.get("error"))
        self.outcome(code)
        retry_after = reply.get("retry_after")
        if code == "unavailable" and not retry_after:
            self.without_retry_after += 1
        if isinstance(retry_after, int | float) and retry_after > 0:
            # Honoured, but capped: the run wants to see the recovery soon after it.
            client.not_before = time.monotonic() + min(float(retry_after), 2.0)
        return None

    async def call(self, who: Client, clinic: str) -> None:
        result = await self.ask(who, "queue.call", {"clinic": clinic})
        called = (result or {}).get("called")
        if isinstance(called, dict) and called.get("number") is not None:
            self.advance(clinic, int(called["number"]), CALLED)

    async def done(self, who: Client, clinic: str, number: int) -> None:
        if await self.ask(who, "queue.done", {"clinic": clinic, "number": number}) is not None:
            self.advance(clinic, number, FINISHED)

    async def settle(self) -> None:
        """Until every command issued so far has its outcome (a hang takes
        REPLY_TIMEOUT), so each window counts the commands it issued."""
        pending = list(self.tasks)
        if pending:
            await asyncio.wait(pending, timeout=REPLY_TIMEOUT + 2)

    def report(self) -> dict[str, Any]:
        replies = sorted(self.replies)
        return {"issued": self.issued, "not_sent": self.not_sent, "waited": self.waited,
                "outcomes": self.outcomes,
                "failure": self.failure, "phones_free": sum(
                    1 for c in self.crowd.clients
                    if c.spec.kind == PHONE and c.up and c.status not in ACTIVE),
                "without_retry_after": self.without_retry_after,
                "waiting_max": max((len(w) for w in self.waiting.values()), default=0),
                "reply_p50_ms": _ms(stats.percentile(replies, 50)),
                "reply_p99_ms": _ms(stats.percentile(replies, 99))}

    async def run(self, rate: float, seconds: float) -> None:
        self.stop = False
        self.idle.clear()
        try:
            await self._run(rate, seconds)
        finally:
            self.idle.set()

    async def _run(self, rate: float, seconds: float) -> None:
        clients = self.crowd.clients
        phones = [c for c in clients if c.spec.kind == PHONE]
        staff: dict[str, list[Client]] = {}
        for c in clients:
            if c.spec.kind == STAFF:
                staff.setdefault(c.spec.clinic, []).append(c)
        tasks = self.tasks
        loop = asyncio.get_running_loop()
        started = loop.time()
        turn = itertools.count()
        rr = itertools.count()
        free_at = itertools.count()

        def launch(coro: Any, key: tuple[str, str, int] | None = None) -> None:
            self.issued += 1
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if key is not None:
                self.inflight.add(key)
                task.add_done_callback(lambda _: self.inflight.discard(key))

        def enter() -> bool:
            n = len(phones)
            entering = Counter(self.entering.values())

            def queued(clinic: str) -> int:
                return len(self.waiting.get(clinic, ())) + entering[clinic]

            for _ in range(min(n, 64)):
                phone = phones[next(free_at) % n]
                pid, clinic = phone.spec.patient or "", phone.spec.clinic
                if phone.up and phone.status not in ACTIVE and pid not in self.entering \
                        and queued(clinic) < WAITING_CAP:
                    self.entering[pid] = clinic
                    task_done = self.ask(phone, "queue.enter", {"clinic": clinic})

                    async def run(t: Any = task_done, p: str = pid, c: Client = phone) -> None:
                        try:
                            result = await t
                            if result is not None and c.status not in ACTIVE:
                                c.status = "WAITING"  # until its own events say more
                            entry = result or {}
                            # Counted as waiting at once: the cap must not wait for the event.
                            if entry.get("status") == "WAITING" and \
                                    isinstance(entry.get("number"), int):
                                self.advance(c.spec.clinic, entry["number"], WAITING)
                        finally:
                            self.entering.pop(p, None)
                    launch(run())
                    return True
            return False

        def staff_op(kind: str) -> bool:
            clinics = list(staff)
            start = next(rr)
            for i in range(len(clinics)):
                clinic = clinics[(start + i) % len(clinics)]
                who = staff[clinic][next(rr) % len(staff[clinic])]
                if kind == "call":
                    pending = sum(1 for k in self.inflight if k[0] == "call" and k[1] == clinic)
                    if len(self.waiting.get(clinic, ())) > pending:
                        launch(self.call(who, clinic), ("call", clinic, next(rr)))
                        return True
                else:
                    for number in self.called.get(clinic, []):
                        key = ("done", clinic, number)
                        if key not in self.inflight:
                            launch(self.done(who, clinic, number), key)
                            return True
            return False

        issued_here = 0
        while not self.stop and (elapsed := loop.time() - started) < seconds:
            while issued_here < rate * elapsed:
                kind = next(turn) % 3
                done = (enter() if kind == 0 else staff_op("call" if kind == 1 else "done"))
                if not done:
                    done = enter() or staff_op("call") or staff_op("done")
                if not done:
                    break
                issued_here += 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)
