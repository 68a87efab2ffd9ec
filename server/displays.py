"""Waiting-room display presence: `display.hello` into the displays table (one list for
every process), the admin's view of it, and IDENTIFY sent to a display's own socket."""

from __future__ import annotations

import re
from typing import Any

import orjson
import structlog

from server import errors, protocol
from server.args import CLINIC_CODE, Args
from server.auth import Principal
from server.commands import ADMIN, ANYONE, Result, operation
from server.db import Database
from server.metrics import Metrics
from server.outbox import Outbox

log = structlog.get_logger(__name__)

MAX_DISPLAYS = 500        # rows kept; a new display pushes out the longest unseen
MAX_CLINICS = 6           # what one screen shows without scrolling
ALIVE_SECONDS = 45        # three hellos missed (one every 15 s): no longer connected
IDENTIFY_SECONDS = 10
IDENTIFY = "identify"     # the hub's control kind (server/hub.py on_control)
VOICES = ("server", "browser", "none")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Names are shown to admins and in metric labels: printable text, no control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def display_name(args: Args) -> str:
    name = args.text("name", max_len=64).strip()
    if not name or _CONTROL.search(name):
        raise errors.BadRequest("name must be 1-64 printable characters")
    return name


def display_clinics(args: Args) -> list[str]:
    clinics = args.value("clinics")
    if not isinstance(clinics, list) or not 1 <= len(clinics) <= MAX_CLINICS:
        raise errors.BadRequest(f"clinics must be a list of 1 to {MAX_CLINICS} clinic codes")
    if not all(isinstance(c, str) and CLINIC_CODE.fullmatch(c) for c in clinics):
        raise errors.BadRequest("invalid clinic code")
    if len(set(clinics)) != len(clinics):
        raise errors.BadRequest("a clinic is listed twice")
    return clinics


def display_id(args: Args, *, required: bool) -> str | None:
    value = args.optional_text("display_id", pattern=UUID, max_len=36, what="display id")
    if value is None and required:
        raise errors.BadRequest("display_id is required")
    return value


@operation("display.hello", ANYONE)
async def hello(db: Database, principal: Principal, args: Args) -> Result:
    name, clinics = display_name(args), display_clinics(args)
    sound = args.value("sound")
    if not isinstance(sound, bool):
        raise errors.BadRequest("sound must be true or false")
    voice = args.text("voice", max_len=8)
    if voice not in VOICES:
        raise errors.BadRequest("voice must be server, browser or none")
    last = args.optional_integer("last_announced", low=0, high=2**62)
    known = display_id(args, required=False)
    new_id = await db.call("SELECT mmc_display_hello($1, $2, $3, $4, $5, $6, $7, $8)",
                           known, name, clinics, sound, voice, last, db.now(), MAX_DISPLAYS)
    return {"display_id": str(new_id)}


@operation("admin.displays", ADMIN)
async def list_displays(db: Database, principal: Principal, args: Args) -> Result:
    return {"displays": await db.call("SELECT mmc_displays($1, $2)", db.now(), ALIVE_SECONDS)}


@operation("admin.display.identify", ADMIN)
async def identify(db: Database, principal: Principal, args: Args) -> Result:
    target = display_id(args, required=True)
    signal = {"kind": IDENTIFY, "display_id": target, "seconds": IDENTIFY_SECONDS}
    async with db.transaction() as conn:
        name = await conn.fetchval("SELECT name FROM displays WHERE id = $1", target)
        if name is None:
            raise errors.NotFound("unknown display")
        signal["name"] = name
        await conn.execute("SELECT pg_notify('mmc_control', $1)",
                           orjson.dumps(signal).decode())
    return {}


class Presence:
    """The displays connected to this process, by display id, so an IDENTIFY signal
    (sent to every process) reaches the socket that holds the display."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._outboxes: dict[str, set[Outbox]] = {}

    def attach(self, display: str, outbox: Outbox) -> None:
        self._outboxes.setdefault(display, set()).add(outbox)

    def forget(self, display: str, outbox: Outbox) -> bool:
        """Drop `outbox` from `display`; True when no socket holds the display now."""
        held = self._outboxes.get(display)
        if held is None:
            return True
        held.discard(outbox)
        if held:
            return False
        del self._outboxes[display]
        return True

    async def detach(self, display: str, outbox: Outbox) -> None:
        """The socket closed: the display is gone unless another socket still holds it."""
        if not self.forget(display, outbox):
            return
        try:
            await self.db.call("UPDATE displays SET connected = false WHERE id = $1", display)
        except errors.MMCError:
            log.info("displays.detach_unrecorded")  # the hello age still ends it

    def on_identify(self, signal: dict[str, Any]) -> None:
        target = signal.get("display_id")
        if not isinstance(target, str):
            return
        frame = protocol.dumps({"type": "notice", "channel": "display", "notice": "IDENTIFY",
                                "data": {"display_id": target, "name": signal.get("name"),
                                         "seconds": signal.get("seconds", IDENTIFY_SECONDS)}})
        for outbox in self._outboxes.get(target, ()):
            outbox.offer(frame)


async def refresh_metrics(db: Database, metrics: Metrics) -> None:
    """`displays_connected` and each display's seconds since its last hello."""
    displays = await db.call("SELECT mmc_displays($1, $2)", db.now(), ALIVE_SECONDS)
    metrics.display_last_seen.clear()
    for display in displays:
        metrics.display_last_seen.labels(display=display["name"],
                                         id=display["display_id"]).set(
            display["silent_seconds"])
    metrics.displays_connected.set(sum(1 for d in displays if d["connected"]))
