"""The command loop of the load-generating processes (the benchmark's workers, the
chaos run's crowds, its hostile crowd and its screens): each reads commands from its
pipe, `{"cmd": name, ...}`, runs `cmd_<name>(**rest)` and sends back what it returns,
or `{"failed": traceback}`; `close` ends the loop. `answer` is the other end."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

import uvloop


def answer(conn: Connection, name: str, timeout: float) -> dict[str, Any]:
    """The coordinator's side: a process's answer to the command it was sent, within
    `timeout` seconds; its traceback raised when it failed."""
    if not conn.poll(timeout):
        raise TimeoutError(f"{name} did not answer")
    reply: dict[str, Any] = conn.recv()
    if "failed" in reply:
        raise RuntimeError(f"{name}: {reply['failed']}")
    return reply


async def serve(conn: Connection, handler: object, close: Callable[[], Awaitable[Any]], *,
                background: tuple[str, ...] = (), timed: bool = False) -> None:
    """Commands named in `background` start and are answered `{}` at once (a later
    command reads what they did); with `timed`, each answer carries its `seconds`."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[Any]] = set()
    while True:
        message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        command = message.pop("cmd")
        if command == "close":
            await close()
            conn.send({})
            return
        if command in background:
            task = asyncio.create_task(getattr(handler, f"cmd_{command}")(**message))
            running.add(task)
            task.add_done_callback(running.discard)
            conn.send({})
            continue
        started = time.monotonic()
        try:
            result = await getattr(handler, f"cmd_{command}")(**message)
            if timed:
                result["seconds"] = time.monotonic() - started
        except Exception:
            result = {"failed": traceback.format_exc(limit=-3)}
        conn.send(result)


def run_sockets(main: Coroutine[Any, Any, None]) -> None:
    """A process of many client sockets: as many as the hard file limit allows, on
    uvloop, without picows's per-socket log lines."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.getLogger("picows").setLevel(logging.CRITICAL)
    uvloop.run(main)
