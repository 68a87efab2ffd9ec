"""The load generators from the coordinator's side: spawn the processes, pin them away
from the server's core, spread sockets over them and over 127.0.0.1-8, send each phase's
command to all at once and merge what they report."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tests.bench import loadgen, worker

SOURCES = tuple(f"127.0.0.{i}" for i in range(1, 9))
COMMAND_TIMEOUT = 600.0


@dataclass
class Member:
    process: BaseProcess
    conn: Connection
    source: str


class Fleet:
    """`size` load processes; `close()` ends every one of them, also after a failure."""

    def __init__(self, size: int, cpus: set[int] | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.members: list[Member] = []
        try:
            for i in range(size):
                ours, theirs = ctx.Pipe()
                process = ctx.Process(target=loadgen.main, args=(theirs,), daemon=True,
                                      name=f"bench-load-{i}")
                process.start()
                if cpus and process.pid is not None:
                    os.sched_setaffinity(process.pid, cpus)
                self.members.append(Member(process, ours, SOURCES[i % len(SOURCES)]))
        except BaseException:
            self.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=max(1, size))

    @property
    def pids(self) -> list[int]:
        return [m.process.pid for m in self.members if m.process.pid is not None]

    def ask(self, members: Sequence[Member], commands: Sequence[dict[str, Any]]
            ) -> list[dict[str, Any]]:
        """Send one command to each member at once; their answers in the same order."""
        for member, command in zip(members, commands, strict=True):
            member.conn.send(command)

        def answer(member: Member) -> dict[str, Any]:
            return worker.answer(member.conn, member.process.name, COMMAND_TIMEOUT)

        return list(self._pool.map(answer, members))

    def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ask(self.members, [command] * len(self.members))

    def connect(self, url: str, specs: Sequence[loadgen.Spec], *, members: Sequence[Member]
                | None = None, concurrency: int = 64) -> dict[str, Any]:
        """Open `specs` round-robin over `members` (default: all); totals."""
        chosen = list(members or self.members)
        shares: list[list[dict[str, Any]]] = [[] for _ in chosen]
        for i, spec in enumerate(specs):
            shares[i % len(chosen)].append(spec.__dict__)
        answers = self.ask(chosen, [
            {"cmd": "connect", "url": url, "specs": share, "source": m.source,
             "concurrency": concurrency} for m, share in zip(chosen, shares, strict=True)])
        errors: dict[str, int] = {}
        for a in answers:
            for name, count in a["errors"].items():
                errors[name] = errors.get(name, 0) + count
        return {"connected": sum(a["connected"] for a in answers), "errors": errors,
                "seconds": max(a["seconds"] for a in answers)}

    def close(self) -> None:
        for member in self.members:
            with contextlib.suppress(OSError, ValueError):
                member.conn.send({"cmd": "close"})
        for member in self.members:
            member.process.join(timeout=5)
            if member.process.is_alive():
                member.process.kill()
                member.process.join(timeout=5)
        self.members.clear()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One phase's reports from every member as one."""
    seen_at: dict[tuple[str, int], float] = {}
    covered: dict[tuple[str, int], float] = {}
    latency: list[float] = []
    for r in reports:
        latency.extend(r["display_latency"])
        for clinic, seq, at in r["seen_at"]:
            seen_at[(clinic, seq)] = at
        for clinic, k, t in r["covered"]:
            if covered.get((clinic, k), 0.0) < t:
                covered[(clinic, k)] = t
    firsts = [r["first"] for r in reports if r["first"]]
    return {
        "frames": sum(r["frames"] for r in reports),
        "first": min(firsts) if firsts else 0.0,
        "last": max((r["last"] for r in reports), default=0.0),
        "display_latency": latency, "seen_at": seen_at, "covered": covered,
        "silent": sum(r["silent"] for r in reports),
        "closed": sum(r["closed"] for r in reports),
        "close_codes": sorted({c for r in reports for c in r["close_codes"]}),
        "sockets": sum(r["sockets"] for r in reports),
        "client_cpu_seconds": sum(r["cpu_seconds"] for r in reports),
    }
