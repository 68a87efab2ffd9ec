"""The system under test as in production, all on 127.0.0.1: the embedded Postgres, the
database proxy in front of it, two `python -m server serve` processes and nginx before
them; each piece can be killed and started again, and `close()` stops every one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from server.db import init_connection
from server.embedded import EmbeddedPostgres
from tests.bench.stage import Seeded, seed
from tests.chaos.dbproxy import DbProxy
from tests.chaos.nginx import Nginx, render
from tests.harness import TEMPLATE, Cluster, free_port

ROOT = Path(__file__).resolve().parents[2]
# Long enough that nothing a client may resume from is pruned during the longest run.
RETENTION_SECONDS = 4 * 3600


@dataclass
class ServerProcess:
    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class Stack:
    def __init__(self, run_dir: Path | None = None, *, breaker_reset: int | None = None) -> None:
        self.breaker_reset = breaker_reset
        self.dir = run_dir or Path(tempfile.mkdtemp(prefix="mmc-chaos-"))
        self.embedded = EmbeddedPostgres(self.dir / "pg", delete_on_stop=True)
        self.cluster = Cluster("", self.embedded)
        self.proxy: DbProxy | None = None
        self.servers = [ServerProcess(n, free_port(), self.dir / f"server-{n}.log")
                        for n in ("a", "b")]
        self.port = free_port()
        self.nginx: Nginx | None = None
        self.database = ""
        self.direct_dsn = ""

    # start ----------------------------------------------------------------------------

    def start(self, phones_per_clinic: int) -> Seeded:
        self.cluster.admin_dsn = self.embedded.start()
        asyncio.run(self.cluster.create_template())
        self.database = asyncio.run(self.cluster.create_database(TEMPLATE))
        self.direct_dsn = self.cluster.dsn(self.database)
        seeded = asyncio.run(self._seed(phones_per_clinic))
        socket_dir = self.embedded.pgdata  # the wheel puts its socket in pgdata
        self.proxy = DbProxy(str(socket_dir / ".s.PGSQL.5432"), free_port())
        for server in self.servers:
            self.start_server(server)
        self.nginx = Nginx(render(self.dir / "nginx", self.port, [s.port for s in self.servers]))
        self.nginx.start(self.port)
        return seeded

    async def _seed(self, phones: int) -> Seeded:
        conn = await asyncpg.connect(self.direct_dsn)
        try:
            await init_connection(conn)
            # Only the crowd's staff call, nobody times out, nothing resumable is pruned.
            # (Values as JSON: the connection's codec encodes them.)
            settings: dict[str, object] = {"auto_call_enabled": False,
                                           "patient_max_wait_seconds": 86400,
                                           "events_retention_seconds": RETENTION_SECONDS}
            for key, value in settings.items():
                await conn.execute("SELECT mmc_settings_set($1, $2)", key, value)
        finally:
            await conn.close()
        return await seed(self.direct_dsn, 0, phones, enter=False)

    @property
    def proxied_dsn(self) -> str:
        assert self.proxy is not None
        return f"postgresql://postgres@127.0.0.1:{self.proxy.port}/{self.database}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_server(self, server: ServerProcess, within: float = 60.0) -> None:
        env = {**os.environ, "DATABASE_URL": self.proxied_dsn, "LOG_FORMAT": "json",
               "LOG_LEVEL": "info", "ADMIN_PASSWORD": "chaos-admin-password",
               "PYTHONUNBUFFERED": "1", "HOST": "127.0.0.1"}
        if self.breaker_reset is not None:
            env["BREAKER_RESET_SECONDS"] = str(self.breaker_reset)
        with server.log.open("ab") as out:
            server.process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1",
                 "--port", str(server.port)], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_raise_nofile)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server {server.name} exited with "
                                   f"{server.process.returncode}: see {server.log.name}")
            if self.ready(server.port):
                return
            time.sleep(0.2)
        raise TimeoutError(f"server {server.name} was not ready within {within:.0f} s")

    @staticmethod
    def ready(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self, within: float = 90.0) -> float:
        """Until every server's /ready (and nginx's) answers 200; seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if all(self.ready(s.port) for s in self.servers) and self.ready(self.port):
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"not ready within {within:.0f} s")

    # faults ---------------------------------------------------------------------------

    def kill_server(self, server: ServerProcess) -> None:
        assert server.process is not None
        server.process.kill()
        server.process.wait(timeout=10)

    def term_server(self, server: ServerProcess, within: float = 30.0) -> float:
        """SIGTERM: graceful (1012 to every socket); seconds until it exited."""
        assert server.process is not None
        started = time.monotonic()
        server.process.terminate()
        try:
            server.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
            raise
        return time.monotonic() - started

    def postgres_restart(self) -> None:
        self.embedded.pg_ctl("restart", "-m", "fast", "-w")

    def postgres_kill(self) -> None:
        """kill -9 of the postmaster and every backend (a power cut to Postgres alone),
        then a start, which runs crash recovery."""
        pidfile = self.embedded.pgdata / "postmaster.pid"
        postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
        victims = [postmaster, *postmaster.children(recursive=True)]
        for p in victims:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(victims, timeout=10)
        self.embedded.restart_if_stopped()

    def postgres_pids(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pidfile = self.embedded.pgdata / "postmaster.pid"
            postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
            return [postmaster.pid, *(c.pid for c in postmaster.children(recursive=True))]
        return []

    def restart_nginx(self) -> None:
        assert self.nginx is not None
        self.nginx.stop(fast=True)
        self.nginx.start(self.port)

    # stop -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this stack started, whatever state it is in."""
        if self.nginx is not None:
            with contextlib.suppress(Exception):
                self.nginx.stop(fast=True)
        for server in self.servers:
            if server.process is not None and server.process.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(timeout=10)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.close()
        with contextlib.suppress(Exception):
            self.embedded.stop()


def _raise_nofile() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
