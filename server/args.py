"""Arguments of a request, checked before anything touches the database: wrong types,
missing fields, oversized strings and malformed codes become `bad_request`."""

from __future__ import annotations

import re
from typing import Any

from server import errors

CLINIC_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
EXAM_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
PATIENT_ID = re.compile(r"[0-9]{2,12}")
PIN = re.compile(r"[0-9]{2}")
USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

# Arabic-Indic (U+0660..) and Eastern Arabic-Indic (U+06F0..) digits to ASCII.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
GENDERS = ("male", "female")
MAX_TEXT = 256


def normalise_patient_id(value: str) -> str:
    return value.translate(_DIGITS).strip()


class Args:
    """A request's `args` object with typed accessors."""

    def __init__(self, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise errors.BadRequest("args must be an object")
        self._raw: dict[str, Any] = raw

    def __contains__(self, name: str) -> bool:
        return self._raw.get(name) is not None

    def text(self, name: str, *, pattern: re.Pattern[str] | None = None,
             max_len: int = MAX_TEXT, what: str | None = None) -> str:
        value = self._raw.get(name)
        label = what or name
        if value is None:
            raise errors.BadRequest(f"{name} is required")
        if not isinstance(value, str):
            raise errors.BadRequest(f"{name} must be a string")
        if len(value) > max_len:
            raise errors.BadRequest(f"{name} is too long")
        if pattern is not None and pattern.fullmatch(value) is None:
            raise errors.BadRequest(f"invalid {label}")
        return value

    def optional_text(self, name: str, **kwargs: Any) -> str | None:
        return None if self._raw.get(name) is None else self.text(name, **kwargs)

    def integer(self, name: str, *, low: int, high: int) -> int:
        value = self._raw.get(name)
        if value is None:
            raise errors.BadRequest(f"{name} is required")
        if not isinstance(value, int) or isinstance(value, bool):
            raise errors.BadRequest(f"{name} must be an integer")
        if not low <= value <= high:
            raise errors.BadRequest(f"{name} must be between {low} and {high}")
        return value

    def optional_integer(self, name: str, *, low: int, high: int) -> int | None:
        return None if self._raw.get(name) is None else self.integer(name, low=low, high=high)

    def optional_flag(self, name: str) -> bool:
        """A boolean that is false when absent."""
        value = self._raw.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise errors.BadRequest(f"{name} must be true or false")
        return value

    def value(self, name: str) -> Any:
        if name not in self._raw:
            raise errors.BadRequest(f"{name} is required")
        return self._raw[name]

    def clinic(self) -> str:
        return self.text("clinic", pattern=CLINIC_CODE, max_len=32, what="clinic code")

    def optional_clinic(self) -> str | None:
        return None if self._raw.get("clinic") is None else self.clinic()

    def number(self) -> int | None:
        return self.optional_integer("number", low=1, high=1_000_000)

    def patient_id(self) -> str:
        raw = self.text("patient_id", max_len=64)
        value = normalise_patient_id(raw)
        if PATIENT_ID.fullmatch(value) is None:
            raise errors.BadRequest("the ID must be 2 to 12 digits")
        return value

    def gender(self) -> str:
        value = self.text("gender", max_len=16)
        if value not in GENDERS:
            raise errors.BadRequest("gender must be male or female")
        return value

    def username(self) -> str:
        return self.text("username", pattern=USERNAME, max_len=64, what="username")

    def password(self, *, min_len: int = 1) -> str:
        value = self.text("password", max_len=MAX_TEXT)
        if len(value) < min_len:
            raise errors.BadRequest(f"password must have at least {min_len} characters")
        return value
