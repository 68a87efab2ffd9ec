"""A measurement run in a child process pinned to given cores (where the server would
be), on uvloop, killed if it does not answer in time: the floors' way of running."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

Measure = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def _child(measure: Measure, args: tuple[Any, ...], cpus: set[int] | None,
           answer: Any) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    answer.send(uvloop.run(measure(*args)))


def run_pinned(measure: Measure, *args: Any, cpus: set[int] | None, timeout: float,
               name: str) -> dict[str, Any]:
    """`measure(*args)` (a module-level coroutine function) in a spawned child."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_child, args=(measure, args, cpus, theirs), daemon=True,
                        name=name)
    child.start()
    theirs.close()  # the child holds its end now: when it dies, the wait ends at once
    try:
        if not ours.poll(timeout):
            raise TimeoutError(f"{name} did not finish")
        try:
            result: dict[str, Any] = ours.recv()
        except EOFError:
            raise RuntimeError(f"{name} failed (its traceback is above)") from None
        return result
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join(timeout=5)
