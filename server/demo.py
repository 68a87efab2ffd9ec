"""`python -m server demo`: the server on the embedded Postgres, and a committee morning
played against it through the WebSocket protocol only, as people and screens would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import random
import secrets
import signal
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from clients.python.client import Client, ClientError, Disconnected
from server import accounts, migrations
from server.config import Config, ConfigError

log = structlog.get_logger(__name__)

EXAM_TYPES = ("recruitment", "promotion", "transfer", "referral", "contract", "aviation",
              "cooks", "courses")
# Stations where a technician measures something: quicker than a doctor's examination.
QUICK = frozenset({"lab", "xray", "vitals", "ecg", "audio"})
MORNING_MINUTES = 240  # 07:00 to 11:00: then the next morning's arrivals begin
DISPLAY_CLINICS = ("lab", "xray", "vitals", "eyes")
STAFF_PREFIX = "demo-"
RECEPTION = "demo-reception"
# Examinees without a smartphone of their own are registered at the reception desk and
# sign in with the code on their slip (after the opening crowd).
AT_RECEPTION = 0.15
# Refusals that mean the entry moved on without this desk (a PIN, a timeout): let it go.
GIVE_UP = ("conflict", "not_found", "empty", "bad_request", "forbidden")


@dataclass(frozen=True)
class Options:
    speed: float = 10.0
    duration: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Desk:
    """One clinic as the demo's staff see it."""

    clinic: str
    capacity: int
    requires_pin: bool
    username: str
    password: str


def arrivals_per_hour(minute: float) -> float:
    """A committee morning: a trickle at opening, a crowd around 08:15, thinning out."""
    return 8.0 + 40.0 * math.exp(-(((minute % MORNING_MINUTES) - 75.0) / 45.0) ** 2)


class Morning:
    """Examinees arriving and clinic desks serving them, each with its own socket."""

    def __init__(self, ws_url: str, desks: list[Desk], options: Options) -> None:
        self.ws_url, self.desks, self.options = ws_url, desks, options
        # One stream of chance per actor, so a seed brings the same examinees in the
        # same order whatever the timing of the others.
        self.rng = self.random("arrivals")
        self.examinees = self.random("examinees")
        # IDs new to the database even when the same seed plays twice in one day.
        self.run_id = secrets.randbelow(9000) + 1000
        self.counts: Counter[str] = Counter()
        # Who was called where: the doctor tells the person in the room the PIN.
        self.called: dict[tuple[str, int], Client] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = 0.0

    def random(self, who: str) -> random.Random:
        return random.Random(None if self.options.seed is None else f"{self.options.seed}:{who}")

    def patient_id(self, n: int) -> str:
        return f"{self.run_id}{n:04d}"

    def sim_minutes(self) -> float:
        return (asyncio.get_running_loop().time() - self._started) * self.options.speed / 60

    async def pause(self, low: float, high: float) -> None:
        """Wait a committee's `low`..`high` seconds, compressed by the speed."""
        await asyncio.sleep(self.examinees.uniform(low, high) / self.options.speed)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("demo.task_failed", task=task.get_name(), error=str(task.exception()))

    async def run(self) -> None:
        """Open the desks, then let examinees in until cancelled."""
        self._started = asyncio.get_running_loop().time()
        for desk in self.desks:
            self.spawn(self.serve_desk(desk), f"desk {desk.clinic}")
        reporter = asyncio.create_task(self.report())
        try:
            async with Client(self.ws_url) as reception:
                await reception.request("staff.login", {"username": RECEPTION,
                                                        "password": self.desks[0].password})
                await self.arrivals(reception)
        finally:
            reporter.cancel()
            tasks = [*self._tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def arrivals(self, reception: Client) -> None:
        # Every exam type with both genders first (the first is the one a person can
        # follow on a phone), then about two men to a woman.
        combos = [(e, g) for e in EXAM_TYPES for g in ("male", "female")]
        for n in itertools.count(1):
            exam, gender = combos[n - 1] if n <= len(combos) else (
                self.rng.choice(EXAM_TYPES), "female" if self.rng.random() < 0.35 else "male")
            slip = reception if n > len(combos) and self.rng.random() < AT_RECEPTION else None
            self.spawn(self.examinee(self.patient_id(n), gender, exam, slip), f"examinee {n}")
            # A crowd waits at the door when the committee opens; then the day's rate.
            rate = 180.0 if n < len(combos) else arrivals_per_hour(self.sim_minutes())
            await asyncio.sleep(self.rng.expovariate(rate / 3600) / self.options.speed)

    async def report(self) -> None:
        while True:
            await asyncio.sleep(30)
            log.info("demo.progress", minutes=round(self.sim_minutes()), **self.counts)

    async def examinee(self, patient_id: str, gender: str, exam: str,
                       reception: Client | None) -> None:
        """Log in (with the code of a slip from `reception`, if given), take the day's
        route, follow it on `me` until it is done or abandoned."""
        who = {"patient_id": patient_id, "gender": gender}
        if reception is not None:
            slip = await reception.request("reception.register", {**who, "exam_type": exam})
            who["login_code"] = slip["login_code"]
            self.counts["registered"] += 1
        async with Client(self.ws_url) as me:
            await me.request("patient.login", who)
            route = await me.request("route.create", {"exam_type": exam})
            if route.get("status") != "active":
                return
            self.counts["arrived"] += 1
            await me.subscribe("me")
            async for frame in me.frames():
                data = frame.get("data") or {}
                if frame.get("notice") == "YOUR_TURN":
                    self.called[(data["clinic"], data["number"])] = me
                elif frame.get("event") == "ROUTE_COMPLETED":
                    self.counts["routes_completed"] += 1
                    return
                elif frame.get("event") in ("NO_SHOW", "CANCELLED"):
                    # Half come back later and ask for their next clinic again.
                    if self.examinees.random() < 0.5:
                        return
                    await self.pause(300, 900)
                    with contextlib.suppress(ClientError):
                        await me.request("path.choose")

    async def serve_desk(self, desk: Desk) -> None:
        """A clinic's staff: call when a room is free, start, examine, finish."""
        while True:
            try:
                async with Client(self.ws_url) as staff:
                    await staff.request("staff.login", {"username": desk.username,
                                                        "password": desk.password})
                    await Rooms(self, desk, staff).serve()
            except (ClientError, Disconnected, ConnectionError) as exc:
                log.warning("demo.desk_restarts", clinic=desk.clinic, error=str(exc))
                await asyncio.sleep(1)


@dataclass
class Step:
    action: str  # start, done, pin, recall, skip, no_show
    due: float   # event-loop time


class Rooms:
    """The rooms of one clinic: what happens next to each number being served."""

    def __init__(self, morning: Morning, desk: Desk, staff: Client) -> None:
        self.morning, self.desk, self.staff = morning, desk, staff
        self.rng = morning.random(desk.clinic)
        self.plans: dict[int, Step] = {}
        self.next_call = 0.0
        self.pin: str | None = None
        # How often to look at the queue: about every 20 committee seconds.
        self.look = min(2.0, max(0.2, 20 / morning.options.speed))

    def later(self, action: str, low: float, high: float) -> Step:
        delay = self.rng.uniform(low, high) / self.morning.options.speed
        return Step(action, asyncio.get_running_loop().time() + delay)

    def when_called(self) -> Step:
        r = self.rng.random()
        if r < 0.05:
            return self.later("no_show", 150, 200)
        if r < 0.09:
            return self.later("skip", 40, 90)
        if r < 0.17:
            return self.later("recall", 40, 70)
        return self.later("start", 15, 90)

    def when_started(self) -> Step:
        low, high = (60, 180) if self.desk.clinic in QUICK else (150, 420)
        typed = self.desk.requires_pin and self.rng.random() < 0.5
        return self.later("pin" if typed else "done", low, high)

    async def serve(self) -> None:
        if self.desk.requires_pin:
            self.pin = (await self.staff.request("pin.current"))["pins"][self.desk.clinic]
        loop = asyncio.get_running_loop()
        while True:
            status = await self.staff.request("queue.status")
            serving = set(status["serving"])
            for number in [n for n in self.plans if n not in serving]:
                del self.plans[number]  # finished by a PIN, or timed out by the server
            for number in serving - self.plans.keys():
                # Called by the server's auto-call (or started before a reconnect):
                # done answers either state.
                self.plans[number] = self.later("done", 60, 240)
            now = loop.time()
            if (len(serving) < status["capacity"] and status["total_waiting"]
                    and not status["is_paused"] and now >= self.next_call):
                await self.act("call", None)
            for number, step in sorted(self.plans.items()):
                if step.due <= loop.time():
                    await self.act(step.action, number)
            due = min((s.due for s in self.plans.values()), default=now + self.look)
            await asyncio.sleep(min(self.look, max(0.05, due - loop.time())))

    async def act(self, action: str, number: int | None) -> None:
        counts, clinic = self.morning.counts, self.desk.clinic
        try:
            if action == "call":
                called = await self.staff.request("queue.call")
                self.plans[called["called"]["number"]] = self.when_called()
            elif action == "pin" and number is not None:
                await self.patient_types_pin(number)
            elif number is not None:
                await self.staff.request(f"queue.{action}", {"number": number})
        except ClientError as exc:
            if exc.code == "wrong_pin" and number is not None:
                self.plans[number] = self.later("done", 5, 15)
                return
            if exc.code not in GIVE_UP:
                raise
            self.plans.pop(number or -1, None)
            return
        counts[action] += 1
        if action == "start" and number is not None:
            self.plans[number] = self.when_started()
        elif action == "recall" and number is not None:
            self.plans[number] = self.later("start", 10, 40)
        elif action in ("done", "pin", "skip", "no_show") and number is not None:
            del self.plans[number]
            self.morning.called.pop((clinic, number), None)
            self.next_call = asyncio.get_running_loop().time() + self.rng.uniform(
                10, 40) / self.morning.options.speed

    async def patient_types_pin(self, number: int) -> None:
        """The examinee types the PIN the doctor gives them; staff press done otherwise."""
        patient = self.morning.called.get((self.desk.clinic, number))
        if patient is None or self.pin is None:
            await self.staff.request("queue.done", {"number": number})
            return
        try:
            await patient.request("pin.submit", {"clinic": self.desk.clinic, "pin": self.pin})
        except ClientError as exc:
            if exc.code == "wrong_pin":  # rotated since we read it
                self.pin = (await self.staff.request("pin.current"))["pins"][self.desk.clinic]
            raise


async def prepare(conn: asyncpg.Connection, config: Config) -> tuple[str | None, list[Desk]]:
    """Migrate, create the first admin as `serve` does, and a staff account for every
    active clinic (as `python -m server admin add-staff` would) and one for the
    reception desk, all with one password new to this run, so that a person can sign in
    at any clinic's console or at the desk too."""
    await migrations.migrate(conn)
    generated = await accounts.ensure_first_admin(conn, config.admin_username,
                                                  config.admin_password)
    desks = []
    password = secrets.token_urlsafe(12)
    for row in await conn.fetch("""SELECT code, capacity, requires_pin FROM clinics
                                    WHERE is_active ORDER BY code"""):
        username = STAFF_PREFIX + row["code"]
        exists = await conn.fetchval(
            "SELECT clinic_code FROM admins WHERE username = $1 AND role = 'staff'", username)
        if exists is None:
            await accounts.create_staff(conn, username, password, row["code"])
        elif exists == row["code"]:
            await accounts.reset_password(conn, username, password)
        else:
            raise ConfigError(f"the account {username} exists for another clinic")
        desks.append(Desk(row["code"], row["capacity"], row["requires_pin"], username,
                          password))
    role = await conn.fetchval("SELECT role FROM admins WHERE username = $1", RECEPTION)
    if role is None:
        await accounts.create_reception(conn, RECEPTION, password)
    elif role == "reception":
        await accounts.reset_password(conn, RECEPTION, password)
    else:
        raise ConfigError(f"the account {RECEPTION} exists with another role")
    return generated, desks


def urls(base: str, morning: Morning, paths: set[str]) -> list[str]:
    """What to open, for the screens this server serves."""
    lines = [f"Demo: a committee morning at {morning.options.speed:g}x on {base} "
             f"(Ctrl-C stops it)"]
    password = morning.desks[0].password
    if "/display" in paths:
        lines.append(f"  waiting-room display  {base}/display?clinics={','.join(DISPLAY_CLINICS)}")
    if "/" in paths:
        lines.append(f"  patient phone         {base}/   log in with an ID of your own (2-12 "
                     "digits) and an exam type: the demo's staff serve you with everyone else;")
        lines.append(f"                        or with ID {morning.patient_id(1)}, male, to "
                     "follow the morning's first examinee")
    if "/clinic" in paths:
        lines.append(f"  clinic console        {base}/clinic   {STAFF_PREFIX}lab (or "
                     f"{STAFF_PREFIX}<any clinic code>) / {password}")
    if "/reception" in paths:
        lines.append(f"  reception desk        {base}/reception   {RECEPTION} / {password}")
    if "/admin" in paths:
        lines.append(f"  admin dashboard       {base}/admin   admin, with ADMIN_PASSWORD or the "
                     "password in the file named when it was made")
    lines.append(f"  the same as frames    python -m clients.python watch clinic:lab "
                 f"--url {base.replace('http', 'ws', 1)}/ws")
    return lines


def run(config: Config, options: Options, *, database_url: str | None, host: str, port: int,
        announce: Callable[[str], None]) -> int:
    """Serve as `serve` does, play the morning until Ctrl-C or `options.duration`."""
    from server.app import create_app
    from server.cli import database, keep_first_password, with_connection
    from server.runner import Server, uvicorn_config

    if config.database_url and not database_url:
        raise ConfigError("the demo fills its database with made-up examinees, so it does not "
                          "use DATABASE_URL: unset it to run on the embedded Postgres, or pass "
                          "--database-url to mean that database")
    # The QR codes' default address (no PUBLIC_URL) is where this server listens.
    config = dataclasses.replace(config, host=host, port=port,
                                 database_url=database_url or config.database_url)
    with database(config) as dsn:
        generated, desks = with_connection(dsn, lambda c: prepare(c, config))
        keep_first_password(config, generated)
        app = create_app(config, dsn=dsn)
        # Hundreds of examinees' sockets would fill the terminal with uvicorn's
        # "connection open" lines; the demo prints its own progress instead.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        paths = {getattr(r, "path", "") for r in app.routes}
        server = Server(uvicorn_config(app, host=host, port=port))
        for sig in (signal.SIGINT, signal.SIGTERM):  # as serve: uvicorn re-raises them
            signal.signal(sig, lambda *_: None)

        async def main() -> None:
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    return await serving
                await asyncio.sleep(0.05)
            bound = server.servers[0].sockets[0].getsockname()[1]
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            morning = Morning(f"ws://{shown}:{bound}/ws", desks, options)
            for line in urls(f"http://{shown}:{bound}", morning, paths):
                announce(line)
            playing = asyncio.create_task(morning.run())
            # Ctrl-C makes uvicorn shut down (its sockets close with 1012): the morning
            # stops with it, or when its time is up.
            await asyncio.wait({serving, playing}, timeout=options.duration,
                               return_when=asyncio.FIRST_COMPLETED)
            playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playing
            log.info("demo.finished", **morning.counts)
            server.should_exit = True
            await serving

        asyncio.run(main())
    return 0
