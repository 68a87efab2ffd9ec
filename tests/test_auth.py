"""Logins, session tokens with expiry, argon2 passwords, roles."""

from __future__ import annotations

import pytest

from server import accounts, auth, commands, errors
from tests.people import ADMIN, ANON, run


async def resolve(db, token: str):
    async with db.pool.acquire() as conn:
        return await auth.resolve(conn, token, db.now())


async def make_staff(db, username: str = "nurse_eyes", clinic: str = "eyes") -> str:
    password = "correct horse battery"
    await run(db, ADMIN, "admin.staff.create",
              {"username": username, "password": password, "clinic": clinic})
    return password


async def test_patient_login_normalises_arabic_indic_digits(db):
    """٠١٢٣٤٥٦٧ logs in as 01234567; the token resolves to that patient."""
    result = await run(db, ANON, "patient.login", {"patient_id": "٠١٢٣٤٥٦٧", "gender": "male"})
    assert result["patient"]["patient_id"] == "01234567"
    principal = await resolve(db, result["token"])
    assert (principal.role, principal.subject) == ("patient", "01234567")


async def test_patient_gender_is_fixed_at_first_login(db):
    """The same ID with the other gender is refused."""
    await run(db, ANON, "patient.login", {"patient_id": "1234", "gender": "male"})
    with pytest.raises(errors.Unauthorized):
        await run(db, ANON, "patient.login", {"patient_id": "1234", "gender": "female"})


async def test_tokens_are_stored_hashed(db):
    """The sessions table never holds a token."""
    token = (await run(db, ANON, "patient.login", {"patient_id": "5555", "gender": "male"}))[
        "token"]
    async with db.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT token_hash FROM sessions")
    assert stored == auth.token_hash(token)
    assert token.encode() not in stored


async def test_patient_tokens_expire_after_24_hours(db, clock):
    """A patient token works at 23:59 h and not at 24:00 h."""
    token = (await run(db, ANON, "patient.login", {"patient_id": "6666", "gender": "male"}))[
        "token"]
    clock.advance(24 * 3600 - 60)
    assert (await resolve(db, token)).subject == "6666"
    clock.advance(60)
    with pytest.raises(errors.Unauthorized):
        await resolve(db, token)


async def test_staff_login_with_argon2_and_12_hour_expiry(db, clock):
    """Staff log in with their password (argon2 stored), tokens last 12 hours."""
    password = await make_staff(db)
    async with db.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT password_hash FROM admins WHERE username = 'nurse_eyes'")
    assert stored.startswith("$argon2id$") and password not in stored
    result = await run(db, ANON, "staff.login", {"username": "nurse_eyes", "password": password})
    assert (result["role"], result["clinic"]) == ("staff", "eyes")
    principal = commands.principal_from_login(result)
    assert principal == await resolve(db, result["token"])
    clock.advance(12 * 3600)
    with pytest.raises(errors.Unauthorized):
        await resolve(db, result["token"])


async def test_wrong_password_and_unknown_user_look_the_same(db):
    """Both are `unauthorized` with the same message."""
    await make_staff(db)
    messages = set()
    for username, password in (("nurse_eyes", "wrong password"), ("nobody", "whatever")):
        with pytest.raises(errors.Unauthorized) as caught:
            await run(db, ANON, "staff.login", {"username": username, "password": password})
        messages.add(caught.value.message)
    assert len(messages) == 1


async def test_admin_login_refuses_staff_accounts(db):
    """admin.login is for admin accounts only."""
    password = await make_staff(db)
    with pytest.raises(errors.Forbidden):
        await run(db, ANON, "admin.login", {"username": "nurse_eyes", "password": password})


async def test_first_admin_is_created_once_with_a_generated_password(db):
    """With no admin, one is created; the generated password logs in; then no more."""
    async with db.pool.acquire() as conn:
        generated = await accounts.ensure_first_admin(conn, "chief", None)
        assert generated
        assert await accounts.ensure_first_admin(conn, "chief", None) is None
    result = await run(db, ANON, "admin.login", {"username": "chief", "password": generated})
    assert result["role"] == "admin"


async def test_reset_password_closes_open_sessions(db):
    """After a reset the old token is refused and the new password works."""
    password = await make_staff(db)
    token = (await run(db, ANON, "staff.login",
                       {"username": "nurse_eyes", "password": password}))["token"]
    async with db.pool.acquire() as conn:
        await accounts.reset_password(conn, "nurse_eyes", "a brand new secret")
    with pytest.raises(errors.Unauthorized):
        await resolve(db, token)
    await run(db, ANON, "staff.login", {"username": "nurse_eyes",
                                        "password": "a brand new secret"})


async def test_duplicate_staff_username_is_a_conflict(db):
    """Creating the same username twice is refused."""
    await make_staff(db)
    with pytest.raises(errors.Conflict):
        await make_staff(db)


async def test_roles_gate_operations(db):
    """Anonymous callers are unauthorized; a patient cannot call; staff cannot admin."""
    with pytest.raises(errors.Unauthorized):
        await run(db, ANON, "queue.call", {"clinic": "eyes"})
    patient = commands.principal_from_login(
        await run(db, ANON, "patient.login", {"patient_id": "7777", "gender": "male"}))
    with pytest.raises(errors.Forbidden):
        await run(db, patient, "queue.call", {"clinic": "eyes"})
    staff = auth.Principal("staff", "s", "eyes")
    for op in ("stats.dashboard", "admin.settings.get", "admin.clinic.pause"):
        with pytest.raises(errors.Forbidden):
            await run(db, staff, op, {"clinic": "eyes"})


async def test_login_attempts_are_limited_per_account_in_postgres(db, clock):
    """The 11th login attempt on one account inside 5 minutes is rate_limited with
    retry_after, even with the right password; the next window allows it again."""
    password = await make_staff(db)
    for _ in range(10):
        with pytest.raises(errors.Unauthorized):
            await run(db, ANON, "staff.login", {"username": "nurse_eyes", "password": "nope"})
    with pytest.raises(errors.RateLimited) as caught:
        await run(db, ANON, "staff.login", {"username": "nurse_eyes", "password": password})
    assert 0 < caught.value.retry_after <= 300
    # Another account is unaffected.
    with pytest.raises(errors.Unauthorized):
        await run(db, ANON, "staff.login", {"username": "someone_else", "password": "x"})
    clock.advance(300)
    result = await run(db, ANON, "staff.login", {"username": "nurse_eyes", "password": password})
    assert result["role"] == "staff"
