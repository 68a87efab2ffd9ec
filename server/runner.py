"""How the app is served: one uvicorn configuration for `serve`, the Procfile and the
tests, so all three run with the same WebSocket limits and shutdown behaviour."""

from __future__ import annotations

from typing import Any

import uvicorn

# PROTOCOL.md: frames are at most 64 KiB.
WS_MAX_SIZE = 64 * 1024
WS_PING_INTERVAL = 20.0
WS_PING_TIMEOUT = 20.0
GRACEFUL_SHUTDOWN_SECONDS = 10


def uvicorn_config(app: Any, *, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        # uvicorn's sans-io protocol (send backpressure from 0.54, PR 3048) plus direct
        # writes of frames the hub encoded once (server/wire.py). Deflate costs ~30% of
        # fan-out throughput, doubles memory per socket and would make every reader's
        # bytes different, so it stays off.
        "ws": "server.wire:FanoutWebSocketProtocol",
        "ws_max_size": WS_MAX_SIZE,
        "ws_ping_interval": WS_PING_INTERVAL,
        "ws_ping_timeout": WS_PING_TIMEOUT,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
