"""Migrations: up, down to 0, up again gives the same schema; newer schemas refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from server import migrations
from server.app import create_app


async def pg_dump_schema(cluster, dsn: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run, [cluster.bin("pg_dump"), "--schema-only", "--no-owner", dsn],
        capture_output=True, text=True, check=True)
    # pg_dump 17+ prints a random \restrict key per run; it is not schema.
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


@pytest.fixture
async def empty_dsn(cluster):
    conn = await asyncpg.connect(cluster.admin_dsn)
    name = f"mmc_empty_{os.getpid()}"
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield cluster.dsn(name)
    await cluster.drop_database(name)


async def test_up_down_to_zero_and_up_again_gives_the_same_schema(cluster, empty_dsn):
    """`migrate`, `migrate --to 0`, `migrate`: pg_dump --schema-only is identical."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await migrations.migrate(conn) == (0, migrations.latest_known())
        first = await pg_dump_schema(cluster, empty_dsn)
        assert await migrations.migrate(conn, to=0) == (migrations.latest_known(), 0)
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert [r["tablename"] for r in tables] == ["schema_migrations"]
        functions = await conn.fetchval(
            """SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public'""")
        assert functions == 0
        await migrations.migrate(conn)
        assert await pg_dump_schema(cluster, empty_dsn) == first
    finally:
        await conn.close()


async def test_every_step_down_and_up_is_clean(empty_dsn):
    """Each migration's down script undoes exactly its up script."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        known = [m.version for m in migrations.discover()]
        for version in known:
            await migrations.migrate(conn, to=version)
        for version in reversed([0, *known[:-1]]):
            await migrations.migrate(conn, to=version)
            assert await migrations.current_version(conn) == version
    finally:
        await conn.close()


async def test_migrate_is_idempotent_and_serialised(empty_dsn):
    """Two migrators at once: one applies, the other finds nothing to do."""
    conns = [await asyncpg.connect(empty_dsn) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        latest = migrations.latest_known()
        assert sorted(results) == sorted([(0, latest), (latest, latest)])
    finally:
        for c in conns:
            await c.close()


async def test_server_refuses_a_schema_newer_than_it_knows(dsn):
    """A database migrated by a newer release: the app will not start."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')")
    finally:
        await conn.close()
    app = create_app(dsn=dsn)
    with pytest.raises(migrations.SchemaError, match="newer"):
        async with app.router.lifespan_context(app):
            pass


def test_version_command_prints_app_and_schema(dsn):
    """`python -m server version` reports both versions."""
    env = {**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "warning"}
    out = subprocess.run([sys.executable, "-m", "server", "version"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "app 0.1.0" in out
    assert f"schema {migrations.latest_known()}" in out


def test_migrate_to_an_unknown_version_is_refused(dsn):
    """`migrate --to 42` names the known versions and exits non-zero."""
    env = {**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "warning"}
    result = subprocess.run([sys.executable, "-m", "server", "migrate", "--to", "42"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no migration 42" in result.stderr
