"""Sessions that really end: logout, a password reset or a disabled account closes the
sockets and streams of that session on every server (two apps, each with its own hub,
on one Postgres); stream tickets instead of tokens in URLs; the account operations and
the reception role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from server import accounts
from server.clock import ManualClock
from server.db import Database
from server.protocol import CloseCode
from server.sessions import SessionRegistry
from tests.api import ADMIN_PASSWORD, STAFF_PASSWORD, create_accounts
from tests.harness import LiveServer
from tests.realtime import WAIT, Peer, running

NEW_PASSWORD = "a fresh password 2"


@contextlib.asynccontextmanager
async def two_servers(dsn: str, clock: ManualClock) -> AsyncIterator[
        tuple[LiveServer, LiveServer, httpx.AsyncClient, httpx.AsyncClient]]:
    """Two apps, as two server processes would be: each has its own LISTEN connection."""
    await create_accounts(dsn)
    async with running(dsn, clock) as a, running(dsn, clock) as b, \
            httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a, \
            httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b:
        yield a, b, on_a, on_b


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    name = "admin-login" if username == "admin" else "staff-login"
    answer = await client.post(f"/api/v1/{name}",
                               json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"]["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def staff_socket(live: LiveServer, token: str) -> Peer:
    """A console: authenticated, on its clinic's staff channel, reading its PIN."""
    peer = await Peer.open(live.ws_url)
    await peer.call("auth", {"token": token})
    await peer.call("subscribe", {"channel": "clinic:eyes:staff"})
    assert "eyes" in (await peer.call("pin.current"))["pins"]
    return peer


def sessions_of(live: LiveServer) -> SessionRegistry:
    registry = live.server.lifespan.state["sessions"]
    assert isinstance(registry, SessionRegistry)
    return registry


async def test_logout_on_one_server_closes_the_socket_on_the_other(
        dsn: str, clock: ManualClock) -> None:
    """A staff socket on A loses its session (1008) as soon as the token is logged out
    over HTTP on B: it no longer reads the clinic's PIN."""
    async with two_servers(dsn, clock) as (a, _, on_a, on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        peer = await staff_socket(a, token)
        answer = await on_b.post("/api/v1/logout", headers=bearer(token))
        assert answer.status_code == 200
        assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY
        refused = await on_a.get("/api/v1/pin-status", headers=bearer(token))
        assert refused.status_code == 401


async def test_disabling_an_account_ends_its_sockets_and_streams_everywhere(
        dsn: str, clock: ManualClock) -> None:
    """admin.staff.disable over a socket on B: the staff's socket and SSE stream on A
    end; the account cannot log in; enabling it lets it in again."""
    async with two_servers(dsn, clock) as (a, b, on_a, _on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        peer = await staff_socket(a, token)
        async with on_a.stream("GET", "/api/v1/events-stream",
                               params={"channel": "clinic:eyes:staff"},
                               headers=bearer(token)) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            async with asyncio.timeout(WAIT):
                while "snapshot" not in await anext(lines):
                    pass
            admin = await Peer.open(b.ws_url)
            await admin.call("admin.login", {"username": "admin", "password": ADMIN_PASSWORD})
            account = await admin.call("admin.staff.disable", {"username": "staff_eyes"})
            assert account["is_active"] is False and "password_hash" not in account
            assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY
            async with asyncio.timeout(WAIT):
                async for _ in lines:
                    pass  # the stream ends
        refused = await on_a.post("/api/v1/staff-login",
                                  json={"username": "staff_eyes", "password": STAFF_PASSWORD})
        assert refused.status_code == 401
        await admin.call("admin.staff.enable", {"username": "staff_eyes"})
        await login(on_a, "staff_eyes", STAFF_PASSWORD)
        await admin.close()


async def test_a_password_reset_ends_the_old_sessions_and_the_new_password_works(
        dsn: str, clock: ManualClock) -> None:
    """admin.staff.reset_password over HTTP on B closes the socket on A."""
    async with two_servers(dsn, clock) as (a, _, on_a, on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        peer = await staff_socket(a, token)
        admin = await login(on_b, "admin", ADMIN_PASSWORD)
        answer = await on_b.post("/api/v1/admin-staff-reset-password", headers=bearer(admin),
                                 json={"username": "staff_eyes", "password": NEW_PASSWORD})
        assert answer.status_code == 200, answer.text
        assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY
        await login(on_a, "staff_eyes", NEW_PASSWORD)


async def test_is_active_false_in_plain_sql_stops_the_account_at_once(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """However an account is disabled, its sessions end (the trigger of schema/013)."""
    async with two_servers(dsn, clock) as (a, _, on_a, _on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        peer = await staff_socket(a, token)
        await db.pool.execute("UPDATE admins SET is_active = false WHERE username = 'staff_eyes'")
        assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY
        assert (await on_a.get("/api/v1/admin-status", headers=bearer(token))).status_code == 401


async def test_a_session_ended_while_the_signal_was_lost_is_ended_on_recheck(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """Signals sent while a hub is away are lost: after its reconnect, every held
    session is looked up again (here the signal is never sent at all)."""
    async with two_servers(dsn, clock) as (a, _, on_a, _on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        peer = await staff_socket(a, token)
        await db.pool.execute("ALTER TABLE sessions DISABLE TRIGGER sessions_revoked")
        await db.pool.execute("DELETE FROM sessions WHERE subject = 'staff_eyes'")
        await asyncio.sleep(0.2)
        assert peer.close_code is None, "nothing told the server yet"
        await sessions_of(a).recheck()
        assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY


async def test_sse_takes_a_single_use_ticket_never_a_token_in_the_url(
        dsn: str, clock: ManualClock) -> None:
    """stream.ticket gives a ticket for one channel; it opens the stream once; a token
    in the query string is refused."""
    async with two_servers(dsn, clock) as (_, _b, on_a, on_b):
        token = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        async with asyncio.timeout(WAIT):  # (a server that took the token would stream)
            refused = await on_a.get("/api/v1/events-stream",
                                     params={"channel": "clinic:eyes:staff", "token": token})
        assert refused.status_code == 400
        assert token not in refused.text
        issued = await on_b.post("/api/v1/stream-ticket", headers=bearer(token),
                                 json={"channel": "clinic:eyes:staff"})
        assert issued.status_code == 200, issued.text
        ticket = issued.json()["result"]["ticket"]
        assert 0 < issued.json()["result"]["expires_in"] <= 60
        params = {"channel": "clinic:eyes:staff", "ticket": ticket}
        async with on_a.stream("GET", "/api/v1/events-stream", params=params) as stream:
            assert stream.status_code == 200
            assert stream.headers["cache-control"] == "no-store"
            lines = stream.aiter_lines()
            async with asyncio.timeout(WAIT):
                while "snapshot" not in await anext(lines):
                    pass
        again = await on_a.get("/api/v1/events-stream", params=params)
        assert again.status_code == 401
        other = (await on_b.post("/api/v1/stream-ticket", headers=bearer(token),
                                 json={"channel": "clinic:eyes:staff"})).json()["result"]
        wrong = await on_a.get("/api/v1/events-stream",
                               params={"channel": "clinic:lab:staff", "ticket": other["ticket"]})
        assert wrong.status_code == 403
        forbidden = await on_b.post("/api/v1/stream-ticket", headers=bearer(token),
                                    json={"channel": "clinic:lab:staff"})
        assert forbidden.status_code == 403


async def test_a_ticket_asked_over_the_socket_opens_the_stream(
        dsn: str, clock: ManualClock) -> None:
    """stream.ticket over the WebSocket stands for the socket's session."""
    async with two_servers(dsn, clock) as (a, _b, on_a, _on_b):
        peer = await Peer.open(a.ws_url)
        await peer.call("admin.login", {"username": "admin", "password": ADMIN_PASSWORD})
        ticket = (await peer.call("stream.ticket", {"channel": "admin"}))["ticket"]
        async with on_a.stream("GET", "/api/v1/events-stream",
                               params={"channel": "admin", "ticket": ticket}) as stream:
            assert stream.status_code == 200
        anonymous = await Peer.open(a.ws_url)
        refused = await anonymous.request("stream.ticket", {"channel": "clinic:lab"})
        assert refused["error"] == "unauthorized"
        for open_peer in (peer, anonymous):
            await open_peer.close()


async def test_account_list_shows_every_account_without_passwords(
        dsn: str, clock: ManualClock) -> None:
    """admin.staff.list over HTTP: usernames, roles, clinics, active; no hash."""
    async with two_servers(dsn, clock) as (_, _b, on_a, _on_b):
        admin = await login(on_a, "admin", ADMIN_PASSWORD)
        listed = await on_a.get("/api/v1/admin-staff-list", headers=bearer(admin))
        accounts_ = {a["username"]: a for a in listed.json()["result"]["accounts"]}
        assert accounts_["staff_eyes"] == {**accounts_["staff_eyes"], "role": "staff",
                                           "clinic": "eyes", "is_active": True}
        assert "argon2" not in listed.text and "password" not in listed.text
        staff = await login(on_a, "staff_eyes", STAFF_PASSWORD)
        assert (await on_a.get("/api/v1/admin-staff-list",
                               headers=bearer(staff))).status_code == 403


async def test_an_admin_cannot_disable_their_own_account(dsn: str, clock: ManualClock) -> None:
    async with two_servers(dsn, clock) as (_, _b, on_a, _on_b):
        admin = await login(on_a, "admin", ADMIN_PASSWORD)
        answer = await on_a.post("/api/v1/admin-staff-disable", headers=bearer(admin),
                                 json={"username": "admin"})
        assert answer.status_code == 409


async def reception_session(client: httpx.AsyncClient) -> str:
    admin = await login(client, "admin", ADMIN_PASSWORD)
    made = await client.post("/api/v1/admin-staff-create", headers=bearer(admin),
                             json={"username": "desk1", "password": "front desk pass",
                                   "role": "reception"})
    assert made.status_code == 200, made.text
    assert made.json()["result"] == {"username": "desk1", "role": "reception"}
    return await login(client, "desk1", "front desk pass")


async def register(client: httpx.AsyncClient, token: str, patient_id: str,
                   gender: str = "male") -> dict[str, Any]:
    answer = await client.post("/api/v1/reception-register", headers=bearer(token),
                               json={"patient_id": patient_id, "gender": gender,
                                     "exam_type": "recruitment"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["result"])


async def test_reception_registers_and_may_do_nothing_else(
        dsn: str, clock: ManualClock) -> None:
    """A reception account registers an examinee (route, first entry, login code) and
    is refused everything else."""
    async with two_servers(dsn, clock) as (a, _b, on_a, _on_b):
        desk = await reception_session(on_a)
        slip = await register(on_a, desk, "30000000001")
        assert slip["exam_type"] == "recruitment" and slip["patient_id"] == "30000000001"
        assert slip["current"]["clinic"] in ("lab", "xray") and slip["current"]["number"] >= 1
        assert len(slip["login_code"]) == accounts.CODE_LENGTH
        for name, body in (("queue-call", {"clinic": "lab"}), ("pin-generate", {}),
                           ("admin-staff-create", {"username": "x", "password": "yyyyyyyy",
                                                   "clinic": "lab"})):
            assert (await on_a.post(f"/api/v1/{name}", headers=bearer(desk),
                                    json=body)).status_code == 403
        for name in ("stats-dashboard", "pin-status", "queue-status"):
            assert (await on_a.get(f"/api/v1/{name}", headers=bearer(desk))).status_code \
                in (401, 403)
        peer = await Peer.open(a.ws_url)
        await peer.call("auth", {"token": desk})
        for channel in ("admin", "clinic:lab:staff", "me"):
            reply = await peer.request("subscribe", {"channel": channel})
            assert reply["ok"] is False and reply["error"] in ("forbidden", "unauthorized")
        await peer.close()


async def test_the_slip_code_logs_the_phone_in_once(dsn: str, clock: ManualClock) -> None:
    """The slip's code logs the examinee in (any case, with a dash) once; reused, it
    is refused."""
    async with two_servers(dsn, clock) as (_, _b, on_a, _on_b):
        desk = await reception_session(on_a)
        code = (await register(on_a, desk, "30000000002"))["login_code"]
        typed = f"{code[:4].lower()}-{code[4:]}"
        body = {"patient_id": "30000000002", "gender": "male", "login_code": typed}
        first = await on_a.post("/api/v1/patient-login", json=body)
        assert first.status_code == 200, first.text
        route = await on_a.get("/api/v1/route-get",
                               headers=bearer(first.json()["result"]["token"]))
        assert route.json()["result"]["exam_type"] == "recruitment"
        again = await on_a.post("/api/v1/patient-login", json=body)
        assert again.status_code == 401


async def test_registered_mode_admits_only_registered_examinees_and_says_nothing_more(
        dsn: str, clock: ManualClock) -> None:
    """patient_registration = registered: no login without today's code; a wrong ID,
    a wrong gender and a wrong code get the same answer."""
    async with two_servers(dsn, clock) as (_, _b, on_a, _on_b):
        desk = await reception_session(on_a)
        admin = await login(on_a, "admin", ADMIN_PASSWORD)
        assert (await on_a.post("/api/v1/patient-login", json={
            "patient_id": "30000000004", "gender": "male"})).status_code == 200
        code = (await register(on_a, desk, "30000000003", "female"))["login_code"]
        peer_admin = await Peer.open(_b.ws_url)
        await peer_admin.call("auth", {"token": admin})
        await peer_admin.call("admin.settings.set",
                              {"key": "patient_registration", "value": "registered"})
        await peer_admin.close()
        answers = []
        for body in ({"patient_id": "30000000004", "gender": "male"},
                     {"patient_id": "30000000003", "gender": "female"},
                     {"patient_id": "30000000003", "gender": "male", "login_code": code},
                     {"patient_id": "39999999999", "gender": "female", "login_code": code},
                     {"patient_id": "30000000003", "gender": "female",
                      "login_code": "ABCDEFGH"}):
            answer = await on_a.post("/api/v1/patient-login", json=body)
            answers.append((answer.status_code, answer.json()["message"]))
        assert set(answers) == {(401, accounts.CODE_MISMATCH)}
        ok = await on_a.post("/api/v1/patient-login", json={
            "patient_id": "30000000003", "gender": "female", "login_code": code})
        assert ok.status_code == 200


async def test_a_login_over_the_socket_is_held_too(dsn: str, clock: ManualClock) -> None:
    """A socket that logged in with staff.login (no separate auth) also ends."""
    async with two_servers(dsn, clock) as (a, _b, on_a, _on_b):
        peer = await Peer.open(a.ws_url)
        result = await peer.call("staff.login", {"username": "staff_eyes",
                                                 "password": STAFF_PASSWORD})
        await on_a.post("/api/v1/logout", headers=bearer(result["token"]))
        assert await peer.wait_closed(within=WAIT) == CloseCode.POLICY


async def test_a_socket_that_takes_hold_just_after_the_signal_is_ended_too(
        db: Database) -> None:
    """The signal may overtake a socket between reading its session and holding it."""
    registry = SessionRegistry(db)
    ended: list[str] = []
    registry._on_revoked({"tokens": [b"late".hex()]})
    release = registry.hold(b"late", lambda: ended.append("late"))
    registry.hold(b"other", lambda: ended.append("other"))
    await asyncio.sleep(0)
    assert ended == ["late"]
    release()
