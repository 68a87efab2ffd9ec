"""Scenarios 1 and 2 for one system and one round: fan-out (16 clinics, D displays and
P phones each; calls at a fixed rate for latency, then closed-loop for throughput) and
connections (idle subscribed displays ramped to N, then a call's latency at that size).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import profiling, stats
from tests.bench.fleet import Fleet, merge
from tests.bench.loadgen import CALLER, DISPLAY, PHONE, PROBE, Spec
from tests.bench.stage import (
    Seeded,
    Stage,
    System,
    launch,
    machine_busy,
    postgres_cpu,
    seed,
)

CALLERS_PER_CLINIC = 8   # each socket stays well inside the 20 frames/s rate limit
WINDOW = 4               # closed-loop calls in flight per clinic
SOCKETS_PER_LOADER = 4000
DRAIN_SECONDS = 1.5


@dataclass(frozen=True)
class Load:
    """The same for every system: sockets per clinic, call rate, phase lengths."""

    sockets: int
    displays: int                # per clinic
    phones: int                  # per clinic
    rate: float = 2.0            # calls a second per clinic in the latency phase
    latency_seconds: float = 10.0
    burst_seconds: float = 10.0  # the closed-loop throughput phase
    burst_calls: int = 300       # per clinic, at most

    @property
    def waiting(self) -> int:
        """Patients without sockets ahead of the phones: every call takes one of them."""
        return math.ceil(self.rate * self.latency_seconds) + self.burst_calls + 10


def fanout_load(sockets: int, quick: bool) -> Load:
    per_clinic = sockets // 16
    displays = max(1, per_clinic // 5)
    seconds = 4.0 if quick else 8.0
    return Load(sockets, displays, per_clinic - displays, latency_seconds=seconds,
                burst_seconds=seconds, burst_calls=150 if quick else 300)


def _population(system: str, seeded: Seeded, load: Load) -> tuple[list[Spec], list[Spec]]:
    """(watchers interleaved across clinics, the caller process's sockets)."""
    watchers: list[Spec] = []
    for i in range(max(load.displays, load.phones)):
        for clinic in seeded.clinics:
            if i < load.displays:
                watchers.append(Spec(DISPLAY, clinic, f"clinic:{clinic}"))
            if i < load.phones:
                if system == "ours":
                    watchers.append(Spec(PHONE, clinic, "me", seeded.phones[clinic][i]))
                else:  # peers have no per-patient channel: phones watch the clinic
                    watchers.append(Spec(PHONE, clinic, f"clinic:{clinic}"))
    token = seeded.admin_token if system == "ours" else None
    callers = [Spec(CALLER, c, None, token) for c in seeded.clinics
               for _ in range(CALLERS_PER_CLINIC)]
    callers += [Spec(PROBE, c, f"clinic:{c}") for c in seeded.clinics]
    return watchers, callers


def _phase(fleet: Fleet, mode: str, seconds: float, rate: float, calls: int) -> tuple[
        dict[str, Any], dict[str, Any]]:
    fleet.all({"cmd": "measure"})
    caller = fleet.members[-1]
    outcome = fleet.ask([caller], [{"cmd": "call", "mode": mode, "seconds": seconds,
                                    "rate": rate, "max_calls": calls,
                                    "window": WINDOW}])[0]
    time.sleep(DRAIN_SECONDS)
    return merge(fleet.all({"cmd": "report"})), outcome


def run_round(stage: Stage, system: str, load: Load, *, idle: bool, cpus: tuple[
        set[int] | None, set[int] | None], log: Path) -> dict[str, Any]:
    """One round of fan-out (idle=False) or connections (idle=True)."""
    server_cpus, load_cpus = cpus
    phones = 0 if idle else load.phones
    waiting = load.waiting if not idle else math.ceil(load.rate * load.latency_seconds) + 10
    if system == "ceiling":
        return _run(system, None, stage.fake_seed(phones), load, idle, server_cpus,
                    load_cpus, log)
    with stage.database() as dsn:
        seeded = stage.run(seed(dsn, waiting, phones))
        return _run(system, dsn, seeded, load, idle, server_cpus, load_cpus, log)


def _run(system: str, dsn: str | None, seeded: Seeded, load: Load, idle: bool,
         server_cpus: set[int] | None, load_cpus: set[int] | None, log: Path
         ) -> dict[str, Any]:
    watchers, callers = _population(system, seeded, load)
    if idle:
        watchers = [Spec(DISPLAY, seeded.clinics[i % 16], f"clinic:{seeded.clinics[i % 16]}")
                    for i in range(load.sockets)]
    loaders = max(2, math.ceil(len(watchers) / SOCKETS_PER_LOADER))
    with launch(system, dsn, server_cpus, log) as sut:
        fleet = Fleet(loaders + 1, load_cpus)
        try:
            return _measure(system, sut, fleet, watchers, callers, load, idle)
        finally:
            fleet.close()


def _measure(system: str, sut: System, fleet: Fleet, watchers: list[Spec],
             callers: list[Spec], load: Load, idle: bool) -> dict[str, Any]:
    caller, loaders = fleet.members[-1:], fleet.members[:-1]
    # Fan-out subscribes the probes one by one first, so every channel is warm before
    # the crowd arrives; connections starts cold: the crowd subscribes at once.
    opened = {} if idle else fleet.connect(sut.ws_url, callers, members=caller, concurrency=1)
    time.sleep(0.5)
    before = sut.usage()
    ramp = fleet.connect(sut.ws_url, watchers, members=loaders, concurrency=100 if idle else 64)
    time.sleep(1.0)
    held = sut.usage()
    if idle:
        opened = fleet.connect(sut.ws_url, callers, members=caller, concurrency=1)
    result: dict[str, Any] = {
        "sockets": ramp["connected"], "connect_errors": ramp["errors"],
        "caller_errors": opened["errors"],
        "handshakes_per_s": round(ramp["connected"] / ramp["seconds"]),
        "rss_kib": held["rss_kib"],
        "rss_kib_per_conn": round((held["rss_kib"] - before["rss_kib"])
                                  / max(1, ramp["connected"]), 2),
    }
    start = sut.usage()
    tag = f"{system}-{'connections' if idle else 'fanout'}-{load.sockets}"
    with profiling.recording(sut.process.pid, f"{tag}-latency", load.latency_seconds):
        latency, outcome = _phase(fleet, "rate", load.latency_seconds, load.rate,
                                  math.ceil(load.rate * load.latency_seconds))
    result["latency_cpu_s"] = sut.usage()["cpu"] - start["cpu"]
    ranked = system == "ours"
    result.update(stats.latency(latency, seen=latency["seen_at"], ranked=ranked))
    # A subscriber that never got its subscription is lost as surely as a silent one.
    failed = len(watchers) - ramp["connected"]
    result.update(lost=latency["silent"] + failed, closed=latency["closed"],
                  close_codes=latency["close_codes"], calls=outcome["calls"],
                  call_errors=outcome["errors"])
    if not idle and load.burst_seconds > 0:
        start, pg, busy = sut.usage(), postgres_cpu(), machine_busy()
        with profiling.recording(sut.process.pid, f"{tag}-burst", load.burst_seconds):
            burst, outcome = _phase(fleet, "closed", load.burst_seconds, 0.0,
                                    load.burst_calls)
        end = sut.usage()
        pg_used = postgres_cpu() - pg
        result["postgres_cpu_s"] = round(pg_used, 2)
        # What nobody in the benchmark used: another job on the machine (noise).
        result["other_cpu_s"] = round(machine_busy() - busy - result["postgres_cpu_s"]
                                      - (end["cpu"] - start["cpu"])
                                      - burst["client_cpu_seconds"], 2)
        result.update(stats.throughput(burst, end["cpu"] - start["cpu"]))
        result.update(stats.latency(burst, seen={**latency["seen_at"], **burst["seen_at"]},
                                    ranked=ranked, prefix="burst_"))
        if outcome["calls"] and outcome["seconds"] > 0:
            # Beside the commit floor (commits.py): what Postgres made of each call.
            result["burst_calls_per_s"] = round(outcome["calls"] / outcome["seconds"])
            if system != "ceiling":
                result["postgres_us_per_call"] = round(pg_used / outcome["calls"] * 1e6)
        result.update(burst_calls=outcome["calls"], burst_errors=outcome["errors"],
                      burst_stalls=outcome["stalls"],
                      lost=max(result["lost"], burst["silent"] + failed),
                      closed=max(result["closed"], burst["closed"]))
    result["server_rss_kib"] = sut.usage()["rss_kib"]
    return result
