"""Who is asking: principals, opaque session tokens (stored only as SHA-256, with an
expiry), and argon2 password hashes for staff and admin accounts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server import errors
from server.db import Conn, Database

Role = Literal["anonymous", "patient", "staff", "admin", "reception"]

SESSION_LIFETIME: dict[str, timedelta] = {
    "patient": timedelta(hours=24),
    "staff": timedelta(hours=12),
    "admin": timedelta(hours=12),
    "reception": timedelta(hours=12),
}
# A stream ticket (stream.ticket) is good for one events-stream request this soon.
TICKET_LIFETIME = timedelta(seconds=30)

# OWASP's argon2id recommendation (m=19 MiB, t=2, p=1): about a tenth of argon2-cffi's
# default (64 MiB, four lanes), which made one login flood take both cores from the
# commands of signed-in staff. Hashes made with other parameters are rehashed at the
# next successful login (`needs_rehash`).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the username is unknown, so both paths cost the same.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject: str | None = None
    clinic: str | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.role == "anonymous"

    def public(self) -> dict[str, str | None]:
        result: dict[str, str | None] = {"role": self.role, "subject": self.subject}
        if self.clinic is not None:
            result["clinic"] = self.clinic
        return result


ANONYMOUS = Principal("anonymous")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_session(conn: Conn, principal: Principal,
                         now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO sessions (token_hash, role, subject, clinic_code, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        token_hash(token), principal.role, principal.subject, principal.clinic,
        now + SESSION_LIFETIME[principal.role])
    return token


async def resolve(conn: Conn, token: str, now: datetime) -> Principal:
    if not token or len(token) > 256:
        raise errors.Unauthorized("invalid or expired token")
    return await resolve_hash(conn, token_hash(token), now)


async def resolve_hash(conn: Conn, hashed: bytes, now: datetime) -> Principal:
    """The session stored under `hashed`; an account's session holds only while the
    account is active (schema/013 also ends it when the account is disabled)."""
    row = await conn.fetchrow(
        """SELECT s.role, s.subject, s.clinic_code FROM sessions s
            WHERE s.token_hash = $1 AND s.expires_at > $2
              AND (s.role = 'patient' OR NOT EXISTS (
                   SELECT 1 FROM admins a WHERE a.username = s.subject AND NOT a.is_active))""",
        hashed, now)
    if row is None:
        raise errors.Unauthorized("invalid or expired token")
    return Principal(row["role"], row["subject"], row["clinic_code"])


async def issue_ticket(conn: Conn, session_hash: bytes, channel: str, now: datetime) -> str:
    """A single-use ticket standing for the session stored under `session_hash`, on
    one channel."""
    await conn.execute("DELETE FROM stream_tickets WHERE expires_at <= $1", now)
    ticket = secrets.token_urlsafe(24)
    await conn.execute(
        """INSERT INTO stream_tickets (ticket_hash, session_hash, channel, expires_at)
           VALUES ($1, $2, $3, $4)""",
        token_hash(ticket), session_hash, channel, now + TICKET_LIFETIME)
    return ticket


async def redeem_ticket(conn: Conn, ticket: str, now: datetime) -> tuple[Principal, bytes, str]:
    """Spend a ticket: (the principal, its session's token hash, the channel)."""
    if not ticket or len(ticket) > 64:
        raise errors.Unauthorized("invalid or expired ticket")
    row = await conn.fetchrow(
        """DELETE FROM stream_tickets WHERE ticket_hash = $1
           RETURNING session_hash, channel, expires_at""", token_hash(ticket))
    if row is None or row["expires_at"] <= now:
        raise errors.Unauthorized("invalid or expired ticket")
    principal = await resolve_hash(conn, row["session_hash"], now)
    return principal, row["session_hash"], row["channel"]


async def authenticate(db: Database, token: str) -> Principal:
    """`resolve` in a transaction of its own, at the database's clock."""
    async with db.transaction() as conn:
        return await resolve(conn, token, db.now())


async def revoke(conn: Conn, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash(token))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow; keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


# One argon2 verification at a time per process, and a login waits at most
# VERIFY_WAIT seconds for its turn: past that it is answered `unavailable` with
# `retry_after` instead of queueing, so a login flood can neither take every core from
# the commands of signed-in staff nor pile up work that outlives it.
VERIFY_SLOTS = 1
VERIFY_WAIT = 1.0
VERIFY_RETRY_AFTER = 2
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _verify_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        for old in [k for k in _slots if k.is_closed()]:
            del _slots[old]
        slots = _slots[loop] = asyncio.Semaphore(VERIFY_SLOTS)
    return slots


def needs_rehash(stored_hash: str) -> bool:
    """True for a hash made with other parameters than today's (older, heavier ones)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    slots = _verify_slots()
    try:
        async with asyncio.timeout(VERIFY_WAIT):
            await slots.acquire()
    except TimeoutError:
        raise errors.Unavailable("too many logins at once; retry shortly",
                                 retry_after=VERIFY_RETRY_AFTER) from None
    # The slot is given back when the verification ends, not when a caller that went
    # away stops waiting for it: a thread cannot be cancelled.
    verification = asyncio.ensure_future(asyncio.to_thread(check))
    verification.add_done_callback(lambda _: slots.release())
    return await asyncio.shield(verification)
