"""Schema versions: the numbered files in schema/ applied in order under an advisory
lock, rolled back with their down scripts, and recorded in schema_migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import structlog

from server.db import Conn

log = structlog.get_logger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
MIGRATION_LOCK = 7171000
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.up\.sql$")


class SchemaError(RuntimeError):
    """The database's schema is not one this code can run against."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Path
    down: Path


def discover(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    found = []
    for path in sorted(schema_dir.glob("*.up.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise SchemaError(f"unexpected migration file name: {path.name}")
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        if not down.exists():
            raise SchemaError(f"migration {path.name} has no down script")
        found.append(Migration(int(match.group(1)), match.group(2), path, down))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or 0 in versions:
        raise SchemaError(f"migration numbers must be unique and positive, got {versions}")
    return found


def latest_known() -> int:
    found = discover()
    return found[-1].version if found else 0


async def _ensure_table(conn: Conn) -> None:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


async def current_version(conn: Conn) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def migrate(conn: Conn, to: int | None = None) -> tuple[int, int]:
    """Bring the schema to version `to` (default: the latest known); returns (from, to).
    Each step runs in its own transaction; concurrent callers wait on the lock."""
    migrations = discover()
    latest = migrations[-1].version if migrations else 0
    target = latest if to is None else to
    if target != 0 and target not in {m.version for m in migrations}:
        raise SchemaError(f"no migration {target}; known versions are 0 and "
                          f"{', '.join(str(m.version) for m in migrations)}")
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await _ensure_table(conn)
        start = await current_version(conn)
        if start > latest:
            raise SchemaError(f"database schema {start} is newer than this code knows ({latest})")
        for m in migrations:
            if start < m.version <= target:
                async with conn.transaction():
                    await conn.execute(m.up.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        m.version, m.name)
                log.info("migrate.up", version=m.version, name=m.name)
        for m in reversed(migrations):
            if target < m.version <= start:
                async with conn.transaction():
                    await conn.execute(m.down.read_text())
                    await conn.execute("DELETE FROM schema_migrations WHERE version = $1",
                                       m.version)
                log.info("migrate.down", version=m.version, name=m.name)
        return start, target
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def check_compatible(conn: Conn) -> int:
    """Refuse a schema newer than this code (a rollback that forgot `migrate --to`)
    or one not yet migrated; returns the version."""
    version = await current_version(conn)
    known = latest_known()
    if version > known:
        raise SchemaError(
            f"database schema {version} is newer than this code knows ({known}); "
            f"run the newer release or `python -m server migrate --to {known}` from it")
    if version < known:
        raise SchemaError(f"database schema {version} is behind ({known}); run migrate")
    return version
