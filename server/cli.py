"""The command line: python -m server {serve,migrate,admin,pins,report,version,demo}."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson

from server import __version__, accounts, collector, logs, migrations, reports
from server.config import Config, ConfigError
from server.db import init_connection
from server.embedded import EmbeddedPostgres

T = TypeVar("T")


@contextmanager
def database(config: Config) -> Iterator[str]:
    """A DSN: DATABASE_URL, or the embedded server (stopped again afterwards)."""
    if config.database_url:
        yield config.database_url
        return
    embedded = EmbeddedPostgres(config.data_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def with_connection(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(dsn)
        try:
            await init_connection(conn)
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def keep_first_password(config: Config, generated: str | None) -> None:
    """Put a first admin password generated at start where its owner finds it (serve
    and demo)."""
    if generated:
        # Never printed: a log stream is shipped and kept. An owner-only file is not.
        where = accounts.write_first_password(config.data_dir, config.admin_username,
                                              generated)
        print(f"First admin account '{config.admin_username}' created. Its password "
              f"is in {where} (readable only by this user); log in, change it, and "
              "delete the file.", flush=True)


def cmd_serve(config: Config, ns: argparse.Namespace) -> int:
    from server.app import create_app
    from server.runner import Server, uvicorn_config

    host = ns.host or config.host
    port = config.port if ns.port is None else ns.port
    # The QR codes' default address (no PUBLIC_URL) is where this server really listens.
    config = dataclasses.replace(config, host=host, port=port)
    with database(config) as dsn:
        async def prepare(conn: asyncpg.Connection) -> str | None:
            await migrations.migrate(conn)
            return await accounts.ensure_first_admin(conn, config.admin_username,
                                                     config.admin_password)

        keep_first_password(config, with_connection(dsn, prepare))
        app = create_app(config, dsn=dsn)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
        # into the previous handler; a no-op one lets us stop the embedded Postgres.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        collector.tune()
        Server(uvicorn_config(app, host=host, port=port)).run()
    return 0


def cmd_migrate(config: Config, ns: argparse.Namespace) -> int:
    with database(config) as dsn:
        start, end = with_connection(dsn, lambda c: migrations.migrate(c, to=ns.to))
    print(f"schema {start} -> {end}")
    return 0


def cmd_version(config: Config, ns: argparse.Namespace) -> int:
    with database(config) as dsn:
        current = with_connection(dsn, migrations.current_version)
    print(f"app {__version__}")
    print(f"schema {current} (this code knows {migrations.latest_known()})")
    return 0


def _password(ns: argparse.Namespace) -> tuple[str, bool]:
    if ns.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            raise ConfigError("the password needs at least 8 characters")
        return password, False
    return accounts.generate_password(), True


def cmd_admin(config: Config, ns: argparse.Namespace) -> int:
    password, generated = _password(ns)
    with database(config) as dsn:
        if ns.action == "add-staff":
            with_connection(dsn, lambda c: accounts.create_staff(
                c, ns.username, password, ns.clinic))
            print(f"staff account '{ns.username}' created for clinic {ns.clinic}")
        else:
            with_connection(dsn, lambda c: accounts.reset_password(c, ns.username, password))
            print(f"password of '{ns.username}' reset; its sessions are closed")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_pins(config: Config, ns: argparse.Namespace) -> int:
    with database(config) as dsn:
        pins: dict[str, str] = with_connection(
            dsn, lambda c: c.fetchval("SELECT mmc_rotate_pins(mmc_pin_day(now()), NULL)"))
    for clinic, pin in sorted(pins.items()):
        print(f"{clinic:12} {pin}")
    return 0


def cmd_report(config: Config, ns: argparse.Namespace) -> int:
    with database(config) as dsn:
        report = with_connection(dsn, lambda c: reports.fetch_on(
            c, ns.type, ns.date, datetime.now(UTC)))
    if ns.csv:
        print(reports.render_csv(report), end="")
    else:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_demo(config: Config, ns: argparse.Namespace) -> int:
    from server import demo

    if not 0.1 <= ns.speed <= 1000:
        raise ConfigError("--speed must be between 0.1 and 1000")
    options = demo.Options(speed=ns.speed, duration=ns.duration, seed=ns.seed)
    return demo.run(config, options, database_url=ns.database_url,
                    host=ns.host or config.host,
                    port=config.port if ns.port is None else ns.port,
                    announce=lambda line: print(line, flush=True))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (embedded Postgres by default)")
    serve.add_argument("--host", help="override HOST")
    serve.add_argument("--port", type=int, help="override PORT (0 picks a free port)")
    serve.set_defaults(run=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending migrations, or roll back")
    migrate.add_argument("--to", type=int, help="target schema version (down scripts run)")
    migrate.set_defaults(run=cmd_migrate)

    version = sub.add_parser("version", help="print app and schema versions")
    version.set_defaults(run=cmd_version)

    admin = sub.add_parser("admin", help="manage staff and admin accounts")
    admin_sub = admin.add_subparsers(dest="action", required=True)
    add = admin_sub.add_parser("add-staff", help="create a staff account for one clinic")
    add.add_argument("username")
    add.add_argument("--clinic", required=True)
    reset = admin_sub.add_parser("reset-password", help="set a new password")
    reset.add_argument("username")
    for action in (add, reset):
        action.add_argument("--password-stdin", action="store_true",
                            help="read the password from stdin (else one is generated)")
    admin.set_defaults(run=cmd_admin)

    pins = sub.add_parser("pins", help="print today's PINs (creating them if missing)")
    pins.set_defaults(run=cmd_pins)

    report = sub.add_parser("report", help="print a report (stored once its period closes)")
    report.add_argument("type", choices=reports.REPORT_TYPES)
    report.add_argument("--date", required=True, help="a day of the period, YYYY-MM-DD")
    report.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    report.set_defaults(run=cmd_report)

    demo = sub.add_parser("demo", help="serve, and play a committee morning against it "
                                       "(made-up examinees and staff) so every screen moves")
    demo.add_argument("--host", help="override HOST")
    demo.add_argument("--port", type=int, help="override PORT (0 picks a free port)")
    demo.add_argument("--speed", type=float, default=10.0,
                      help="times faster than real time (default 10; 1 is real time)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds "
                                                    "(default: run until Ctrl-C)")
    demo.add_argument("--seed", type=int, help="random seed: the same examinees again")
    demo.add_argument("--database-url", help="play it on this Postgres instead of the "
                                             "embedded one (DATABASE_URL is never used)")
    demo.set_defaults(run=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    try:
        config = Config.from_env()
        logs.configure(config.log_format, config.log_level)
        run: Callable[[Config, argparse.Namespace], int] = ns.run
        return run(config, ns)
    except (ConfigError, migrations.SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message: Any = getattr(exc, "message", None) or exc
        print(f"error: {message}", file=sys.stderr)
        return 1
