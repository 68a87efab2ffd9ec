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

Role = Literal["anonymous", "patient", "staff", "admin"]

SESSION_LIFETIME: dict[str, timedelta] = {
    "patient": timedelta(hours=24),
    "staff": timedelta(hours=12),
    "admin": timedelta(hours=12),
}

_hasher = PasswordHasher()
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
    row = await conn.fetchrow(
        """SELECT role, subject, clinic_code FROM sessions
            WHERE token_hash = $1 AND expires_at > $2""",
        token_hash(token), now)
    if row is None:
        raise errors.Unauthorized("invalid or expired token")
    return Principal(row["role"], row["subject"], row["clinic_code"])


async def authenticate(db: Database, token: str) -> Principal:
    """`resolve` in a transaction of its own, at the database's clock."""
    async with db.transaction() as conn:
        return await resolve(conn, token, db.now())


async def revoke(conn: Conn, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash(token))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow; keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
