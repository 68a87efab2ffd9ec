"""Staff and admin accounts: the first admin at start-up, new staff, password resets.
Shared by the admin commands and the command line."""

from __future__ import annotations

import secrets

from server import auth, errors
from server.db import Conn


def generate_password() -> str:
    return secrets.token_urlsafe(12)


async def ensure_first_admin(conn: Conn, username: str,
                             password: str | None) -> str | None:
    """Create the first admin when there is none. Returns the password when it was
    generated here (the caller shows it once), else None."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM admins WHERE role = 'admin')"):
        return None
    generated = None
    if password is None:
        password = generated = generate_password()
    await conn.execute(
        """INSERT INTO admins (username, password_hash, role) VALUES ($1, $2, 'admin')
           ON CONFLICT (username) DO NOTHING""",
        username, await auth.hash_password(password))
    return generated


async def create_staff(conn: Conn, username: str, password: str,
                       clinic: str) -> dict[str, str]:
    if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM clinics WHERE code = $1 AND is_active)", clinic):
        raise errors.NotFound("unknown clinic")
    inserted = await conn.fetchval(
        """INSERT INTO admins (username, password_hash, role, clinic_code)
           VALUES ($1, $2, 'staff', $3) ON CONFLICT (username) DO NOTHING
           RETURNING username""", username, await auth.hash_password(password), clinic)
    if inserted is None:
        raise errors.Conflict("that username is taken")
    return {"username": username, "role": "staff", "clinic": clinic}


async def reset_password(conn: Conn, username: str, password: str) -> None:
    """Set a new password and end the account's open sessions."""
    row = await conn.fetchrow(
        "UPDATE admins SET password_hash = $2 WHERE username = $1 RETURNING role",
        username, await auth.hash_password(password))
    if row is None:
        raise errors.NotFound("no such account")
    await conn.execute("DELETE FROM sessions WHERE role <> 'patient' AND subject = $1", username)
