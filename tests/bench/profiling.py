"""py-spy on the system under test during a measured phase (`--profile DIR`): the raw
stacks, and a summary of where the process spent its samples (own time per line,
inclusive time per function) that a report can quote."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PROFILE_DIR = "MMC_BENCH_PROFILE"  # set by `python -m tests.bench --profile DIR`


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, name: str, seconds: float) -> Iterator[None]:
    """Record `pid` for about `seconds` when profiling was asked for; else nothing."""
    folder, spy = os.environ.get(PROFILE_DIR), _py_spy()
    if not folder or spy is None:
        yield
        return
    raw = Path(folder) / f"{name}.raw.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            process.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if raw.exists():
        (Path(folder) / f"{name}.summary.txt").write_text(summarize(raw))


def _function(frame: str) -> str:
    """'send (uvicorn/protocols/websockets/x.py:506)' -> 'send (x.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summarize(raw: Path, top: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        # Own time per line, without the machine's paths.
        leaf = frames[-1]
        name, _, where = leaf.partition(" (")
        own[f"{name} ({where.rsplit('/', 1)[-1]}" if where else name] += n
        for function in {_function(f) for f in frames}:
            inclusive[function] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "own time (the line a sample was on):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time (a function anywhere on the stack):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top + 20)]
    return "\n".join(lines) + "\n"
