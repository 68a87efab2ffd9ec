"""Every operation of docs/protocol.md as one async function `(db, principal, args)`, each
one transaction. Transports authenticate, parse and call `execute`; the rules live
here and in schema/, once. Nothing here knows about sockets or the hub: the database's
NOTIFY is the only road from a command to subscribers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from server import accounts, auth, errors, protocol, reports, settings
from server.args import EXAM_TYPE, PIN, Args, normalise_patient_id
from server.auth import Principal
from server.db import Database

Result = dict[str, Any]
Handler = Callable[[Database, Principal, Args], Awaitable[Result]]

ANYONE = frozenset({"anonymous", "patient", "staff", "admin", "reception"})
PATIENT = frozenset({"patient"})
STAFF = frozenset({"staff", "admin"})
ADMIN = frozenset({"admin"})
RECEPTION = frozenset({"reception", "admin"})
EVERYONE_SIGNED_IN = frozenset({"patient", "staff", "admin"})


@dataclass(frozen=True)
class Caller:
    """Where a command came from: the client's address (login failures are counted per
    account and address) and the hash of the session token it acts with, if any."""

    address: str = "unknown"
    token_hash: bytes | None = None


_caller: ContextVar[Caller | None] = ContextVar("caller", default=None)


def caller() -> Caller:
    return _caller.get() or Caller()


@dataclass(frozen=True)
class Operation:
    name: str
    roles: frozenset[str]
    handler: Handler


OPERATIONS: dict[str, Operation] = {}
LOGIN_OPERATIONS = frozenset({"patient.login", "staff.login", "admin.login"})

# Failed logins of one account from one address in a fixed window, counted in Postgres
# so the limit holds across every server process: (limit, window seconds). Only
# failures count, and a success clears them; each address also has a ceiling across
# all accounts (the `login_address_limit` setting), so nobody can lock another out.
LOGIN_LIMIT = (10, 300)
PATIENT_LOGIN_LIMIT = (10, 300)


def operation(name: str, roles: frozenset[str]) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS[name] = Operation(name, roles, handler)
        return handler

    return register


async def execute(db: Database, principal: Principal, op: str, raw_args: Any, *,
                  client: str = "unknown", token: bytes | None = None) -> Result:
    """Authorise and run one operation; raises errors.MMCError. `client` is the
    caller's address, `token` the hash of the session token it acts with."""
    found = OPERATIONS.get(op)
    if found is None:
        raise errors.BadRequest("unknown op")
    outcome = "ok"
    reset = _caller.set(Caller(client, token))
    try:
        if principal.role not in found.roles:
            raise errors.Unauthorized() if principal.is_anonymous else errors.Forbidden()
        return await found.handler(db, principal, Args(raw_args))
    except errors.MMCError as exc:
        outcome = exc.code
        raise
    finally:
        _caller.reset(reset)
        db.metrics.commands.labels(op=op, outcome=outcome).inc()


def principal_from_login(result: Result) -> Principal:
    """The identity a successful login op established (transports bind it)."""
    if "patient" in result:
        return Principal("patient", result["patient"]["patient_id"])
    return Principal(result["role"], result["username"], result.get("clinic"))


def staff_clinic(principal: Principal, args: Args) -> str:
    """The clinic a staff/admin command acts on: staff only ever their own."""
    if principal.role == "staff":
        clinic = args.optional_clinic() or principal.clinic
        if clinic != principal.clinic:
            raise errors.Forbidden("not your clinic")
        assert clinic is not None
        return clinic
    return args.clinic()


# --- sessions -------------------------------------------------------------------------

@operation("ping", ANYONE)
async def ping(db: Database, principal: Principal, args: Args) -> Result:
    return {}


async def count_attempt(db: Database, client: str, endpoint: str,
                        limit: tuple[int, int]) -> None:
    """Refuse with `rate_limited` once `client` is over `limit` on `endpoint`."""
    retry_after = await db.call("SELECT mmc_rate_hit($1, $2, $3, $4, $5)",
                                client, endpoint, limit[0], limit[1], db.now())
    if retry_after:
        raise errors.RateLimited("too many attempts; try again later", retry_after=retry_after)


class LoginGate:
    """Failed logins of one account (or patient ID) from the caller's address."""

    def __init__(self, db: Database, account: str, limit: tuple[int, int]) -> None:
        address = caller().address
        self.db = db
        self.key = f"{account}@{address}"
        self.address = f"address:{address}"
        self.limit = limit

    async def check(self) -> None:
        retry_after = await self.db.call("SELECT mmc_login_gate($1, $2, $3, $4, $5)",
                                         self.key, self.address, self.limit[0],
                                         self.limit[1], self.db.now())
        if retry_after:
            raise errors.RateLimited("too many failed attempts; try again later",
                                     retry_after=retry_after)

    async def failed(self) -> None:
        await self.db.call("SELECT mmc_login_failed($1, $2, $3, $4)", self.key,
                           self.address, self.limit[1], self.db.now())

    async def succeeded(self) -> None:
        await self.db.call("SELECT mmc_login_succeeded($1)", self.key)


async def registration_mode(db: Database) -> str:
    mode = await db.call("SELECT value #>> '{}' FROM settings WHERE key = 'patient_registration'")
    return "registered" if mode == "registered" else "open"


@operation("patient.login", ANYONE)
async def patient_login(db: Database, principal: Principal, args: Args) -> Result:
    patient_id, gender = args.patient_id(), args.gender()
    code = args.optional_text("login_code", max_len=32)
    gate = LoginGate(db, f"patient:{patient_id}", PATIENT_LOGIN_LIMIT)
    await gate.check()
    registered = await registration_mode(db) == "registered"
    now = db.now()
    try:
        async with db.transaction() as conn:
            if code is not None or registered:
                # With a code (or when only registered examinees may log in) a wrong ID,
                # a wrong gender and a wrong code all get the same answer.
                code_hash = accounts.login_code_hash(code) if code is not None else None
                if code_hash is None:
                    raise errors.Unauthorized(accounts.CODE_MISMATCH)
                patient = await conn.fetchval("SELECT mmc_patient_login_code($1, $2, $3, $4)",
                                              patient_id, gender, code_hash, now)
            else:
                patient = await conn.fetchval("SELECT mmc_patient_login($1, $2, $3)",
                                              patient_id, gender, now)
            token = await auth.create_session(conn, Principal("patient", patient_id), now)
    except errors.Unauthorized:
        await gate.failed()
        raise
    await gate.succeeded()
    return {"token": token, "patient": patient}


async def _account_login(db: Database, args: Args, *, admin_only: bool) -> Result:
    username, password = args.username(), args.password()
    gate = LoginGate(db, f"account:{username}", LOGIN_LIMIT)
    await gate.check()
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """SELECT username, password_hash, role, clinic_code FROM admins
                WHERE username = $1 AND is_active""", username)
    valid = await auth.verify_password(row["password_hash"] if row else None, password)
    if row is None or not valid:
        await gate.failed()
        raise errors.Unauthorized("wrong username or password")
    await gate.succeeded()
    if auth.needs_rehash(row["password_hash"]):
        # Made with older, heavier parameters: stored again with today's.
        await db.call("""UPDATE admins SET password_hash = $2
                          WHERE username = $1 AND password_hash = $3""",
                      row["username"], await auth.hash_password(password), row["password_hash"])
    if admin_only and row["role"] != "admin":
        raise errors.Forbidden("not an admin account")
    principal = Principal(row["role"], row["username"], row["clinic_code"])
    async with db.transaction() as conn:
        token = await auth.create_session(conn, principal, db.now())
    result: Result = {"token": token, "role": principal.role, "username": principal.subject}
    if principal.clinic is not None:
        result["clinic"] = principal.clinic
    return result


@operation("staff.login", ANYONE)
async def staff_login(db: Database, principal: Principal, args: Args) -> Result:
    return await _account_login(db, args, admin_only=False)


@operation("admin.login", ANYONE)
async def admin_login(db: Database, principal: Principal, args: Args) -> Result:
    return await _account_login(db, args, admin_only=True)


# --- routes and queues (patients) ------------------------------------------------------

@operation("route.create", PATIENT)
async def route_create(db: Database, principal: Principal, args: Args) -> Result:
    exam_type = args.text("exam_type", pattern=EXAM_TYPE, max_len=32, what="exam type")
    result: Result = await db.call("SELECT mmc_route_create($1, $2, $3)",
                                   principal.subject, exam_type, db.now())
    return result


@operation("route.get", PATIENT)
async def route_get(db: Database, principal: Principal, args: Args) -> Result:
    result: Result = await db.call("SELECT mmc_route_get($1, $2)", principal.subject, db.now())
    return result


@operation("path.choose", PATIENT)
async def path_choose(db: Database, principal: Principal, args: Args) -> Result:
    result: Result = await db.call("SELECT mmc_path_choose($1, $2)", principal.subject, db.now())
    return result


@operation("queue.enter", PATIENT)
async def queue_enter(db: Database, principal: Principal, args: Args) -> Result:
    clinic = args.clinic()
    result: Result = await db.call("SELECT mmc_queue_enter($1, $2, $3)",
                                   principal.subject, clinic, db.now())
    return result


@operation("queue.status", EVERYONE_SIGNED_IN)
async def queue_status(db: Database, principal: Principal, args: Args) -> Result:
    if principal.role == "patient":
        result: Result = await db.call("SELECT mmc_patient_status($1, $2)",
                                       principal.subject, db.now())
    else:
        result = await db.call("SELECT mmc_clinic_status($1, $2)",
                               staff_clinic(principal, args), db.now())
    return result


@operation("pin.submit", PATIENT)
async def pin_submit(db: Database, principal: Principal, args: Args) -> Result:
    clinic = args.clinic()
    pin = normalise_patient_id(args.text("pin", max_len=8))
    if PIN.fullmatch(pin) is None:
        raise errors.BadRequest("a PIN is two digits")
    result: Result = await db.call("SELECT mmc_pin_submit($1, $2, $3, $4)",
                                   principal.subject, clinic, pin, db.now())
    # The wrong try is committed (it counts toward the lockout) before we refuse.
    if result.get("error") == "wrong_pin":
        raise errors.WrongPin()
    return result


# --- clinic staff ----------------------------------------------------------------------

@operation("queue.call", STAFF)
async def queue_call(db: Database, principal: Principal, args: Args) -> Result:
    result: Result = await db.call("SELECT mmc_call_next($1, $2)",
                                   staff_clinic(principal, args), db.now())
    return result


def _entry_action(action: str) -> Handler:
    async def handler(db: Database, principal: Principal, args: Args) -> Result:
        clinic, number = staff_clinic(principal, args), args.number()
        result: Result = await db.call("SELECT mmc_entry_action($1, $2, $3, $4)",
                                       clinic, number, action, db.now())
        return result

    handler.__name__ = f"queue_{action}"
    return handler


for _action in ("recall", "start", "done", "skip", "no_show"):
    operation(f"queue.{_action}", STAFF)(_entry_action(_action))


@operation("pin.current", STAFF)
async def pin_current(db: Database, principal: Principal, args: Args) -> Result:
    clinic = staff_clinic(principal, args) if principal.role == "staff" \
        else args.optional_clinic()
    pins = await db.call("SELECT mmc_rotate_pins(mmc_pin_day($1), $2)", db.now(), clinic)
    if clinic is not None and clinic not in pins:
        await _require_pin_clinic(db, clinic)
    return {"pins": pins}


@operation("pin.rotate", ADMIN)
async def pin_rotate(db: Database, principal: Principal, args: Args) -> Result:
    """Today's PINs where missing; with `fresh`, new PINs at once (a PIN has leaked)."""
    clinic = args.optional_clinic()
    query = ("SELECT mmc_fresh_pins(mmc_pin_day($1), $2)" if args.optional_flag("fresh")
             else "SELECT mmc_rotate_pins(mmc_pin_day($1), $2)")
    pins = await db.call(query, db.now(), clinic)
    if clinic is not None and clinic not in pins:
        await _require_pin_clinic(db, clinic)
    return {"pins": pins}


async def _require_pin_clinic(db: Database, clinic: str) -> None:
    requires = await db.call(
        "SELECT requires_pin FROM clinics WHERE code = $1 AND is_active", clinic)
    if requires is None:
        raise errors.NotFound("unknown clinic")
    raise errors.BadRequest("this clinic does not use a PIN")


# --- administration --------------------------------------------------------------------

@operation("stats.dashboard", ADMIN)
async def stats_dashboard(db: Database, principal: Principal, args: Args) -> Result:
    result: Result = await db.call("SELECT mmc_stats_dashboard($1)", db.now())
    return result


@operation("admin.staff.create", ADMIN)
async def staff_create(db: Database, principal: Principal, args: Args) -> Result:
    role = args.optional_text("role", max_len=16) or "staff"
    if role not in ("staff", "reception"):
        raise errors.BadRequest("role must be staff or reception")
    username = args.username()
    password = args.password(min_len=accounts.MIN_PASSWORD)
    async with db.transaction() as conn:
        if role == "reception":
            return await accounts.create_reception(conn, username, password)
        return await accounts.create_staff(conn, username, password, args.clinic())


@operation("admin.staff.list", ADMIN)
async def staff_list(db: Database, principal: Principal, args: Args) -> Result:
    async with db.transaction() as conn:
        return {"accounts": await accounts.list_accounts(conn)}


def _account_switch(active: bool) -> Handler:
    async def handler(db: Database, principal: Principal, args: Args) -> Result:
        username = args.username()
        if not active and username == principal.subject:
            raise errors.Conflict("you cannot disable your own account")
        async with db.transaction() as conn:
            return await accounts.set_active(conn, username, active)

    handler.__name__ = "staff_enable" if active else "staff_disable"
    return handler


operation("admin.staff.disable", ADMIN)(_account_switch(False))
operation("admin.staff.enable", ADMIN)(_account_switch(True))


@operation("admin.staff.reset_password", ADMIN)
async def staff_reset_password(db: Database, principal: Principal, args: Args) -> Result:
    username = args.username()
    password = args.password(min_len=accounts.MIN_PASSWORD)
    async with db.transaction() as conn:
        await accounts.reset_password(conn, username, password)
        return await accounts.account(conn, username)


# --- reception -------------------------------------------------------------------------

@operation("reception.register", RECEPTION)
async def reception_register(db: Database, principal: Principal, args: Args) -> Result:
    patient_id, gender = args.patient_id(), args.gender()
    exam_type = args.text("exam_type", pattern=EXAM_TYPE, max_len=32, what="exam type")
    code = accounts.login_code()
    route: Result = await db.call("SELECT mmc_reception_register($1, $2, $3, $4, $5, $6)",
                                  patient_id, gender, exam_type,
                                  accounts.login_code_hash(code), principal.subject,
                                  db.now())
    return {**route, "patient_id": patient_id, "gender": gender, "login_code": code}


# --- streams ---------------------------------------------------------------------------

@operation("stream.ticket", EVERYONE_SIGNED_IN)
async def stream_ticket(db: Database, principal: Principal, args: Args) -> Result:
    """A single-use ticket for events-stream, so no session token goes into a URL."""
    channel = protocol.parse_channel(args.value("channel"), principal)
    hashed = caller().token_hash
    if hashed is None:
        raise errors.Unauthorized()
    async with db.transaction() as conn:
        ticket = await auth.issue_ticket(conn, hashed, channel.name, db.now())
    return {"ticket": ticket, "expires_in": int(auth.TICKET_LIFETIME.total_seconds())}


async def _set_paused(db: Database, args: Args, paused: bool) -> Result:
    result: Result = await db.call("SELECT mmc_set_paused($1, $2)", args.clinic(), paused)
    return result


@operation("admin.clinic.pause", ADMIN)
async def clinic_pause(db: Database, principal: Principal, args: Args) -> Result:
    return await _set_paused(db, args, True)


@operation("admin.clinic.resume", ADMIN)
async def clinic_resume(db: Database, principal: Principal, args: Args) -> Result:
    return await _set_paused(db, args, False)


@operation("admin.settings.get", ADMIN)
async def settings_get(db: Database, principal: Principal, args: Args) -> Result:
    return {"settings": await db.call("SELECT mmc_settings_all()")}


@operation("admin.settings.set", ADMIN)
async def settings_set(db: Database, principal: Principal, args: Args) -> Result:
    key, value = settings.validate(args.value("key"), args.value("value"))
    return {"settings": await db.call("SELECT mmc_settings_set($1, $2)", key, value)}


@operation("report.get", ADMIN)
async def report_get(db: Database, principal: Principal, args: Args) -> Result:
    return await reports.fetch(db, args.text("type", max_len=16),
                               args.text("date", max_len=10))


# Operations defined in modules of their own register themselves on import.
from server import displays as _displays  # noqa: E402, F401
