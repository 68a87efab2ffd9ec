"""The wire protocol of docs/protocol.md, version 1: parsing client frames, building server
frames (each serialised once with orjson), channel names and who may subscribe."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from server import errors
from server.args import CLINIC_CODE
from server.auth import Principal

SUBPROTOCOL = "mmc.v1"
MAX_FRAME_BYTES = 64 * 1024

# Ops the socket itself handles; every other op is a command (server/commands.py).
TRANSPORT_OPS = ("auth", "subscribe", "unsubscribe")

EVENTS = ("ENTERED", "CALLED", "RECALLED", "STARTED", "COMPLETED", "SKIPPED", "NO_SHOW",
          "CANCELLED", "ROUTE_ADVANCED", "ROUTE_COMPLETED", "PIN_ROTATED", "CLINIC_PAUSED",
          "CLINIC_RESUMED", "SETTINGS_CHANGED", "CACHE_INVALIDATED")
NOTICES = ("POSITION", "NEAR_TURN", "YOUR_TURN")

# What a waiting-room display may see of a clinic: these events, with numbers only.
PUBLIC_EVENTS = frozenset({"CALLED", "RECALLED", "ENTERED", "COMPLETED", "SKIPPED", "NO_SHOW",
                           "CANCELLED", "CLINIC_PAUSED", "CLINIC_RESUMED"})
STAFF_EVENTS = PUBLIC_EVENTS | {"PIN_ROTATED"}
# Per-patient events that have no clinic of their own to be filed under.
ROUTE_EVENTS = frozenset({"ROUTE_ADVANCED", "ROUTE_COMPLETED"})


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    POLICY = 1008          # rate limit exceeded for too long, idle unauthenticated
    TOO_BIG = 1009         # a frame over MAX_FRAME_BYTES (uvicorn closes it)
    RESTART = 1012         # graceful shutdown (uvicorn closes it)
    TRY_AGAIN_LATER = 1013  # the client did not drain its send queue


ChannelKind = Literal["clinic", "staff", "me", "admin"]


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel as subscribed: `name` is what the client sees, `key` is unique per
    audience inside a process (each patient's `me` is a different key)."""

    kind: ChannelKind
    name: str
    key: str
    clinic: str | None = None
    patient: str | None = None


def parse_channel(name: Any, principal: Principal) -> Channel:
    """The channel `name` for this principal, or the error that refuses it."""
    if not isinstance(name, str) or len(name) > 64:
        raise errors.BadRequest("channel must be a string")
    if name == "me":
        if principal.role != "patient" or principal.subject is None:
            raise errors.Forbidden("only a logged-in patient has `me`") \
                if not principal.is_anonymous else errors.Unauthorized()
        return Channel("me", "me", f"me:{principal.subject}", patient=principal.subject)
    if name == "admin":
        if principal.role != "admin":
            raise errors.Unauthorized() if principal.is_anonymous else errors.Forbidden()
        return Channel("admin", "admin", "admin")
    parts = name.split(":")
    if parts[0] != "clinic" or len(parts) not in (2, 3) or \
            CLINIC_CODE.fullmatch(parts[1]) is None:
        raise errors.NotFound("unknown channel")
    clinic = parts[1]
    if len(parts) == 2:
        return Channel("clinic", name, name, clinic=clinic)
    if parts[2] != "staff":
        raise errors.NotFound("unknown channel")
    allowed = principal.role == "admin" or (
        principal.role == "staff" and principal.clinic == clinic)
    if not allowed:
        raise errors.Unauthorized() if principal.is_anonymous else \
            errors.Forbidden("not your clinic")
    return Channel("staff", name, name, clinic=clinic)


@dataclass(frozen=True, slots=True)
class Request:
    id: int | None
    op: str
    args: Any


def request_id(raw: Any) -> int | None:
    """The client's id when it is one we can echo (an integer), else None."""
    if isinstance(raw, int) and not isinstance(raw, bool) and -(2**53) < raw < 2**53:
        return raw
    return None


def parse_request(text: str) -> Request:
    """A text frame as a request; raises BadRequest carrying the id when one was read
    (see `BadFrame`)."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadFrame(None, "a frame must be a JSON object") from None
    if not isinstance(frame, dict):
        raise BadFrame(None, "a frame must be a JSON object")
    rid = request_id(frame.get("id"))
    if "id" in frame and rid is None:
        raise BadFrame(None, "id must be an integer")
    op = frame.get("op")
    if not isinstance(op, str) or not op:
        raise BadFrame(rid, "op is required")
    args = frame.get("args")
    if args is not None and not isinstance(args, dict):
        raise BadFrame(rid, "args must be an object")
    return Request(rid, op, args)


class BadFrame(errors.BadRequest):
    """A frame we could not read as a request; `request_id` is echoed when known."""

    def __init__(self, rid: int | None, message: str) -> None:
        super().__init__(message)
        self.request_id = rid


# --- server -> client frames: built once, sent as the same text to every reader ------

def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def reply(rid: int | None, result: Any) -> str:
    return dumps({"id": rid, "ok": True, "result": result})


def error(rid: int | None, exc: errors.MMCError) -> str:
    return dumps(exc.envelope(rid))


def event(channel: str, seq: int, event_type: str, data: dict[str, Any],
          at: datetime) -> str:
    return dumps({"type": "event", "channel": channel, "seq": seq, "event": event_type,
                  "data": data, "at": at.isoformat()})


def snapshot(channel: str, seq: int, state: Any, *, reset: bool) -> str:
    return dumps({"type": "snapshot", "channel": channel, "seq": seq, "state": state,
                  "reset": reset})


def notice(kind: str, data: dict[str, Any]) -> str:
    return dumps({"type": "notice", "channel": "me", "notice": kind, "data": data})


def invalidate(keys: list[str]) -> str:
    return dumps({"type": "invalidate", "keys": keys})
