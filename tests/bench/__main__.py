"""`python -m tests.bench [--quick]`: every scenario, every system, the same rounds in
turn, then tests/bench/results/latest.json and latest.md. Sizes and seeds are fixed
here, the same for every system; --quick only shrinks them (CI runs it)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench import browser, commits, floor, mixed, polling, profiling, report, stats
from tests.bench.fanout import Load, fanout_load, run_round
from tests.bench.stage import Stage, plan_cpus, postmaster_pidfile, seed

SYSTEMS = ("ours", "ceiling", "broadcaster")
FULL = {"fanout": (1_000, 10_000), "rounds": 3, "connections": 15_000,
        "polling_clients": 2_000, "polling_seconds": 40.0}
QUICK = {"fanout": (1_000,), "rounds": 1, "connections": 1_000,
         "polling_clients": 320, "polling_seconds": 8.0}
RESULTS = Path(__file__).parent / "results"
# Polling compares a connected phone's cost at a clinic's pace: a call per clinic every
# 5 s, the old system's polling period, so each poll has about one change to see.
POLLING_RATE = 0.2


def log(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.0f} s] {message}", flush=True)


def rounds_of(name: str, count: int, systems: tuple[str, ...],
              once: Callable[[str], dict[str, Any]], started: float,
              key: str) -> dict[str, Any]:
    """`count` rounds, each system once per round in turn; the median round each."""
    seen: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for r in range(count):
        for system in systems:
            result = once(system)
            seen[system].append(result)
            log(f"{name} round {r + 1}/{count} {system}: {report.brief(result)}", started)
    return {s: stats.median_round(results, key) for s, results in seen.items()}


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI)")
    parser.add_argument("--only", help="comma-separated scenarios: fanout,connections,"
                                       "commands,polling,browser")
    parser.add_argument("--profile", type=Path, help="py-spy each system's measured phases "
                        "into this folder (slows the server a little: not for the table)")
    parser.add_argument("--out", type=Path, help="default: results/ (quick: results/quick/, so "
                        "a CI run never overwrites the full run's files)")
    ns = parser.parse_args(argv)
    plan = QUICK if ns.quick else FULL
    out = ns.out or (RESULTS / "quick" if ns.quick else RESULTS)
    only = set(ns.only.split(",")) if ns.only else {"fanout", "connections", "commands",
                                                    "polling", "browser"}
    cpus = plan_cpus()
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the finally blocks stop
    # the system under test (its own session), the load processes and Postgres.
    signal.signal(signal.SIGTERM, _terminated)
    if ns.profile:
        os.environ[profiling.PROFILE_DIR] = str(ns.profile.resolve())
    # The coordinator and Postgres stay off the server's core.
    if cpus[1]:
        os.sched_setaffinity(0, cpus[1])
    logs = Path(tempfile.mkdtemp(prefix="mmc-bench-logs-")) / "systems.log"
    started, checkout = time.monotonic(), report.commit()
    results: dict[str, Any] = {"scenarios": {}}
    stage = Stage()
    log(f"postgres up; server core {sorted(cpus[0] or [])}, load cores "
        f"{sorted(cpus[1] or [])}; system logs in {logs}", started)
    try:
        for size in plan["fanout"] if "fanout" in only else ():
            load = fanout_load(size, ns.quick)
            systems = rounds_of(f"fanout {size}", plan["rounds"], SYSTEMS,
                                lambda s, load=load: run_round(stage, s, load, idle=False,
                                                               cpus=cpus, log=logs),
                                started, "frames_per_s")
            with stage.database() as dsn:
                systems["notify_floor"] = stats.median_round([
                    floor.run_floor(dsn, clinics=16, rate=load.rate,
                                    seconds=load.latency_seconds, cpus=cpus[0])
                    for _ in range(plan["rounds"])], "frames_per_s")
            log(f"fanout {size} notify floor: {report.brief(systems['notify_floor'])}", started)
            results["scenarios"][f"fanout_{size}"] = {"load": load.__dict__,
                                                      "systems": systems}
        if "fanout" in only:
            # The fan-out's burst calls, made by Postgres alone: what bounds calls a second.
            calls = fanout_load(plan["fanout"][0], ns.quick).burst_calls
            rounds = []
            for _ in range(plan["rounds"]):
                with stage.database() as dsn:
                    stage.run(seed(dsn, calls + 10, 0))
                    rounds.append(commits.run_commit_floor(
                        dsn, calls=calls, pidfile=postmaster_pidfile(), cpus=cpus[0]))
            postgres = stats.median_round(rounds, "calls_per_s")
            log(f"commit floor: {postgres['calls_per_s']} calls/s, "
                f"{postgres['postgres_us_per_call']} us of Postgres CPU and "
                f"{postgres['wal_flushes_per_call']} WAL flushes a call", started)
            results["scenarios"]["commit_floor"] = {
                "load": {"clinics": 16, "calls_per_clinic": calls},
                "systems": {"postgres": postgres}}
        if "connections" in only:
            load = Load(plan["connections"], 0, 0, latency_seconds=5.0 if ns.quick else 10.0)
            systems = rounds_of("connections", 1, SYSTEMS,
                                lambda s: run_round(stage, s, load, idle=True, cpus=cpus,
                                                    log=logs), started, "handshakes_per_s")
            results["scenarios"]["connections"] = {"load": load.__dict__, "systems": systems}
        if "commands" in only:
            outcome = mixed.run_commands(stage, quick=ns.quick, cpus=cpus, log=logs)
            log(f"commands: {outcome['commands_per_s']}/s sustained", started)
            results["scenarios"]["commands"] = {"systems": {"ours": outcome}}
        if "polling" in only:
            n, seconds = plan["polling_clients"], plan["polling_seconds"]
            ours = polling.run_ours_phones(stage, n, seconds, POLLING_RATE, cpus=cpus,
                                           log=logs)
            log(f"polling, ours over WebSocket: {report.brief(ours)}", started)
            peer = polling.run_polling(stage, n, seconds, POLLING_RATE, cpus=cpus, log=logs)
            log(f"polling, the old way: {report.brief(peer)}", started)
            results["scenarios"]["polling"] = {
                "load": {"clients": n, "seconds": seconds, "rate": POLLING_RATE,
                         "period": polling.PERIOD},
                "systems": {"ours": ours, "polling": peer}}
        if "browser" in only:
            # The same 100 calls and four displays in the quick run as in the full one.
            outcome = browser.run_browser(stage, cpus=cpus, log=logs)
            log(f"browser, call to display DOM: {report.brief(outcome)}, first load "
                f"patient {outcome.get('patient_page_kib')} KiB, display "
                f"{outcome.get('display_page_kib')} KiB {outcome.get('skipped', '')}", started)
            results["scenarios"]["browser"] = {
                "load": {"displays": browser.DISPLAYS, "calls": browser.CALLS},
                "systems": {"ours": outcome}}
    finally:
        stage.stop()
    results.update(report.header(quick=ns.quick, rounds=plan["rounds"],
                                 seconds=time.monotonic() - started, started_at=checkout,
                                 cpus=cpus))
    report.write(results, out)
    log(f"wrote {out / 'latest.json'} and latest.md", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
