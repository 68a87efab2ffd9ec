"""`python -m server serve` on the embedded default: ready, first admin, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from server.embedded import SETTINGS, SETTINGS_FILE
from tests.harness import MS, Cluster, free_port

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
    assert re.search(r"First admin account 'admin' created\. Password \(shown once\): \S+", out)
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
