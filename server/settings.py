"""The committee's settings (the `settings` table, key -> JSON): what each means and
which values are acceptable. Defaults are seeded by schema/002_seed.up.sql."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server import errors


@dataclass(frozen=True)
class Setting:
    key: str
    meaning: str
    check: Callable[[Any], bool]
    expected: str


def _int_between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _timezone(v: Any) -> bool:
    if not isinstance(v, str) or not 1 <= len(v) <= 64:
        return False
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _clock_time(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v) is not None


SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("timezone", "local time zone that defines the day", _timezone, "an IANA zone"),
    Setting("pin_reset_time", "local time when PINs rotate", _clock_time, "HH:MM"),
    Setting("auto_call_enabled", "call the next patient automatically",
            lambda v: isinstance(v, bool), "true or false"),
    Setting("patient_max_wait_seconds", "a CALLED patient not started is skipped after",
            _int_between(30, 86400), "30..86400"),
    Setting("notify_near_ahead", "NEAR_TURN when this many or fewer are ahead",
            _int_between(0, 100), "0..100"),
    Setting("max_postpones", "skips before an entry is cancelled",
            _int_between(1, 20), "1..20"),
    Setting("pin_max_attempts", "wrong PINs allowed inside the lockout window",
            _int_between(1, 100), "1..100"),
    Setting("pin_lockout_seconds", "length of the PIN lockout window",
            _int_between(10, 86400), "10..86400"),
    Setting("events_retention_seconds", "how long events are kept (bounds resume)",
            _int_between(60, 7 * 86400), "60..604800"),
    Setting("target_wait_seconds", "waiting longer than this is an SLA breach",
            _int_between(60, 86400), "60..86400"),
    Setting("patient_registration", "open: any examinee logs in with ID and gender; "
            "registered: only those reception registered today, with their slip's code",
            lambda v: v in ("open", "registered"), "open or registered"),
    Setting("pin_clinic_max_attempts", "wrong PINs at one clinic (all examinees) inside "
            "the lockout window before its PIN is replaced at once",
            _int_between(5, 10000), "5..10000"),
    Setting("login_address_limit", "failed logins from one client address (all accounts) "
            "in five minutes before that address must wait; phones behind one NAT share it",
            _int_between(10, 1_000_000), "10..1000000"),
)}


def validate(key: Any, value: Any) -> tuple[str, Any]:
    if not isinstance(key, str) or key not in SETTINGS:
        raise errors.BadRequest("unknown setting")
    setting = SETTINGS[key]
    if not setting.check(value):
        raise errors.BadRequest(f"{key} must be {setting.expected}")
    return key, value
