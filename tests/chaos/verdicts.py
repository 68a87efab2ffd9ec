"""Whether a fault's window, the soak or the end kept the issue's promises: those of
correctness (the exit status) and the timings (reported)."""

from __future__ import annotations

from typing import Any


def two_places(x: float) -> float:
    return round(x, 2)


def clean_ledger(led: dict[str, Any]) -> bool:
    return bool(led["lost"] == 0 and led["foreign"] == 0 and led["out_of_order"] == 0)


def clean_logs(logs: dict[str, Any]) -> bool:
    return bool(logs["full_ids"] == 0 and logs["pins"] == 0)


def correct(row: dict[str, Any]) -> bool:
    """The promises that do not depend on how fast this machine is: nothing lost, shown
    twice or out of order, the invariants, no PIN or full ID where it must not be, and
    never a 500. Hangs, the time to catch up and the hostile slowdown are timings."""
    return (clean_ledger(row["ledger"]) and not any(row["invariants"].values())
            and not row.get("privacy") and clean_logs(row["logs"])
            and "internal" not in row["commands"]["outcomes"])


def holds(row: dict[str, Any]) -> bool:
    """The promises of the issue for one fault."""
    led, commands = row["ledger"], row["commands"]
    bad_outcomes = {k for k in commands["outcomes"] if k in ("hang", "internal")}
    return (led["lost"] == 0 and led["foreign"] == 0 and led["out_of_order"] == 0
            and not bad_outcomes and commands["without_retry_after"] == 0
            and not any(row["invariants"].values()) and not row["privacy"]
            and row["logs"]["full_ids"] == 0 and row["logs"]["pins"] == 0
            and row["all_current_after_s"] is not None
            and (row["detail"].get("within_20_percent", True)))


def brief(row: dict[str, Any]) -> str:
    led = row["ledger"]
    return (f"lost {led['lost']} dup {led['duplicates']} ooo {led['out_of_order']} "
            f"resets {led['resets']} commands {row['commands']['outcomes']} "
            f"current after {row['all_current_after_s']} s behind max {row['behind_s']['max']} "
            f"holds {row['holds']}")
