"""Staff, reception and admin accounts: the first admin at start-up, new accounts,
listing, disabling and password resets; and the one-time login codes of reception's
slips. Shared by the admin commands and the command line."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from server import auth, errors
from server.args import normalise_patient_id
from server.db import Conn

MIN_PASSWORD = 8          # staff and reception accounts made by an admin
MIN_ADMIN_PASSWORD = 12   # ADMIN_PASSWORD, the first admin's
# A slip's code: 8 characters of an alphabet without look-alikes (0/O, 1/I/L): 40 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_MISMATCH = "ID, gender or code do not match"


def generate_password() -> str:
    return secrets.token_urlsafe(12)


FIRST_PASSWORD_FILE = "first-admin-password"


def write_first_password(data_dir: Path, username: str, password: str) -> Path:
    """Keep a generated first password in a file only its owner can read (never in a
    log stream, which is shipped and kept); returns where it is."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FIRST_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had wider rights
        os.write(fd, f"{username}\n{password}\n".encode())
    finally:
        os.close(fd)
    return path.resolve()


def login_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def login_code_hash(code: str) -> bytes | None:
    """The stored form of a code as typed (any case, spaces or dashes, Arabic-Indic
    digits); None when it cannot be one."""
    cleaned = normalise_patient_id(code).replace("-", "").replace(" ", "").upper()
    if len(cleaned) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in cleaned):
        return None
    return hashlib.sha256(cleaned.encode()).digest()


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


async def create_reception(conn: Conn, username: str, password: str) -> dict[str, str]:
    inserted = await conn.fetchval(
        """INSERT INTO admins (username, password_hash, role)
           VALUES ($1, $2, 'reception') ON CONFLICT (username) DO NOTHING
           RETURNING username""", username, await auth.hash_password(password))
    if inserted is None:
        raise errors.Conflict("that username is taken")
    return {"username": username, "role": "reception"}


def _view(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"username": row["username"], "role": row["role"],
                           "is_active": row["is_active"],
                           "created_at": row["created_at"].isoformat()}
    if row["clinic_code"] is not None:
        out["clinic"] = row["clinic_code"]
    return out


ACCOUNT_COLUMNS = "username, role, clinic_code, is_active, created_at"


async def list_accounts(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {ACCOUNT_COLUMNS} FROM admins ORDER BY role, username")
    return [_view(r) for r in rows]


async def account(conn: Conn, username: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM admins WHERE username = $1",
                              username)
    if row is None:
        raise errors.NotFound("no such account")
    return _view(row)


async def set_active(conn: Conn, username: str, active: bool) -> dict[str, Any]:
    """Disable or enable an account; disabling ends its sessions on every process
    (schema/013's trigger deletes them, and each deletion is signalled)."""
    row = await conn.fetchrow(
        f"""UPDATE admins SET is_active = $2 WHERE username = $1
            RETURNING {ACCOUNT_COLUMNS}""", username, active)
    if row is None:
        raise errors.NotFound("no such account")
    if not active and row["role"] == "admin" and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM admins WHERE role = 'admin' AND is_active)"):
        raise errors.Conflict("the last active admin cannot be disabled")
    return _view(row)


async def reset_password(conn: Conn, username: str, password: str) -> None:
    """Set a new password and end the account's open sessions."""
    row = await conn.fetchrow(
        "UPDATE admins SET password_hash = $2 WHERE username = $1 RETURNING role",
        username, await auth.hash_password(password))
    if row is None:
        raise errors.NotFound("no such account")
    await conn.execute("DELETE FROM sessions WHERE role <> 'patient' AND subject = $1", username)
