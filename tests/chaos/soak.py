"""The soak: the load held steady after the faults' backlog is drained, every process's
memory and open files sampled, growth judged on private memory (USS) and open files."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import psutil

from tests.bench import stats
from tests.chaos.verdicts import clean_ledger, clean_logs

SAMPLED = ("pss_mib", "uss_mib", "fds")  # per process in the soak (PSS shown, not judged)


class Soak:
    """The soak's part of a run (tests/chaos/run.py's `Run`): its stack, crowds, rate,
    plan and checkpoints."""

    def processes(self) -> dict[str, list[int]]:
        s = self.stack
        assert self.crowds is not None and s.nginx is not None and s.proxy is not None
        return {"server a": [p for p in [s.servers[0].pid] if p],
                "server b": [p for p in [s.servers[1].pid] if p],
                "nginx": s.nginx.pids, "postgres": s.postgres_pids(),
                "db proxy": [p for p in [s.proxy.process.pid] if p],
                "crowd": self.crowds.pids}

    def sample(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, pids in self.processes().items():
            pss = uss = fds = 0.0
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(pid)
                    memory = p.memory_full_info()
                    # PSS: shared pages (Postgres's shared buffers) counted once across
                    # the processes; USS: pages this process alone holds.
                    pss += memory.pss / 1024 / 1024
                    uss += memory.uss / 1024 / 1024
                    fds += p.num_fds()
            out[name] = {"pss_mib": round(pss, 1), "uss_mib": round(uss, 1), "fds": fds}
        return out

    def steady(self) -> dict[str, Any]:
        """The faults' backlog drained before the soak: commands halted until every one
        is answered and every client holds every event, then driven again."""
        assert self.crowds is not None
        t = time.monotonic()
        self.crowds.driver.ask({"cmd": "halt"})
        current = self.until_current()
        self.crowds.driver.ask({"cmd": "drive", "rate": self.rate, "seconds": 24 * 3600})
        return {"drained_s": round(time.monotonic() - t, 1), "all_current_after_s": current}

    def soak(self) -> dict[str, Any]:
        assert self.crowds is not None
        plan = self.plan
        drained = self.steady()
        self.say(f"soak: {plan.soak_seconds:.0f} s at {self.rate:.0f} commands/s "
                 f"(backlog drained in {drained['drained_s']} s)")
        slices = []
        samples: list[tuple[float, dict[str, dict[str, float]]]] = []
        started = time.monotonic()
        while time.monotonic() - started < plan.soak_seconds:
            self.crowds.all({"cmd": "window"})
            end = min(started + plan.soak_seconds, time.monotonic() + plan.soak_slice)
            while time.monotonic() < end:
                samples.append((time.monotonic() - started, self.sample()))
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            reports = self.crowds.all({"cmd": "report"})
            row = self.summarise("soak", reports)
            row["at_s"] = round(time.monotonic() - started)
            slices.append(row)
            self.say(f"  soak {row['at_s']} s: {row['commands']['outcomes']} "
                     f"reply p99 {row['commands']['reply_p99_ms']} ms "
                     f"lag p99 {row['lag_p99_ms']} ms, "
                     f"at most {row['commands'].get('waiting_max')} waiting at a clinic")
        growth = {}
        after = [(t, s) for t, s in samples if t >= plan.warmup]
        third = max(1, len(after) // 3)
        for name in (after[0][1] if after else {}):
            for metric in SAMPLED:
                early = statistics.median(s[name][metric] for _, s in after[:third])
                late = statistics.median(s[name][metric] for _, s in after[-third:])
                growth[f"{name} {metric}"] = {
                    "early": round(early, 1), "late": round(late, 1),
                    "growth_pct": round((late - early) / early * 100, 1) if early else None}
        ok = sum(r["commands"]["outcomes"].get("ok", 0) for r in slices)
        errors: dict[str, int] = {}
        for r in slices:
            for k, v in r["commands"]["outcomes"].items():
                if k != "ok":
                    errors[k] = errors.get(k, 0) + v
        # The crowd is the load generator, not the system: reported, not judged. Memory
        # is judged by USS: a leak is private memory, while PSS also grows as Postgres
        # touches more of its shared buffers for a day's growing tables (a cache,
        # bounded by shared_buffers), which is shown but not a leak.
        grew = sorted(k for k, v in growth.items() if not k.startswith("crowd")
                      and not k.endswith("pss_mib")
                      and v["growth_pct"] is not None and v["growth_pct"] >= 5)
        p99s = [r["commands"]["reply_p99_ms"] or 0 for r in slices]
        lag99 = [r["lag_p99_ms"] for r in slices]
        led = self.ledger_checkpoint()
        invariants, logs = self.invariants(), self.scan_logs()
        clean = clean_ledger(led) and not any(invariants.values()) and clean_logs(logs)
        waiting = [r["commands"].get("waiting_max") or 0 for r in slices]
        return {"seconds": plan.soak_seconds, "warmup_s": plan.warmup, "slices": slices,
                "drained": drained, "waiting_max": max(waiting, default=0),
                "growth": growth, "grew_5_percent": grew, "commands_ok": ok, "errors": errors,
                "holds": clean and not errors and not grew,
                "achieved_per_s": round(ok / plan.soak_seconds, 1),
                "reply_p99_ms": {"first": p99s[0] if p99s else None,
                                 "last": p99s[-1] if p99s else None,
                                 "max": max(p99s, default=None),
                                 "median": stats.percentile(sorted(p99s), 50)},
                "lag_p99_ms": {"first": lag99[0] if lag99 else None,
                               "last": lag99[-1] if lag99 else None,
                               "max": max(lag99, default=None)},
                "ledger": led, "invariants": invariants,
                "logs": logs, "samples": samples[:: max(1, len(samples) // 60)]}
