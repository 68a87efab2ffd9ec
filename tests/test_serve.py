"""`python -m server serve` on the embedded default: ready, first admin, clean stop;
the uvicorn server it runs (server/runner.py): stops when told, keeps its Date, and tells
every open socket 1012 even while another is closing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from server.app import create_app
from server.clock import ManualClock
from server.config import Config
from server.embedded import SETTINGS, SETTINGS_FILE
from server.runner import Server
from server.wire import FanoutWebSocketProtocol, encode_text
from tests.harness import MS, Cluster, free_port, serve
from tests.realtime import Peer, client_frame, upgraded

READY_WITHIN = 60.0


def start(data_dir: Path, port: int, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ.update(DATA_DIR=str(data_dir), PORT=str(port), LOG_FORMAT="console", **env)
    return subprocess.Popen([sys.executable, "-m", "server", "serve"], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(port: int, proc: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_WITHIN:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(100 * MS)
    raise AssertionError("not ready in time")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_serve_on_the_embedded_default_is_ready_and_stops_cleanly(tmp_path):
    """First start: migrate, seed, first admin with a printed password, /ready 200;
    SIGTERM stops the embedded Postgres; a second start keeps the data."""
    port = free_port()
    proc = start(tmp_path, port)
    try:
        wait_ready(port, proc)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["status"] == "ok"
    finally:
        out = stop(proc)
    # The generated password is in an owner-only file, and in no log line.
    secret_file = tmp_path / "first-admin-password"
    assert f"Its password is in {secret_file.resolve()}" in out
    assert secret_file.stat().st_mode & 0o777 == 0o600
    password = secret_file.read_text().split("\n")[1]
    assert len(password) >= 12 and password not in out
    pgdata = tmp_path / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "embedded Postgres still running"

    proc = start(tmp_path, port)
    try:
        wait_ready(port, proc)
    finally:
        out = stop(proc)
    assert "First admin account" not in out
    assert not (pgdata / "postmaster.pid").exists()
    # Our settings file is included once, however often the server starts.
    assert (pgdata / "postgresql.conf").read_text().count(SETTINGS_FILE) == 1


async def test_the_embedded_server_runs_with_our_settings(cluster: Cluster, dsn: str) -> None:
    if cluster.embedded is None:
        pytest.skip("TEST_DATABASE_URL: not the embedded server")
    conn = await asyncpg.connect(dsn)
    try:
        for key, value in SETTINGS.items():
            assert await conn.fetchval(f"SHOW {key}") == value
    finally:
        await conn.close()


def test_transaction_pooler_url_is_refused_plainly():
    """A Supabase transaction pooler (port 6543) cannot carry LISTEN: serve says so."""
    env = {**os.environ, "DATABASE_URL": "postgresql://u:p@db.example.invalid:6543/postgres"}
    result = subprocess.run([sys.executable, "-m", "server", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "transaction-mode pooler" in result.stderr
    assert "LISTEN" in result.stderr


async def test_the_server_stops_as_soon_as_it_is_told(
        dsn: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its housekeeping tick is a second; being told to stop does not wait for it (here
    an hour long: only the wake-up can end the server inside the timeout)."""
    monkeypatch.setattr(Server, "TICK", 3600.0)
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=2), clock=clock)
    async with asyncio.timeout(30):
        async with serve(app) as live, httpx.AsyncClient() as client:
            assert (await client.get(f"{live.http_url}/health")).status_code == 200
        assert live.task.done()


async def test_a_stop_while_a_stalled_peer_closes_still_tells_every_other_socket_1012(
        dsn: str, clock: ManualClock) -> None:
    """A phone that stopped reading, frames waiting for it, sends its close. The server
    answers and closes its transport, which waits for those frames to leave. Told to stop
    then, uvicorn sent 1012 on that closing connection: websockets refused
    (InvalidState), the exception ended the shutdown, and the sockets after it were
    never told to move (a CI failure, tests/web/test_admin.py)."""
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=4), clock=clock)
    async with asyncio.timeout(30):
        async with serve(app) as live:
            displays = [await Peer.open(live.ws_url) for _ in range(4)]
            _, writer = await upgraded(live.port)
            port = writer.get_extra_info("sockname")[1]
            stalled = next(c for c in live.server.server_state.connections
                           if isinstance(c, FanoutWebSocketProtocol) and c.client[1] == port)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ours = stalled.transport.get_extra_info("socket")
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            for _ in range(16):  # what the hub would push, never read
                stalled.transport.write(encode_text("x" * 60_000))
            writer.write(client_frame(0x8, struct.pack("!H", 1001)))
            await writer.drain()
            for _ in range(500):  # the close is read and answered
                if stalled.transport.is_closing():
                    break
                await asyncio.sleep(10 * MS)
            assert stalled.transport.get_write_buffer_size() > 0, "its frames still wait"
            assert stalled in live.server.server_state.connections
        assert live.task.done() and live.task.exception() is None
        for display in displays:
            assert await display.wait_closed() == 1012
        writer.close()


async def test_the_date_header_keeps_up_with_the_wall_clock(
        dsn: str, clock: ManualClock) -> None:
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=2), clock=clock)
    async with serve(app) as live, httpx.AsyncClient() as client:
        for _ in range(2):
            await asyncio.sleep(Server.TICK * 1.5)
            answer = await client.get(f"{live.http_url}/health")
            stated = parsedate_to_datetime(answer.headers["date"]).timestamp()
            # Refreshed every tick, to the second: never more than two behind.
            assert time.time() - 2 * Server.TICK - 1 <= stated <= time.time() + 1
