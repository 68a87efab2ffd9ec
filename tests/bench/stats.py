"""Figures from what the load processes saw: latency percentiles (displays per frame,
phones per call: the last phone of the clinic to learn of it), frames a second and the
server's CPU per 1,000 frames, and the median round of several."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def call_times(seen: dict[tuple[str, int], float], ranked: bool
               ) -> dict[tuple[str, int], float]:
    """(clinic, k) -> commit time of the clinic's k-th call of the round, from the seqs
    the displays saw: ours are event ids (`ranked`), a peer's seq is the count itself."""
    if not ranked:
        return seen
    by_clinic: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (clinic, seq), at in seen.items():
        by_clinic[clinic].append((seq, at))
    out = {}
    for clinic, rows in by_clinic.items():
        for k, (_, at) in enumerate(sorted(rows), start=1):
            out[(clinic, k)] = at
    return out


def latency(merged: dict[str, Any], *, seen: dict[tuple[str, int], float], ranked: bool,
            prefix: str = "") -> dict[str, Any]:
    """Commit-to-screen for displays (every frame) and phones (per call, the last)."""
    times = call_times(seen, ranked)
    displays = merged["display_latency"]
    phones = [t - times[key] for key, t in merged["covered"].items() if key in times]
    out: dict[str, Any] = {}
    for name, values in (("", displays), ("phone_", phones)):
        out[f"{prefix}{name}p50_ms"] = _ms(percentile(values, 50))
        out[f"{prefix}{name}p99_ms"] = _ms(percentile(values, 99))
        out[f"{prefix}{name}max_ms"] = _ms(max(values) if values else None)
        out[f"{prefix}{name}samples"] = len(values)
    return out


def throughput(merged: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    frames = merged["frames"]
    span = merged["last"] - merged["first"]
    return {
        "frames": frames,
        "frames_per_s": round(frames / span) if span > 0 else 0,
        "cpu_s_per_1k_frames": round(server_cpu / frames * 1000, 4) if frames else None,
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_share": round(server_cpu / span, 2) if span > 0 else None,
        "client_cpu_s": round(merged["client_cpu_seconds"], 2),
    }


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose `key` is the median (the lower middle for an even count)."""
    ranked = sorted(rounds, key=lambda r: r.get(key) or 0)
    return {**ranked[(len(ranked) - 1) // 2], "rounds": len(rounds),
            f"{key}_all": [r.get(key) for r in rounds]}


def spread(values: list[float]) -> float | None:
    return round(statistics.pstdev(values), 2) if len(values) > 1 else None
