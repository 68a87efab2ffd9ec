"""Configuration, read only from the environment (docs/operations.md lists every variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "Postgres to use; unset starts the embedded server in $DATA_DIR/pgdata",
    "HOST": "address to listen on (default 127.0.0.1; `serve --host` overrides)",
    "PORT": "port to listen on (default 8000; `serve --port` overrides)",
    "DATA_DIR": "where the embedded Postgres keeps its data (default ./var)",
    "ADMIN_USERNAME": "first admin account, created when none exists (default admin)",
    "ADMIN_PASSWORD": "its password (at least 12 characters); unset generates one, written "
                      "to $DATA_DIR/first-admin-password (owner-only), never to a log",
    "LOG_FORMAT": "json (default) or console",
    "LOG_LEVEL": "debug, info (default), warning, error",
    "CORS_ORIGINS": "comma-separated origins allowed to call the HTTP API",
    "DB_POOL_MIN": "smallest database pool size (default 2)",
    "DB_POOL_MAX": "largest database pool size (default 5)",
    "WS_SEND_QUEUE": "frames queued per socket before a slow client is closed (default 256)",
    "HTTP_RATE_LIMIT": "HTTP requests a second per client address and endpoint, bursts of 3x "
                       "(default 10; 0 turns the limit off)",
    "FORWARDED_ALLOW_IPS": "proxies trusted to name the client in X-Forwarded-For "
                           "(read by uvicorn; default 127.0.0.1)",
    "BREAKER_RESET_SECONDS": "how long the database circuit breaker stays open (default 60)",
    "PUBLIC_URL": "the address people open, printed in QR codes (default "
                  "http://HOST:PORT); https also turns on HSTS",
    "METRICS_TOKEN": "when set, /metrics answers only `Authorization: Bearer <token>` "
                     "(default unset: open, for a scraper on a private network)",
}


MIN_ADMIN_PASSWORD = 12


class ConfigError(ValueError):
    """A setting in the environment that the server cannot run with."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}")
    return value


@dataclass(frozen=True, kw_only=True)
class Config:
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    admin_username: str = "admin"
    admin_password: str | None = None
    log_format: str = "json"
    log_level: str = "info"
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    db_pool_min: int = 2
    # Every command commits in turn (each one NOTIFYs), so connections beyond a few
    # only wait in Postgres, and their waiting costs CPU: see docs/benchmark.md.
    db_pool_max: int = 5
    ws_send_queue: int = 256
    breaker_reset_seconds: int = 60
    http_rate_limit: int = 10
    public_url: str | None = None
    metrics_token: str | None = None

    @property
    def public_base(self) -> str:
        """PUBLIC_URL without its trailing slash, or this server's own address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        log_format = env.get("LOG_FORMAT", "json").lower()
        if log_format not in ("json", "console"):
            raise ConfigError("LOG_FORMAT must be json or console")
        log_level = env.get("LOG_LEVEL", "info").lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("LOG_LEVEL must be debug, info, warning or error")
        admin_password = env.get("ADMIN_PASSWORD") or None
        if admin_password is not None and len(admin_password) < MIN_ADMIN_PASSWORD:
            raise ConfigError(
                f"ADMIN_PASSWORD must have at least {MIN_ADMIN_PASSWORD} characters; "
                "choose a longer one, or unset it to have one generated")
        database_url = env.get("DATABASE_URL") or None
        if database_url:
            check_database_url(database_url)
        pool_min = _int(env, "DB_POOL_MIN", 2, 1, 100)
        return cls(
            database_url=database_url,
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8000, 0, 65535),
            data_dir=Path(env.get("DATA_DIR") or "var"),
            admin_username=env.get("ADMIN_USERNAME") or "admin",
            admin_password=admin_password,
            log_format=log_format,
            log_level=log_level,
            cors_origins=tuple(
                o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()
            ),
            db_pool_min=pool_min,
            db_pool_max=_int(env, "DB_POOL_MAX", 5, pool_min, 500),
            ws_send_queue=_int(env, "WS_SEND_QUEUE", 256, 8, 65536),
            breaker_reset_seconds=_int(env, "BREAKER_RESET_SECONDS", 60, 1, 3600),
            http_rate_limit=_int(env, "HTTP_RATE_LIMIT", 10, 0, 100_000),
            public_url=check_public_url(env.get("PUBLIC_URL") or None),
            metrics_token=env.get("METRICS_TOKEN") or None,
        )


def check_public_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError("PUBLIC_URL must be an http:// or https:// address, "
                          "e.g. https://queue.example.org")
    return url


def check_database_url(url: str) -> None:
    """Refuse what cannot work: a transaction-mode pooler drops LISTEN between
    transactions, so the hub would never hear a notification."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    if parts.port == 6543 or "pgbouncer=true" in (parts.query or ""):
        raise ConfigError(
            "DATABASE_URL points at a transaction-mode pooler (port 6543 / pgbouncer), "
            "which does not carry LISTEN/NOTIFY. Use the direct connection (port 5432) "
            "or a session-mode pooler."
        )
