"""The stage every round runs on: the embedded Postgres with a migrated template, a
fresh seeded database per run, and the system under test started as one process pinned
to one core (ours, or a peer), watched with psutil and always stopped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil

from server import auth
from server.auth import Principal
from server.db import init_connection
from server.embedded import EmbeddedPostgres
from tests.bench import profiling
from tests.harness import TEMPLATE, Cluster, free_port

T = TypeVar("T")
ADMIN = Principal("admin", "admin")
ROOT = Path(__file__).resolve().parents[2]

# How each system under test is started: `python -m <module> ...`.
COMMANDS = {
    "ours": ["-m", "server", "serve", "--host", "127.0.0.1", "--port"],
    "ceiling": ["-m", "tests.bench.ceiling", "--port"],
    "broadcaster": ["-m", "tests.bench.relay", "--port"],
}


def plan_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the server's core, everyone else's) or (None, None) on a single core."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


class Stage:
    """The embedded Postgres for the whole run (tests/harness.py's Cluster, on its
    migrated template) and a fresh database per system per round."""

    def __init__(self) -> None:
        self.cluster = Cluster(
            "", EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="mmc-bench-")),
                                 delete_on_stop=True))
        assert self.cluster.embedded is not None
        embedded = self.cluster.embedded
        self.cluster.admin_dsn = embedded.start()
        _postmaster[:] = [embedded.pgdata / "postmaster.pid"]
        if profiling.enabled():
            asyncio.run(profiling.track_statements(
                self.cluster.admin_dsn, lambda: embedded.pg_ctl("restart", "-w", "-m", "fast")))
        self.clinics: list[str] = asyncio.run(self._template())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(work)

    def fake_seed(self, phones: int) -> Seeded:
        """The clinics without a database (for the ceiling): nobody needs a token."""
        return Seeded(self.clinics, {c: [""] * phones for c in self.clinics}, "")

    async def _template(self) -> list[str]:
        await self.cluster.create_template()
        conn = await asyncpg.connect(self.cluster.dsn(TEMPLATE))
        try:
            await init_connection(conn)
            # Nothing but the benchmark's callers may call, and nobody times out.
            await conn.execute("SELECT mmc_settings_set('auto_call_enabled', 'false')")
            await conn.execute("SELECT mmc_settings_set('patient_max_wait_seconds', '86400')")
            return [r["code"] for r in await conn.fetch(
                "SELECT code FROM clinics WHERE is_active ORDER BY sort_order, code")]
        finally:
            await conn.close()

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        name = asyncio.run(self.cluster.create_database())
        try:
            yield self.cluster.dsn(name)
        finally:
            asyncio.run(self.cluster.drop_database(name))

    def stop(self) -> None:
        assert self.cluster.embedded is not None
        self.cluster.embedded.stop()


@dataclass
class Seeded:
    """Who stands where: per clinic the phones' patients (after `waiting` others) and
    their tokens; an admin token for the callers."""

    clinics: list[str]
    phones: dict[str, list[str]]
    admin_token: str


def patient_id(clinic_index: int, n: int) -> str:
    return f"9{clinic_index:02d}{n:07d}"


async def seed(dsn: str, waiting: int, phones: int, *, enter: bool = True) -> Seeded:
    """`waiting` patients without sockets, then `phones` with one, in every clinic
    (the phones' patients only logged in, not queued, unless `enter`)."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        rows = await conn.fetch(
            "SELECT code, gender FROM clinics WHERE is_active ORDER BY sort_order, code")
        people = []
        for i, row in enumerate(rows):
            gender = "female" if row["gender"] == "female" else "male"
            people += [(patient_id(i, n), gender, row["code"]) for n in range(waiting + phones)]
        await conn.executemany("SELECT mmc_patient_login($1, $2, now())",
                               [(p, g) for p, g, _ in people])
        queued = [(p, c) for p, _, c in people
                  if enter or int(p[3:]) < waiting]
        await conn.executemany("SELECT mmc_queue_enter($1, $2, now())", queued)
        now = datetime.now(UTC)
        tokens: dict[str, list[str]] = {}
        for i, row in enumerate(rows):
            ids = [patient_id(i, n) for n in range(waiting, waiting + phones)]
            tokens[row["code"]] = [
                await auth.create_session(conn, Principal("patient", p), now) for p in ids]
        admin = await auth.create_session(conn, ADMIN, now)
        # Statistics as a working day has them: without this, autovacuum analyses the
        # freshly loaded tables at some moment inside a measured phase, and the plans
        # before it are the planner's guesses (round-to-round noise, not the system).
        await conn.execute("VACUUM ANALYZE")
        return Seeded([r["code"] for r in rows], tokens, admin)
    finally:
        await conn.close()


@dataclass
class System:
    """One running system under test."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def usage(self) -> dict[str, float]:
        """CPU seconds so far and resident memory (KiB)."""
        p = psutil.Process(self.process.pid)
        times = p.cpu_times()
        return {"cpu": times.user + times.system, "rss_kib": p.memory_info().rss / 1024}


_postmaster: list[Path] = []  # the running Stage's postmaster.pid


def postmaster_pidfile() -> Path:
    """The running Stage's postmaster.pid (for `postgres_cpu` in a child process)."""
    return _postmaster[0]


def postgres_cpu(pidfile: Path | None = None) -> float:
    """CPU seconds so far of the benchmark's own Postgres (its postmaster and every
    backend under it, exited ones included), not of another cluster on the machine;
    0 when unknown. `pidfile`: the Stage's, where this process has no Stage."""
    total = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        postmaster = psutil.Process(int((pidfile or _postmaster[0]).read_text().split()[0]))
        # A backend that exits (a pool closing an idle connection) leaves its CPU in
        # the postmaster's children_* times once reaped; without them a phase in which
        # one exits would count less than nothing.
        times = postmaster.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
        for p in postmaster.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
    return total


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (all cores)."""
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + \
        getattr(t, "nice", 0.0)


def _child_setup(cpus: set[int] | None) -> Any:
    def setup() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


@contextlib.contextmanager
def launch(name: str, dsn: str | None, cpus: set[int] | None, log: Path, *,
           env: dict[str, str] | None = None) -> Iterator[System]:
    """Start `name` on a free port, wait until /ready answers, stop it afterwards."""
    port = free_port()
    environ = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json",
               "ADMIN_PASSWORD": "bench-admin-password", "PYTHONUNBUFFERED": "1", **(env or {})}
    if dsn is not None:
        environ["DATABASE_URL"] = dsn
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *COMMANDS[name], str(port)], cwd=ROOT, env=environ, stdout=out,
            stderr=subprocess.STDOUT, preexec_fn=_child_setup(cpus), start_new_session=True)
    system = System(name, process, port)
    try:
        _wait_ready(system)
        yield system
    finally:
        stop(process)


def _wait_ready(system: System, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if system.process.poll() is not None:
            raise RuntimeError(f"{system.name} exited with {system.process.returncode}")
        try:
            with urllib.request.urlopen(f"{system.http_url}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{system.name} was not ready within {within:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL: never leave a server behind."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
