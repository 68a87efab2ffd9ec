"""What a measured phase spent its time on (`--profile DIR`): py-spy on the system
under test (the raw stacks, and a summary of own time per line and inclusive time per
function that a report can quote), and pg_stat_statements on the embedded Postgres
(every statement, nested ones too, with its calls and time: a function waiting on a
lock shows the lock as a statement of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg

PROFILE_DIR = "MMC_BENCH_PROFILE"  # set by `python -m tests.bench --profile DIR`
# Loaded at Postgres start, so a profiled run restarts the stage's server once.
STATEMENTS_SETTINGS = {"shared_preload_libraries": "pg_stat_statements",
                       "pg_stat_statements.track": "all"}
_statements_dsn: list[str] = []  # the stage's admin DSN once statements are tracked


def enabled() -> bool:
    return bool(os.environ.get(PROFILE_DIR))


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def track_statements(admin_dsn: str, restart: Callable[[], None]) -> None:
    """Load pg_stat_statements into the stage's Postgres (`restart` restarts it)."""
    for key, value in STATEMENTS_SETTINGS.items():
        await _fetch(admin_dsn, f"ALTER SYSTEM SET {key} = '{value}'")
    restart()
    await _fetch(admin_dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    _statements_dsn[:] = [admin_dsn]


def _statements(rows: list[asyncpg.Record]) -> str:
    lines = ["calls  total ms  mean ms  level  statement (time includes nested statements "
             "and lock waits)"]
    for row in rows:
        text = " ".join(row["query"].split())[:160]
        lines.append(f"{row['calls']:>6} {row['total_exec_time']:>9.1f} "
                     f"{row['total_exec_time'] / max(1, row['calls']):>8.3f}  "
                     f"{'top' if row['toplevel'] else 'nested':<6} {text}")
    return "\n".join(lines) + "\n"


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, name: str, seconds: float) -> Iterator[None]:
    """Record `pid` with py-spy for about `seconds`, and what Postgres ran meanwhile,
    when profiling was asked for; else nothing."""
    if not enabled():
        yield
        return
    folder, spy = os.environ[PROFILE_DIR], _py_spy()
    Path(folder).mkdir(parents=True, exist_ok=True)
    if _statements_dsn:
        asyncio.run(_fetch(_statements_dsn[0], "SELECT pg_stat_statements_reset()"))
    try:
        if spy is None:
            yield
        else:
            with _spying(spy, pid, Path(folder), name, seconds):
                yield
    finally:
        if _statements_dsn:
            rows = asyncio.run(_fetch(
                _statements_dsn[0], "SELECT calls, total_exec_time, toplevel, query "
                "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 40"))
            (Path(folder) / f"{name}.statements.txt").write_text(_statements(rows))


@contextlib.contextmanager
def _spying(spy: str, pid: int, folder: Path, name: str, seconds: float) -> Iterator[None]:
    raw = folder / f"{name}.raw.txt"
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            process.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if raw.exists():
        (folder / f"{name}.summary.txt").write_text(summarize(raw))


def _function(frame: str) -> str:
    """'send (uvicorn/protocols/websockets/x.py:506)' -> 'send (x.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summarize(raw: Path, top: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        # Own time per line, without the machine's paths.
        leaf = frames[-1]
        name, _, where = leaf.partition(" (")
        own[f"{name} ({where.rsplit('/', 1)[-1]}" if where else name] += n
        for function in {_function(f) for f in frames}:
            inclusive[function] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "own time (the line a sample was on):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time (a function anywhere on the stack):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top + 20)]
    return "\n".join(lines) + "\n"
