"""The garbage collector in a serving process: young collections made rare, and the
oldest generation swept on a timer.

Thousands of long-lived sockets make every young collection expensive (py-spy: a third
of fan-out CPU in gc_collect_main), so `tune` keeps the start-up heap out of the
collector and raises the thresholds. With them, CPython would collect the oldest
generation about once in a day of load, and anything a closed connection leaves in a
reference cycle (uvicorn's HTTP protocol and its parser point at each other, for one)
would stay until then: the soak saw the servers' memory climb 0.7 MiB a minute
(docs/chaos.md, finding 12). `sweeping` runs a full collection every minute instead,
on the event loop, where finalisers of asyncio objects belong.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 60.0


def tune() -> None:
    """Before serving: the start-up heap frozen, young collections made rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 1000)


def sweep() -> tuple[int, float]:
    """One full collection: (unreachable objects found, milliseconds it took)."""
    started = time.perf_counter()
    found = gc.collect()
    return found, (time.perf_counter() - started) * 1000


async def sweeping(observe: Callable[[float], None], every: float = SWEEP_SECONDS) -> None:
    """A full collection every `every` seconds, for as long as the app runs; `observe`
    is given each one's seconds (the gc_sweep_seconds histogram)."""
    while True:
        await asyncio.sleep(every)
        found, ms = sweep()
        observe(ms / 1000)
        log.debug("gc.swept", unreachable=found, ms=round(ms, 1))
