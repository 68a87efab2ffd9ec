"""The chaos run's helper processes (the honest crowds, the hostile crowd, the screens),
each driven over a pipe (tests/bench/worker.py's command loop)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tests.bench import worker
from tests.chaos import crowd

COMMAND_TIMEOUT = 300.0


class Member:
    def __init__(self, target: Callable[[Connection], None], name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(target=target, args=(theirs,), daemon=True,
                                                name=name)
        self.process.start()

    def send(self, command: dict[str, Any]) -> None:
        self.conn.send(command)

    def receive(self, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        return worker.answer(self.conn, self.process.name, timeout)

    def ask(self, command: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError, TimeoutError, RuntimeError):
            if self.process.is_alive():
                self.ask({"cmd": "close"}, timeout=20)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class Crowds:
    """The honest crowd's processes: [0] staff and phones (and the command driver),
    [1] the displays."""

    def __init__(self) -> None:
        self.members = [Member(crowd.main, "chaos-crowd-0"), Member(crowd.main, "chaos-crowd-1")]
        self.pool = ThreadPoolExecutor(max_workers=len(self.members))

    def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        for m in self.members:
            m.send(dict(command))
        return list(self.pool.map(lambda m: m.receive(), self.members))

    @property
    def driver(self) -> Member:
        return self.members[0]

    @property
    def pids(self) -> list[int]:
        return [m.process.pid for m in self.members if m.process.pid is not None]

    def close(self) -> None:
        for m in self.members:
            m.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
