"""Open sockets and streams by the session they act for, so that a session that ends
(logout, password reset, disabled account, expiry) ends on every server process at once.

The database announces each deleted session on `mmc_control` (schema/013: kind
`session.revoked`, the hex SHA-256 of each token); every process's hub hands the signal
here and the holders of those sessions are ended in the same loop turn. Signals sent
while the hub was away are lost, so after a reconnect every held session is looked up
again and those that no longer hold are ended too.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from server.db import Database
from server.hub import RECONNECTED, Hub

log = structlog.get_logger(__name__)

REVOKED = "session.revoked"
End = Callable[[], None]
# Revoked sessions remembered for a late holder: a socket that read its session just
# before it was deleted may start holding it just after the signal came.
RECENT = 10_000

STILL_VALID = """
    SELECT encode(s.token_hash, 'hex') FROM sessions s
     WHERE s.token_hash = ANY($1::bytea[]) AND s.expires_at > $2
       AND (s.role = 'patient' OR NOT EXISTS (
            SELECT 1 FROM admins a WHERE a.username = s.subject AND NOT a.is_active))"""


class SessionRegistry:
    """Per process: token hash (hex) -> the `end` callbacks of whoever acts for it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.revoked = 0  # holders ended, for tests and logs
        self._held: dict[str, set[End]] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()

    def attach(self, hub: Hub) -> None:
        hub.on_control(REVOKED, self._on_revoked)
        hub.on_control(RECONNECTED, self._on_reconnected)

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, hashed: bytes, end: End) -> End:
        """Call `end()` when the session stored under `hashed` ends; returns the
        release to call when the holder goes first."""
        key = hashed.hex()
        self._held.setdefault(key, set()).add(end)
        if key in self._recent:
            # Ended already: end this holder too, once it has finished taking hold.
            asyncio.get_running_loop().call_soon(self.end, key)

        def release() -> None:
            holders = self._held.get(key)
            if holders is not None:
                holders.discard(end)
                if not holders:
                    del self._held[key]

        return release

    def end(self, key: str) -> None:
        for end in self._held.pop(key, ()):
            self.revoked += 1
            try:
                end()
            except Exception:
                log.exception("sessions.end_failed")

    def _on_revoked(self, payload: dict[str, Any]) -> None:
        tokens = payload.get("tokens")
        if not isinstance(tokens, list):
            return
        for token in tokens:
            if not isinstance(token, str):
                continue
            self._recent[token] = None
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            if token in self._held:
                self.end(token)

    def _on_reconnected(self, payload: dict[str, Any]) -> None:
        task = asyncio.create_task(self.recheck())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def recheck(self) -> None:
        """End every held session the database no longer knows (signals were lost)."""
        keys = list(self._held)
        if not keys:
            return
        try:
            rows = await self.db.pool.fetch(STILL_VALID, [bytes.fromhex(k) for k in keys],
                                            self.db.now())
        except Exception as exc:
            log.warning("sessions.recheck_failed", error=type(exc).__name__)
            return
        valid = {r[0] for r in rows}
        for key in keys:
            if key not in valid:
                self.end(key)

    async def close(self) -> None:
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
