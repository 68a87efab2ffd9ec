"""The chaos run's results as Markdown: the table per fault, the hostile crowd, the soak
and the final ledger (docs/chaos.md explains each column)."""

from __future__ import annotations

from typing import Any


def _outcomes(commands: dict[str, Any]) -> str:
    out = commands["outcomes"]
    parts = [f"{out.get('ok', 0):,} ok"]
    parts += [f"{v:,} {k}" for k, v in sorted(out.items()) if k != "ok"]
    if commands["not_sent"]:
        parts.append(f"{commands['not_sent']:,} held back (socket reconnecting)")
    if commands.get("waited"):
        parts.append(f"{commands['waited']:,} held back (retry_after)")
    return ", ".join(parts)


def _s(value: Any) -> str:
    return "–" if value is None else f"{value}"


def fault_table(faults: list[dict[str, Any]]) -> list[str]:
    lines = ["| fault | lost | dup (resent, dropped by client) | out of order | resets | "
             "commands during the window | unavailable w/o retry_after | reconnected | "
             "reconnect s (median / max) | behind s (median / max) | all current after s | "
             "invariants | holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in faults:
        led = f["ledger"]
        bad = {k: v for k, v in f["invariants"].items() if v}
        privacy = len(f["privacy"]) + f["logs"]["full_ids"] + f["logs"]["pins"]
        inv = "hold" if not bad and not privacy else f"**{bad or ''} privacy {privacy}**"
        lines.append(
            f"| {f['fault']} | {led['lost'] + led['foreign']} | {led['duplicates']} | "
            f"{led['out_of_order']} | {led['resets']} | {_outcomes(f['commands'])} | "
            f"{f['commands']['without_retry_after']} | {f['reconnected']} | "
            f"{_s(f['reconnect_s']['median'])} / {_s(f['reconnect_s']['max'])} | "
            f"{_s(f['behind_s']['median'])} / {_s(f['behind_s']['max'])} | "
            f"{_s(f['all_current_after_s'])} | {inv} | {'yes' if f['holds'] else '**no**'} |")
    return lines


def _phone(phone: dict[str, Any]) -> list[str]:
    if "skipped" in phone:
        return [f"Real phone: not run ({phone['skipped']}).", ""]
    if not phone:
        return []
    faults = "; ".join(f"{f['fault'].split(' (')[0]} {_s(f['current_after_s'])} s"
                       for f in phone["faults"]) or "none"
    if "shown" not in phone:
        end = "nobody signed in on it"
    else:
        said = ("what the database says" if phone["shown"] == phone["database"] else
                f"**{phone['shown']}** where the database says {phone['database']}")
        end = (f"at the end it showed {said} ({_phone_state(phone['database'])}) after "
               f"{_s(phone['current_after_s'])} s, and {len(phone['stale_after_end'])} other "
               f"states after that; {phone['states']} states shown in all, of which "
               f"{_wrong(phone['wrong'])}; "
               f"{phone['page_errors']} console errors and failed requests on the page")
    problems = f"; problems: {phone['problems']}" if phone["problems"] else ""
    return [
        f"Real phone (Chromium, the patient page through nginx; {phone['walk_ins']} "
        "examinee(s) in turn, each signing in and choosing the exam before a fault once "
        "the one before had finished the route) through every fault: after each fault "
        f"it showed what the database says within (s): {faults}; {end}{problems}; "
        f"holds: {'yes' if phone['holds'] else '**no**'}.",
        "",
    ]


def _wrong(wrong: dict[str, list[Any]]) -> str:
    counts = {k.replace("_", " "): len(v) for k, v in wrong.items()}
    text = ", ".join(f"{k} {v}" for k, v in counts.items())
    return text if not any(counts.values()) else f"**{text}**"


def _phone_state(state: dict[str, Any]) -> str:
    if state.get("screen") != "route":
        return f"the {state.get('screen')} screen"
    if state.get("number") is None:
        return f"at {state.get('station')} without a number"
    ahead = f", {state['ahead']} ahead" if state.get("ahead") is not None else ""
    return f"{state['clinic']}, number {state['number']}, {state['status']}{ahead}"


def _soak_slices(slices: list[dict[str, Any]]) -> list[str]:
    """The soak minute by minute: is p99 flat?"""
    if not slices:
        return []
    rows = [f"| {s['at_s']} | {s['commands']['outcomes'].get('ok', 0):,} | "
            f"{sum(v for k, v in s['commands']['outcomes'].items() if k != 'ok')} | "
            f"{s['commands']['reply_p99_ms']} | {s['lag_p99_ms']} | "
            f"{s['commands'].get('waiting_max', '')} |" for s in slices]
    return ["| soak s | ok | not ok | reply p99 ms | lag p99 ms | most waiting at a clinic |",
            "|---|---|---|---|---|---|", *rows, ""]


def markdown(r: dict[str, Any]) -> str:
    meta, clients, rate = r["meta"], r["clients"], r["rate"]
    lines = [
        f"Chaos run of {meta['started']} on a {meta['machine']}; commit {meta['commit']}; "
        f"`{meta['command']}` ({r['seconds']:.0f} s); {meta['nginx']}.",
        "",
        f"Load during every fault: {clients['up']:,} clients through nginx "
        f"({clients['displays']} displays on clinic channels, {clients['phones']} phones on "
        f"`me`, {clients['staff']} staff on staff channels, over {clients['clinics']} "
        f"clinics) and mixed enter / call / done commands offered at {rate['offered']}/s "
        f"(half the benchmark's sustained rate is {rate['benchmark_half']}/s; " + (
            "steps tried: " + "; ".join(
                f"{s['rate']}/s -> {s['achieved']}/s ok, errors {s['errors'] or 'none'}, "
                f"reply p99 {s['reply_p99_ms']} ms" for s in rate["steps"])
            if rate["steps"] else "set by `--rate`, not calibrated") + ").",
        "",
        *fault_table(r["faults"]),
        "",
    ]
    hostile = next((f for f in r["faults"] if "hostile" in f["fault"]), None)
    if hostile is not None:
        d = hostile["detail"]
        tally = d["tally"]
        lines += [
            f"Hostile clients: honest p99 before / during: command replies "
            f"{d['baseline']['reply_p99_ms']} / {d['hostile']['reply_p99_ms']} ms "
            f"(x{d['ratio']['reply_p99_ms']}), event lag {d['baseline']['lag_p99_ms']} / "
            f"{d['hostile']['lag_p99_ms']} ms (x{d['ratio']['lag_p99_ms']}); the same time "
            f"after they left: replies {d['after']['reply_p99_ms']} ms, lag "
            f"{d['after']['lag_p99_ms']} ms, commands {d['after_outcomes']}; within 20%: "
            f"{'yes' if d['within_20_percent'] else '**no**'}. The hostile crowd sent "
            f"{tally['sent']:,} frames; answers {tally['error']}, closes {tally['close']}, "
            f"connects {tally['connect']}.",
            "",
        ]
    soak = r["soak"]
    grew = [f"{k} {v['early']} -> {v['late']} ({v['growth_pct']}%)"
            for k, v in soak.get("growth", {}).items()]
    lines += [] if not soak else [
        f"Soak: {soak['seconds']:.0f} s (warm-up {soak['warmup_s']:.0f} s) at "
        f"{rate['offered']}/s offered: {soak['commands_ok']:,} commands ok "
        f"({soak['achieved_per_s']}/s), errors {soak['errors'] or 'none'}; command reply p99 per "
        f"slice first / last / max {soak['reply_p99_ms']['first']} / "
        f"{soak['reply_p99_ms']['last']} / {soak['reply_p99_ms']['max']} ms; event lag p99 "
        f"first / last / max {soak['lag_p99_ms']['first']} / {soak['lag_p99_ms']['last']} / "
        f"{soak['lag_p99_ms']['max']} ms; ledger lost {soak['ledger']['lost']}, "
        f"duplicates {soak['ledger']['duplicates']}, out of order "
        f"{soak['ledger']['out_of_order']}; server log errors {soak['logs']['errors']}; "
        f"holds: {'yes' if soak.get('holds') else '**no**'}. Before it the faults' backlog "
        f"was drained ({(soak.get('drained') or {}).get('drained_s')} s); at most "
        f"{soak.get('waiting_max')} waited at a clinic.",
        "",
        "Growth after warm-up (median of the first third against the last third; judged on "
        "private memory (USS) and open files; PSS, which counts Postgres's shared buffers "
        "as a growing day's tables fill them, and the crowd, the load generator, are shown "
        "but not judged): " + "; ".join(grew) + ".",
        "",
        *_soak_slices(soak.get("slices") or []),
    ]
    display = r.get("display") or {}
    if "skipped" in display:
        lines += [f"Real display: not run ({display['skipped']}).", ""]
    elif display:
        lines += [
            f"Real display (Chromium, clients/web/display.html through nginx, clinic "
            f"{display['clinic']}) through every fault: {display['calls']} calls committed, "
            f"{display['announced']} announced, missing {display['missing']}, announced "
            f"twice {display['twice']}, never called {display['never_called']}, in order "
            f"{display['in_order']}; shows {display['shown']}, the database says "
            f"{display['database']}; {display['page_errors']} console errors and failed "
            f"requests on the page (faults make some); holds: "
            f"{'yes' if display['holds'] else '**no**'}.",
            "",
        ]
    lines += _phone(r.get("phone") or {})
    final = r["final"]
    led = final["ledger"]
    lines += [
        f"End: commands stopped, every client current after {final['all_current_after_s']} s; "
        f"last ledger: {led['accepted']:,} events accepted of {led['expected']:,} expected, "
        f"lost {led['lost']}, foreign {led['foreign']}, duplicates {led['duplicates']}, out of "
        f"order {led['out_of_order']}; invariants {final['invariants']}; holds: "
        f"{'yes' if final['holds'] else '**no**'}.",
        "",
    ]
    return "\n".join(lines)
