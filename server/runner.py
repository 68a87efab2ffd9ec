"""How the app is served: one uvicorn configuration for `serve`, the Procfile and the
tests, so all three run with the same WebSocket limits and shutdown behaviour."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn

# docs/protocol.md: frames are at most 64 KiB.
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


class Server(uvicorn.Server):
    """uvicorn's server, waking once a second for its housekeeping instead of ten times.

    uvicorn's main loop sleeps 0.1 s at a time to see whether it should stop, and every
    tenth time refreshes its Date header: with nobody connected, those wake-ups were
    about half of the process's CPU (tests/bench, an idle server). Here the loop wakes
    once a second, the Date header's resolution, and at once when told to stop (a
    signal, or `should_exit` set by whoever runs it)."""

    TICK = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = False
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        if value and self._loop is not None and self._wake is not None:
            # From a signal handler too: the loop may be asleep in epoll.
            self._loop.call_soon_threadsafe(self._wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            # on_tick refreshes the Date header when counter % 10 == 0.
            counter = (counter + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await self._wake.wait()
