"""One chaos run: the stack up, the crowd connected and the commands flowing, then each
fault in turn under that load (its window measured, the ledger and the invariants
checked after it), then the soak; every process it started is stopped at the end."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.bench.stage import Seeded
from tests.chaos import crowd, hostile, ledger, screens
from tests.chaos.members import Crowds, Member
from tests.chaos.soak import Soak
from tests.chaos.stack import Stack
from tests.chaos.verdicts import brief, clean_ledger, clean_logs, holds, two_places


@dataclass(frozen=True)
class Plan:
    """How big and how long: `quick` fits `make chaos-quick` (5 min), the other `make
    chaos` (30 min)."""

    quick: bool
    displays: int
    phones_per_clinic: int
    staff_per_clinic: int
    rate: float                 # commands a second offered (half the benchmark's)
    calm: float                 # seconds of load before and after each fault
    stall: float                # the hub's stall
    slow_seconds: float         # how long 5% of clients read nothing
    hostile_seconds: float
    anonymous: int              # hostile anonymous sockets
    soak_seconds: float
    soak_slice: float
    warmup: float
    breaker_reset: int | None = None  # BREAKER_RESET_SECONDS; None: the default (60)
    hostile_behaviours: tuple[str, ...] = ("garbage", "oversized", "logins", "pins")
    fixed_rate: float | None = None  # `--rate`: offer this, no calibration

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            # Five minutes in all: short calm, a 5 s stall, the breaker open 5 s.
            return cls(True, 584, 20, 6, 750, 1.0, 5.0, 3.0, 5.0, 1000, 120.0, 20.0, 30.0, 5)
        return cls(False, 584, 20, 6, 750, 5.0, 10.0, 20.0, 30.0, 3000, 900.0, 60.0, 120.0)


def specs(seeded: Seeded, plan: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                               list[str]]:
    """(staff and phones, displays, PIN guessers' tokens): the guessers are the seeded
    patients beyond the honest phones."""
    clinics = seeded.clinics
    first: list[dict[str, Any]] = []
    for i, clinic in enumerate(clinics):
        for _ in range(plan.staff_per_clinic):
            first.append(crowd.Spec(crowd.STAFF, clinic, f"clinic:{clinic}:staff",
                                    seeded.admin_token).__dict__)
        for n in range(plan.phones_per_clinic):
            first.append(crowd.Spec(crowd.PHONE, clinic, "me", seeded.phones[clinic][n],
                                    f"9{i:02d}{n:07d}").__dict__)
    displays = [crowd.Spec(crowd.DISPLAY, clinics[i % len(clinics)],
                           f"clinic:{clinics[i % len(clinics)]}").__dict__
                for i in range(plan.displays)]
    guessers = [t for c in clinics for t in seeded.phones[c][plan.phones_per_clinic:]]
    return first, displays, guessers


class Run(Soak):
    def __init__(self, plan: Plan, say: Callable[[str], None],
                 only: list[str] | None = None) -> None:
        self.plan = plan
        self.only = only  # run just the faults whose names contain one of these words
        self.say = say
        self.stack = Stack(breaker_reset=plan.breaker_reset)
        self.crowds: Crowds | None = None
        self.hostile: Member | None = None
        self.display: Member | None = None  # the screens' process: the display and the phone
        self.display_from = ("", 0)
        self.phone: dict[str, Any] | None = None
        self.keys: set[str] = set()
        self.rate = plan.rate
        self.results: dict[str, Any] = {"faults": [], "plan": plan.__dict__}
        self.logs: ledger.LogScan | None = None

    # the whole run ----------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            self.setup()
            faults = self.faults()
            if self.only is not None:
                faults = [(n, a) for n, a in faults if any(w in n for w in self.only)]
            # The hostile crowd goes last, after the soak: what it leaves behind (work
            # queued on the servers) must not be read as the soak's own drift.
            hostile_last = faults[-1:] if faults and faults[-1][0].startswith("hostile") else []
            for name, act in faults[:len(faults) - len(hostile_last)]:
                self.results["faults"].append(self.fault(name, act))
            self.results["soak"] = self.soak() if self.plan.soak_seconds > 0 else {}
            for name, act in hostile_last:
                self.results["faults"].append(self.fault(name, act))
            self.results["final"] = self.finish()
        finally:
            self.close()
        self.results["seconds"] = round(time.monotonic() - started, 1)
        return self.results

    def setup(self) -> None:
        self.say("starting Postgres, the database proxy, two servers and nginx")
        seeded = self.stack.start(self.plan.phones_per_clinic + 2)
        self.logs = ledger.LogScan([s.log for s in self.stack.servers])
        self.seeded = seeded
        first, displays, self.guessers = specs(seeded, self.plan)
        self.keys = {(f"me:{s['patient']}" if s["channel"] == "me" else s["channel"])
                     for s in first + displays}
        self.crowds = Crowds()
        url = self.stack.ws_url
        t = time.monotonic()
        answers = [self.crowds.members[0].ask({"cmd": "connect", "url": url,
                                               "source": "127.0.0.2", "specs": first,
                                               "within": 60.0}),
                   self.crowds.members[1].ask({"cmd": "connect", "url": url,
                                               "source": "127.0.0.3", "specs": displays,
                                               "within": 60.0})]
        up = sum(a["up"] for a in answers)
        self.results["clients"] = {"staff": self.plan.staff_per_clinic * len(seeded.clinics),
                                   "phones": self.plan.phones_per_clinic * len(seeded.clinics),
                                   "displays": self.plan.displays, "up": up,
                                   "connect_seconds": round(time.monotonic() - t, 1),
                                   "clinics": len(seeded.clinics)}
        self.say(f"{up} clients up through nginx")
        self.open_display()
        self.open_phone()
        self.results["rate"] = self.calibrate()
        self.crowds.driver.ask({"cmd": "drive", "rate": self.rate, "seconds": 24 * 3600})
        self.ledger_checkpoint()  # the ledgers start here

    def open_display(self) -> None:
        """One real display page (Chromium) through nginx, when the machine has one."""
        missing = screens.available()
        if missing is not None:
            self.results["display"] = {"skipped": missing}
            return
        clinic = self.seeded.clinics[0]
        self.display = Member(screens.main, "chaos-display")
        state = self.display.ask({"cmd": "open", "url": f"{self.stack.http_url}/display?"
                                  f"clinics={clinic}&name=chaos"}, timeout=90)
        stored = json.loads(state["stored"] or "{}")
        self.display_from = (clinic, int(stored.get(clinic, 0)))
        self.say(f"a Chromium display of {clinic} is up (from seq {self.display_from[1]})")

    def check_display(self) -> dict[str, Any]:
        if self.display is None:
            return dict(self.results.get("display") or {})
        state = self.display.ask({"cmd": "read"})
        clinic, since = self.display_from
        found = asyncio.run(ledger.display_check(self.stack.direct_dsn, clinic, since, state))
        found["holds"] = (found["missing"] == 0 and found["twice"] == 0
                          and found["never_called"] == 0 and found["in_order"]
                          and found["shown"] == found["database"])
        return found

    def open_phone(self) -> None:
        """One real phone page (Chromium, the patient page) through nginx, beside the
        display; its first examinee signs in when the first fault is about to begin."""
        if self.display is None:
            self.results["phone"] = dict(self.results.get("display") or {})
            return
        self.display.ask({"cmd": "phone_open", "url": f"{self.stack.http_url}/"}, timeout=90)
        self.phone = {"patient": None, "walk_ins": 0, "walk_in_s": [], "faults": [],
                      "problems": []}

    def phone_truth(self) -> dict[str, Any]:
        assert self.phone is not None and self.phone["patient"] is not None
        return asyncio.run(screens.phone_truth(self.stack.direct_dsn, self.phone["patient"]))

    def phone_walk_in(self) -> tuple[str, float] | None:
        """Before each fault, a phone whose examinee has finished the route changes hands:
        the next one signs in on it and chooses the exam (during the calm before the
        fault), so that every fault meets a route the driver's calls are moving (a route
        takes seconds at the run's rate). Returns (patient, since when) if one is."""
        phone = self.phone
        if self.display is None or phone is None:
            return None
        if phone["patient"] is not None and self.phone_truth()["screen"] != "done":
            return None
        patient = phone_patient(phone["walk_ins"])
        self.display.send({"cmd": "phone_walk_in", "patient": patient, "gender": "male"})
        return patient, time.monotonic()

    def phone_signed_in(self, walking: tuple[str, float] | None) -> None:
        """Until the examinee `phone_walk_in` began has signed in (before the fault)."""
        if walking is None or self.display is None or self.phone is None:
            return
        patient, t = walking
        phone = self.phone
        try:
            self.display.receive()
        except RuntimeError as exc:
            phone["problems"].append(f"{patient} could not sign in: {str(exc)[-300:]}")
            return
        phone["patient"] = patient
        phone["walk_ins"] += 1
        phone["walk_in_s"].append(round(time.monotonic() - t, 2))

    def phone_current(self, within: float = 30.0) -> tuple[float | None, dict[str, Any]]:
        """(seconds until the phone shows what the database says, or None; the last
        page and database states read), while the commands may still move its route."""
        assert self.display is not None
        t = time.monotonic()
        while True:
            shown = self.display.ask({"cmd": "phone_read"})["shown"]
            truth = self.phone_truth()
            if shown == truth:
                return round(time.monotonic() - t, 2), {"shown": shown}
            if time.monotonic() - t > within:
                return None, {"shown": shown, "database": truth}
            time.sleep(0.2)

    def phone_after(self, fault: str) -> None:
        if self.display is None or self.phone is None or self.phone["patient"] is None:
            return
        after, states = self.phone_current()
        self.phone["faults"].append({"fault": fault, "patient": self.phone["patient"],
                                     "current_after_s": after, **states})
        self.say(f"  phone {self.phone['patient']}: current after {after} s {states['shown']}")

    def check_phone(self, watch: float = 1.0) -> dict[str, Any]:
        """At the end (commands stopped, every client current): the phone shows what
        the database says, and from then on (`watch` seconds) never anything else."""
        phone = self.phone
        if self.display is None or phone is None:
            return dict(self.results.get("phone") or {})
        found: dict[str, Any] = {k: phone[k] for k in ("walk_ins", "walk_in_s", "faults",
                                                        "problems")}
        if phone["patient"] is None:  # no fault ran: nobody signed in on it
            return {**found, "holds": not phone["problems"]}
        after, _ = self.phone_current()
        matched = time.time()
        time.sleep(watch)
        state = self.display.ask({"cmd": "phone_read", "since": 0})
        truth = self.phone_truth()
        flips = [x for x in state["trail"] if x["t"] >= matched * 1000 and x["shown"] != truth]
        late = [f["fault"] for f in phone["faults"] if f["current_after_s"] is None]
        patients = [phone_patient(k) for k in range(phone["walk_ins"])]
        entries = asyncio.run(screens.phone_entries(self.stack.direct_dsn, patients))
        wrong = screens.wrong_states(state["trail"], entries)
        found.update(patient=phone["patient"], current_after_s=after, shown=state["shown"],
                     database=truth, stale_after_end=flips[:5], states=state["states"],
                     wrong=wrong, late=late, page_errors=state["error_count"],
                     page_error_examples=state["errors"][:5])
        found["holds"] = (after is not None and state["shown"] == truth and not flips
                          and not late and not phone["problems"] and not any(wrong.values()))
        return found

    def calibrate(self) -> dict[str, Any]:
        """Offer half the benchmark's sustained rate; if this machine cannot keep it up
        with everything else on it, step down and say so."""
        assert self.crowds is not None
        if self.plan.fixed_rate:
            self.rate = self.plan.fixed_rate
            return {"offered": round(self.rate), "benchmark_half": self.plan.rate,
                    "steps": [], "note": "fixed by --rate"}
        tried = []
        seconds = 3.0 if self.plan.quick else 10.0
        fractions = (1, 1 / 2, 1 / 5, 2 / 15) if self.plan.quick else \
            (1, 2 / 3, 1 / 2, 1 / 3, 1 / 5, 2 / 15)
        for rate in (self.plan.rate * f for f in fractions):
            self.crowds.all({"cmd": "window"})
            self.crowds.driver.ask({"cmd": "drive", "rate": rate, "seconds": seconds})
            time.sleep(seconds)
            self.crowds.driver.ask({"cmd": "halt"})
            report = self.crowds.driver.ask({"cmd": "report"})["commands"]
            ok = report["outcomes"].get("ok", 0)
            errors = {k: v for k, v in report["outcomes"].items() if k != "ok"}
            step = {"rate": round(rate), "achieved": round(ok / seconds, 1),
                    "errors": errors, "reply_p99_ms": report["reply_p99_ms"]}
            tried.append(step)
            self.say(f"calibrate {step}")
            if not errors and ok >= 0.95 * rate * seconds and (report["reply_p99_ms"] or 0) < 1000:
                self.rate = rate
                return {"offered": round(rate), "benchmark_half": self.plan.rate, "steps": tried}
        self.rate = self.plan.rate * fractions[-1]
        return {"offered": round(self.rate), "benchmark_half": self.plan.rate, "steps": tried,
                "note": "no step was steady"}

    # one fault --------------------------------------------------------------------------

    def faults(self) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        s, plan = self.stack, self.plan
        a, b = s.servers

        def pg_restart() -> dict[str, Any]:
            s.postgres_restart()
            return {}

        def pg_kill() -> dict[str, Any]:
            s.postgres_kill()
            return {}

        def kill_a() -> dict[str, Any]:
            s.kill_server(a)
            time.sleep(plan.calm)  # its clients move to b meanwhile
            s.start_server(a)
            return {}

        def term_b() -> dict[str, Any]:
            seconds = s.term_server(b)
            time.sleep(plan.calm)
            s.start_server(b)
            return {"shutdown_seconds": round(seconds, 2)}

        def hub_cut() -> dict[str, Any]:
            assert s.proxy is not None
            return s.proxy.ask("cut")

        def hub_stall() -> dict[str, Any]:
            assert s.proxy is not None
            reply = s.proxy.ask("stall", seconds=plan.stall)
            time.sleep(plan.stall)
            return reply

        def nginx_reload() -> dict[str, Any]:
            assert s.nginx is not None
            before = set(s.nginx.pids)
            s.nginx.reload()
            # The old workers finish (worker_shutdown_timeout), bounded.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and before & set(s.nginx.pids[1:]):
                time.sleep(0.2)
            return {"old_workers_left": len(before & set(s.nginx.pids[1:]))}

        def nginx_restart() -> dict[str, Any]:
            s.restart_nginx()
            return {}

        def slow_readers() -> dict[str, Any]:
            assert self.crowds is not None
            stopped = self.crowds.members[1].ask({"cmd": "stop_reading",
                                                  "fraction": 50 / self.plan.displays})
            time.sleep(plan.slow_seconds)
            self.crowds.members[1].ask({"cmd": "resume_reading"})
            return stopped

        def storm() -> dict[str, Any]:
            assert self.crowds is not None
            cut = self.display.ask({"cmd": "drop"}) if self.display else {"dropped": 0}
            return {"dropped": sum(r["dropped"] for r in self.crowds.all({"cmd": "drop_all"})),
                    "screens_dropped": cut["dropped"]}

        def hostile_crowd() -> dict[str, Any]:
            return self.hostile_fault()

        return [("postgres restart (pg_ctl restart -m fast)", pg_restart),
                ("postgres kill -9 + start", pg_kill),
                ("server a kill -9 (restarted after)", kill_a),
                ("server b SIGTERM (restarted after)", term_b),
                ("hub connection cut (TCP proxy)", hub_cut),
                (f"hub connection stalled {plan.stall:.0f} s (TCP proxy)", hub_stall),
                ("nginx reload (SIGHUP)", nginx_reload),
                ("nginx restart", nginx_restart),
                ("5% of clients stop reading", slow_readers),
                ("reconnect storm (every client at once)", storm),
                ("hostile clients beside honest ones", hostile_crowd)]

    def fault(self, name: str, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        assert self.crowds is not None
        walking = self.phone_walk_in()
        self.say(f"fault: {name}")
        self.crowds.all({"cmd": "window"})
        time.sleep(self.plan.calm)
        self.phone_signed_in(walking)
        t0 = time.monotonic()
        detail = act()
        acted = time.monotonic() - t0
        ready = self.stack.wait_ready()
        current = self.until_current()
        time.sleep(self.plan.calm)
        reports = self.crowds.all({"cmd": "report"})
        row = self.summarise(name, reports)
        row.update(detail=detail, fault_seconds=round(acted, 2),
                   ready_after_s=round(ready, 2), all_current_after_s=current,
                   ledger=self.ledger_checkpoint(), invariants=self.invariants(),
                   logs=self.scan_logs())
        row["holds"] = holds(row)
        self.say(f"  -> {brief(row)}")
        self.phone_after(name)
        return row

    def until_current(self, within: float = 60.0) -> float | None:
        """Seconds until every client holds every event committed up to now."""
        assert self.crowds is not None
        t = time.monotonic()
        dsn = self.stack.direct_dsn
        target = asyncio.run(ledger.heads(dsn, self.keys, self.head_at_start))
        while time.monotonic() - t < within:
            if sum(r["behind"] for r in self.crowds.all({"cmd": "current", "heads": target})) == 0:
                return round(time.monotonic() - t, 2)
            time.sleep(0.1)
        return None

    def ledger_checkpoint(self) -> dict[str, Any]:
        assert self.crowds is not None
        clients = [c for r in self.crowds.all({"cmd": "ledger"}) for c in r["clients"]]
        result = asyncio.run(ledger.compare(self.stack.direct_dsn, clients))
        self.head_at_start = asyncio.run(ledger.head(self.stack.direct_dsn))
        return result

    def invariants(self) -> dict[str, int]:
        return asyncio.run(ledger.invariants(self.stack.direct_dsn))

    def scan_logs(self) -> dict[str, Any]:
        assert self.logs is not None
        return self.logs.scan()

    def summarise(self, name: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
        worst = sorted(w for r in reports for w in r["worst_lags"])
        gaps = sorted(g for r in reports for g in r["gaps"])
        commands = next(r["commands"] for r in reports if r["commands"] is not None)
        lag_p99 = max((r["lag_p99"] or 0) for r in reports)
        return {
            "fault": name,
            "commands": commands,
            "reconnected": sum(r["reconnected"] for r in reports),
            "reconnect_s": {"median": two_places(statistics.median(gaps)) if gaps else None,
                            "max": two_places(gaps[-1]) if gaps else None},
            "behind_s": {"median": two_places(statistics.median(worst)) if worst else None,
                         "max": two_places(worst[-1]) if worst else None},
            "lag_p99_ms": round(lag_p99 * 1000, 1),
            "close_codes": sorted({c for r in reports for c in r["close_codes"]}),
            "privacy": [p for r in reports for p in r["privacy"]][:5],
            "leaks": sum(r["leaks"] for r in reports),
            "connect_errors": [r["connect_errors"] for r in reports],
            "still_down": sum(r["down"] for r in reports),
        }

    # hostile ----------------------------------------------------------------------------

    def hostile_fault(self) -> dict[str, Any]:
        """A baseline window, then the same length with the hostile crowd: honest
        clients' p99 (command replies, event lag) must stay within 1.2x."""
        assert self.crowds is not None
        seconds = self.plan.hostile_seconds
        self.crowds.all({"cmd": "window"})
        time.sleep(seconds)
        base = self.crowds.all({"cmd": "report"})
        self.hostile = Member(hostile.main, "chaos-hostile")
        self.crowds.all({"cmd": "window"})
        self.hostile.ask({"cmd": "start", "url": self.stack.ws_url,
                          "sources": [f"127.0.0.{i}" for i in range(4, 9)],
                          "anonymous": self.plan.anonymous, "senders": 40, "rate": 20.0,
                          "tokens": self.guessers, "clinics": self.seeded.clinics,
                          "behaviours": list(self.plan.hostile_behaviours)})
        time.sleep(seconds)
        under = self.crowds.all({"cmd": "report"})
        tally = self.hostile.ask({"cmd": "stop"})
        self.hostile.close()
        self.hostile = None
        # And as long again once they are gone: does what they left behind linger?
        self.crowds.all({"cmd": "window"})
        time.sleep(seconds)
        after = self.crowds.all({"cmd": "report"})

        def p99s(reports: list[dict[str, Any]]) -> dict[str, float]:
            commands = next(r["commands"] for r in reports if r["commands"] is not None)
            return {"reply_p99_ms": commands["reply_p99_ms"] or 0.0,
                    "lag_p99_ms": round(max((r["lag_p99"] or 0) for r in reports) * 1000, 2)}

        b, u, a = p99s(base), p99s(under), p99s(after)
        ratio = {k: round(u[k] / b[k], 2) if b[k] else None for k in b}
        after_commands = next(r["commands"] for r in after if r["commands"] is not None)
        return {"baseline": b, "hostile": u, "after": a, "ratio": ratio, "tally": tally,
                "after_outcomes": after_commands["outcomes"],
                "within_20_percent": all(r is not None and r <= 1.2 for r in ratio.values())}

    def finish(self) -> dict[str, Any]:
        """Commands stop; every client must then catch up to the last event."""
        assert self.crowds is not None
        self.crowds.driver.ask({"cmd": "halt"})
        current = self.until_current()
        led, invariants, logs = self.ledger_checkpoint(), self.invariants(), self.scan_logs()
        self.results["display"] = display = self.check_display()
        self.results["phone"] = phone = self.check_phone()
        return {"all_current_after_s": current, "ledger": led, "invariants": invariants,
                "logs": logs, "holds": current is not None and clean_ledger(led)
                and not any(invariants.values()) and clean_logs(logs)
                and display.get("holds", True) and phone.get("holds", True)}

    def close(self) -> None:
        if self.hostile is not None:
            self.hostile.close()
        if self.display is not None:
            self.display.close()
        if self.crowds is not None:
            self.crowds.close()
        self.stack.close()


def phone_patient(k: int) -> str:
    """The ID of the k-th examinee who signs in on the real phone."""
    return f"70000000{k:02d}"
