"""deploy/rollback.sh: back to an earlier release with the schema it knows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
async def empty_dsn(cluster):
    name = f"mmc_rollback_{os.getpid()}"
    conn = await asyncpg.connect(cluster.admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield cluster.dsn(name)
    await cluster.drop_database(name)


async def test_rollback_runs_down_scripts_and_checks_out_the_release(empty_dsn, tmp_path):
    """From the newest commit back to the first release: the schema ends at that
    release's last migration (3) and the checkout at that release."""
    first_release = git("rev-list", "--max-parents=0", "HEAD")
    clone = tmp_path / "release"
    git("clone", "--quiet", str(REPO), str(clone), cwd=tmp_path)
    env = {**os.environ, "DATABASE_URL": empty_dsn, "PYTHON": sys.executable,
           "LOG_LEVEL": "warning"}
    # `python -m server` from the clone runs the clone's code and schema.
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "server", "migrate"], cwd=clone, env=env,
        check=True, capture_output=True, timeout=120)
    result = await asyncio.to_thread(
        subprocess.run, ["deploy/rollback.sh", "--no-install", first_release], cwd=clone,
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rollback: schema -> 3" in result.stdout
    assert "schema 3 (this code knows 3)" in result.stdout
    assert git("rev-parse", "HEAD", cwd=clone) == first_release
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 3
        assert await conn.fetchval("SELECT to_regprocedure('mmc_call_next(text, timestamptz)')")
    finally:
        await conn.close()


def test_rollback_refuses_an_unknown_release():
    """A ref that does not exist stops before touching the database."""
    result = subprocess.run(["deploy/rollback.sh", "--no-install", "no-such-release"],
                            cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DATABASE_URL": "postgresql://unused/x"})
    assert result.returncode == 2
    assert "unknown release" in result.stderr
