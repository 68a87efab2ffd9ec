"""The results: ratios ours/peer measured in the same run, the issue's targets met or
missed, and the two files (latest.json with everything, latest.md with the table the
README quotes). No path of the machine goes in: it is described, not named."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

FIGURES = ("p50_ms", "p99_ms", "max_ms", "frames_per_s", "cpu_s_per_1k_frames",
           "rss_kib_per_conn")
# For ratios: what ours is divided by what the peer measured.
RATIO_FIGURES = (*FIGURES, "phone_p99_ms", "handshakes_per_s", "cpu_ms_per_client_min")


def machine() -> str:
    cores = psutil.cpu_count(logical=True)
    memory = psutil.virtual_memory().total / 2**30
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = ", " + line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cores}-core {platform.machine()}{model}, {memory:.0f} GiB, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def commit() -> str:
    """The checkout's commit (the server every round starts is imported from it)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, cwd=Path(__file__).parent
                              ).stdout.strip()
    except OSError:
        return ""


def header(*, quick: bool, rounds: int, seconds: float, started_at: str,
           cpus: tuple[set[int] | None, set[int] | None]) -> dict[str, Any]:
    """The run's particulars; `cpus` is `stage.plan_cpus()`: the server's core and the
    cores of everyone else (Postgres, the load, the coordinator), or None when nothing
    was pinned (one core)."""
    ended_at = commit()
    every = sorted(os.sched_getaffinity(0))
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "commit": started_at if started_at == ended_at else f"{started_at} (then "
            f"{ended_at}: the checkout changed during the run)", "quick": quick,
            "rounds": rounds,
            "command": "make bench-quick" if quick else "make bench",
            "duration_s": round(seconds),
            "server_cores": sorted(cpus[0]) if cpus[0] else every,
            "other_cores": sorted(cpus[1]) if cpus[1] else every}


def brief(result: dict[str, Any]) -> str:
    keys = ("sockets", "clients", "p50_ms", "p99_ms", "phone_p99_ms", "frames_per_s",
            "cpu_s_per_1k_frames", "rss_kib_per_conn", "handshakes_per_s",
            "cpu_ms_per_client_min", "lost", "closed")
    return ", ".join(f"{k}={result[k]}" for k in keys if result.get(k) is not None)


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    ours = systems.get("ours", {})
    out: dict[str, dict[str, float]] = {}
    for peer, figures in systems.items():
        if peer == "ours":
            continue
        out[peer] = {k: round(ours[k] / figures[k], 3) for k in RATIO_FIGURES
                     if isinstance(ours.get(k), int | float) and figures.get(k)}
    return out


def _get(results: dict[str, Any], scenario: str, system: str, key: str) -> Any:
    return results["scenarios"].get(scenario, {}).get("systems", {}).get(system, {}).get(key)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 with what this run measured; None where not measured."""
    rows: list[dict[str, Any]] = []

    def add(name: str, measured: Any, met: bool | None) -> None:
        rows.append({"target": name, "measured": measured, "met": met})

    for size, bound in ((1_000, 30.0), (10_000, 60.0)):
        s = f"fanout_{size}"
        if s not in results["scenarios"]:
            continue
        fps, ceiling = _get(results, s, "ours", "frames_per_s"), _get(results, s, "ceiling",
                                                                      "frames_per_s")
        add(f"fan-out {size:,} sockets: >= 50,000 frames/s", fps, fps >= 50_000)
        share = round(fps / ceiling, 2) if ceiling else None
        add(f"fan-out {size:,} sockets: >= 0.6 x ceiling", share,
            None if share is None else share >= 0.6)
        worst = max(_get(results, s, "ours", "p99_ms") or 0,
                    _get(results, s, "ours", "phone_p99_ms") or 0)
        add(f"commit-to-screen p99 <= {bound:.0f} ms at {size:,} (displays, last phone)",
            worst, worst <= bound)
        b_fps = _get(results, s, "broadcaster", "frames_per_s")
        add(f"fan-out {size:,}: frames/s >= broadcaster's", f"{fps} vs {b_fps}",
            None if b_fps is None else fps >= b_fps)
        b_p99 = _get(results, s, "broadcaster", "p99_ms")
        add(f"fan-out {size:,}: display p99 below broadcaster's",
            f"{_get(results, s, 'ours', 'p99_ms')} vs {b_p99}",
            None if b_p99 is None else (_get(results, s, "ours", "p99_ms") or 0) < b_p99)
    if "connections" in results["scenarios"]:
        c = "connections"
        per_conn = _get(results, c, "ours", "rss_kib_per_conn")
        add("<= 35 KiB per idle connection", per_conn, per_conn <= 35)
        held = _get(results, c, "ours", "sockets")
        size = results["scenarios"][c]["load"]["sockets"]
        lost = _get(results, c, "ours", "lost")
        add(f"{size:,} connections held", f"{held} (lost {lost})",
            held == size and not lost and size >= 15_000 if size >= 15_000 else None)
    lost = {name: v["systems"]["ours"].get("lost") for name, v in results["scenarios"].items()
            if "lost" in v["systems"].get("ours", {})}
    add("no lost subscriber (ours, every scenario)", lost, not any(lost.values()))
    if "commands" in results["scenarios"]:
        ours = results["scenarios"]["commands"]["systems"]["ours"]
        dups = (ours.get("held") or {}).get("duplicates")
        add(">= 1,500 mixed commands/s, zero errors, zero duplicates",
            f"{ours['commands_per_s']}/s, {dups} duplicates", ours["commands_per_s"] >= 1500)
    if "polling" in results["scenarios"]:
        ours_cpu = _get(results, "polling", "ours", "cpu_ms_per_client_min")
        peer_cpu = _get(results, "polling", "polling", "cpu_ms_per_client_min")
        share = round(ours_cpu / peer_cpu, 3) if peer_cpu else None
        add("<= 1/20 of polling's CPU per connected client", share,
            None if share is None else share <= 0.05)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Benchmark of {results['date']} on a {results['machine']}; commit "
             f"{results['commit']}; `{results['command']}` ({results['rounds']} round(s) per "
             f"system, the median round; {results['duration_s']} s).", "",
             "| scenario | system | p50 ms | p99 ms | max ms | phone p99 ms | frames/s | "
             "CPU s / 1k frames | KiB / conn | handshakes/s | lost | ours/peer frames/s | "
             "ours/peer p99 |", "|" + "---|" * 13]
    for name, scenario in results["scenarios"].items():
        if name in ("commands", "polling", "commit_floor"):
            continue
        for system, r in scenario["systems"].items():
            ratio = scenario.get("ratios", {}).get(system, {})
            lines.append("| " + " | ".join(_cell(v) for v in (
                name.replace("_", " "), system, r.get("p50_ms"), r.get("p99_ms"),
                r.get("max_ms"), r.get("phone_p99_ms"), r.get("frames_per_s"),
                r.get("cpu_s_per_1k_frames"), r.get("rss_kib_per_conn"),
                r.get("handshakes_per_s"), r.get("lost"), ratio.get("frames_per_s"),
                ratio.get("p99_ms"))) + " |")
    if "commit_floor" in results["scenarios"]:
        lines += ["", _commit_floor(results)]
    if "polling" in results["scenarios"]:
        p = results["scenarios"]["polling"]
        lines += ["", f"Polling ({p['load']['clients']:,} phones, a call per clinic every "
                  f"{1 / p['load']['rate']:.0f} s, {p['load']['seconds']:.0f} s): staleness is "
                  "commit to the last phone that knows, per call.", "",
                  "| system | CPU ms per client per minute | staleness p50 ms | p99 ms | "
                  "max ms |", "|---|---|---|---|---|"]
        for system, r in p["systems"].items():
            lines.append("| " + " | ".join(_cell(v) for v in (
                system, r.get("cpu_ms_per_client_min"), r.get("p50_ms"), r.get("p99_ms"),
                r.get("max_ms"))) + " |")
    if "commands" in results["scenarios"]:
        c = results["scenarios"]["commands"]["systems"]["ours"]
        held = c.get("held") or {}
        lines += ["", f"Commands: {c['commands_per_s']:,} mixed enter/call/done a second "
                  f"sustained for {held.get('seconds', 0):.0f} s (errors "
                  f"{held.get('errors')}, duplicates {held.get('duplicates')}, reply p99 "
                  f"{held.get('reply_p99_ms')} ms); steps tried: "
                  + ", ".join(f"{s['rate']}/s -> {s['achieved']}/s (p99 {s['reply_p99_ms']} ms"
                              f"{', errors' if s['errors'] else ''})" for s in c["steps"])
                  + "; held: " + ", ".join(
                      f"{s['rate']}/s for {s['seconds']:.0f} s -> {s['achieved']}/s (p99 "
                      f"{s['reply_p99_ms']} ms{', errors' if s['errors'] else ''})"
                      for s in c.get("holds", []))]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {_cell(t['measured'])} | {met} |")
    return "\n".join(lines) + "\n"


def _commit_floor(results: dict[str, Any]) -> str:
    scenario = results["scenarios"]["commit_floor"]
    floor = scenario["systems"]["postgres"]
    bursts = []
    for name, s in results["scenarios"].items():
        if not name.startswith("fanout_"):
            continue
        sockets = int(name.removeprefix("fanout_"))
        for system, r in s["systems"].items():
            if r.get("postgres_us_per_call") is not None and r.get("burst_calls_per_s"):
                bursts.append(f"{system} at {sockets:,} sockets {r['burst_calls_per_s']:,} "
                              f"({r['burst_calls_per_s'] / floor['calls_per_s']:.2f} of it, "
                              f"{r['postgres_us_per_call']:,} us)")
    return (f"Commit floor (Postgres alone, `commits.py`): {floor['connections']} "
            f"connections calling `mmc_call_next` in a closed loop, "
            f"{scenario['load']['calls_per_clinic']} calls per clinic: "
            f"{floor['calls_per_s']:,} calls/s, {floor['postgres_us_per_call']:,} us of "
            f"Postgres CPU and {_cell(floor['wal_flushes_per_call'])} WAL flushes a call. "
            "The fan-out bursts' calls/s (Postgres CPU a call): " + "; ".join(bursts) + ".")


def write(results: dict[str, Any], out: Path) -> None:
    for scenario in results["scenarios"].values():
        scenario["ratios"] = ratios(scenario["systems"])
    results["targets"] = targets(results)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("latest.json", json.dumps(results, indent=1, default=str) + "\n"),
                       ("latest.md", markdown(results))):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
