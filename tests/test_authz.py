"""The authorisation matrix: every HTTP endpoint and every WebSocket op against no
token, a patient, another patient, staff of the clinic, staff of another clinic, an
admin and an expired token, asserted allow or deny cell by cell."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from server import auth
from server.auth import Principal
from tests.api import ADMIN_PASSWORD, STAFF_PASSWORD, running_api

WHO = ("none", "patient", "other_patient", "staff", "other_staff", "admin", "expired")
ALL = set(WHO)
PATIENTS = {"patient", "other_patient"}
SIGNED_IN = ALL - {"none", "expired"}
OWN_STAFF = {"staff", "admin"}
ADMIN = {"admin"}

# endpoint -> (method, arguments, who is allowed). The clinic is always eyes; "staff"
# is staff of eyes, "other_staff" staff of lab.
HTTP: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "health": ("GET", {}, ALL),
    "admin-login": ("POST", {"username": "admin", "password": ADMIN_PASSWORD}, ALL),
    "staff-login": ("POST", {"username": "staff_eyes", "password": STAFF_PASSWORD}, ALL),
    "patient-login": ("POST", {"patient_id": "77000099", "gender": "male"}, ALL),
    "admin-status": ("GET", {}, {"staff", "other_staff", "admin"}),
    "queue-enter": ("POST", {"clinic": "eyes"}, PATIENTS),
    "queue-status": ("GET", {"clinic": "eyes"}, PATIENTS | OWN_STAFF),
    "queue-call": ("POST", {"clinic": "eyes"}, OWN_STAFF),
    "queue-done": ("POST", {"clinic": "eyes"}, OWN_STAFF),
    "pin-status": ("GET", {"clinic": "eyes"}, OWN_STAFF),
    "pin-generate": ("POST", {"clinic": "eyes"}, ADMIN),
    "route-create": ("POST", {"exam_type": "cooks"}, PATIENTS),
    "route-get": ("GET", {}, PATIENTS),
    "path-choose": ("POST", {}, PATIENTS),
    "stats-dashboard": ("GET", {}, ADMIN),
    "stats-queues": ("GET", {}, ALL),
    "events-stream": ("GET", {"channel": "clinic:eyes:staff"}, OWN_STAFF),
    "reports-daily": ("GET", {"date": "2026-03-01"}, ADMIN),
    "reports-weekly": ("GET", {"date": "2026-03-01"}, ADMIN),
    "reports-monthly": ("GET", {"date": "2026-03-01"}, ADMIN),
    "reports-annual": ("GET", {"date": "2026-03-01"}, ADMIN),
    "logout": ("POST", {}, SIGNED_IN),
    "stream-ticket": ("POST", {"channel": "clinic:eyes:staff"}, OWN_STAFF),
    "admin-staff-create": ("POST", {"username": "desk_x", "password": "a long password",
                                    "role": "reception"}, ADMIN),
    "admin-staff-list": ("GET", {}, ADMIN),
    "admin-staff-disable": ("POST", {"username": "nobody_here"}, ADMIN),
    "admin-staff-enable": ("POST", {"username": "nobody_here"}, ADMIN),
    "admin-staff-reset-password": ("POST", {"username": "nobody_here",
                                            "password": "a long password"}, ADMIN),
    "reception-register": ("POST", {"patient_id": "77000056", "gender": "male",
                                    "exam_type": "cooks"}, ADMIN),
}


async def expired_token(dsn: str, now) -> str:
    """A staff-of-eyes session that ended an hour ago."""
    conn = await asyncpg.connect(dsn)
    try:
        token = await auth.create_session(conn, Principal("staff", "staff_eyes", "eyes"),
                                          now - timedelta(hours=13))
    finally:
        await conn.close()
    return token


async def tokens_for(api, dsn, clock) -> dict[str, str | None]:
    return {
        "none": None,
        "patient": await api.login_patient("77000001"),
        "other_patient": await api.login_patient("77000002"),
        "staff": api.tokens["staff_eyes"],
        "other_staff": api.tokens["staff_lab"],
        "admin": api.tokens["admin"],
        "expired": await expired_token(dsn, clock.now()),
    }


async def http_call(api, method: str, name: str, args: dict[str, Any], token: str | None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if name == "events-stream":
        async with api.client.stream("GET", f"/api/v1/{name}", params=args,
                                     headers=headers) as response:
            return response.status_code
    if method == "GET":
        response = await api.client.get(f"/api/v1/{name}", params=args, headers=headers)
    else:
        response = await api.client.post(f"/api/v1/{name}", json=args, headers=headers)
    assert response.status_code != 500, (name, response.text)
    return response.status_code


@pytest.mark.parametrize("name", sorted(HTTP))
async def test_http_endpoint_authorisation(dsn, clock, name):
    """Each cell: allowed callers pass authorisation, the others get 401 or 403."""
    method, args, allowed = HTTP[name]
    async with running_api(dsn, clock) as api:
        tokens = await tokens_for(api, dsn, clock)
        cells = {}
        for who in WHO:
            token = tokens[who]
            if name == "logout" and token is not None and who in SIGNED_IN:
                token = await fresh_token(api, who)
            status = await http_call(api, method, name, args, token)
            cells[who] = "allow" if status not in (401, 403) else "deny"
    assert cells == {who: "allow" if who in allowed else "deny" for who in WHO}


async def fresh_token(api, who: str) -> str:
    """Logout ends the session; give it one of its own so other cells keep theirs."""
    if who in PATIENTS:
        return await api.login_patient("77000001" if who == "patient" else "77000002")
    if who == "admin":
        return await api.login("admin", ADMIN_PASSWORD)
    return await api.login("staff_eyes" if who == "staff" else "staff_lab", STAFF_PASSWORD)


# WebSocket op -> (arguments, who is allowed). Transport ops are here too.
WS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "ping": ({}, ALL),
    "auth": ({}, SIGNED_IN),
    "subscribe": ({"channel": "clinic:eyes:staff"}, OWN_STAFF),
    "unsubscribe": ({"channel": "clinic:eyes:staff"}, ALL),
    "patient.login": ({"patient_id": "77000099", "gender": "male"}, ALL),
    "staff.login": ({"username": "staff_eyes", "password": STAFF_PASSWORD}, ALL),
    "admin.login": ({"username": "admin", "password": ADMIN_PASSWORD}, ALL),
    "route.create": ({"exam_type": "cooks"}, PATIENTS),
    "route.get": ({}, PATIENTS),
    "path.choose": ({}, PATIENTS),
    "queue.status": ({"clinic": "eyes"}, PATIENTS | OWN_STAFF),
    "queue.enter": ({"clinic": "eyes"}, PATIENTS),
    **{f"queue.{action}": ({"clinic": "eyes"}, OWN_STAFF)
       for action in ("call", "recall", "start", "done", "skip", "no_show")},
    "pin.submit": ({"clinic": "eyes", "pin": "11"}, PATIENTS),
    "pin.current": ({"clinic": "eyes"}, OWN_STAFF),
    "pin.rotate": ({}, ADMIN),
    "stats.dashboard": ({}, ADMIN),
    "admin.staff.create": ({"username": "new_nurse", "password": "a long password",
                            "clinic": "eyes"}, ADMIN),
    "admin.clinic.pause": ({"clinic": "eyes"}, ADMIN),
    "admin.clinic.resume": ({"clinic": "eyes"}, ADMIN),
    "admin.settings.get": ({}, ADMIN),
    "admin.settings.set": ({"key": "max_postpones", "value": 3}, ADMIN),
    "report.get": ({"type": "daily", "date": "2026-03-01"}, ADMIN),
    "display.hello": ({"name": "Hall", "clinics": ["eyes"], "sound": True,
                       "voice": "server", "last_announced": None}, ALL),
    "admin.displays": ({}, ADMIN),
    "admin.display.identify": ({"display_id": "00000000-0000-4000-8000-000000000000"},
                               ADMIN),
    "admin.staff.list": ({}, ADMIN),
    "admin.staff.disable": ({"username": "nobody_here"}, ADMIN),
    "admin.staff.enable": ({"username": "nobody_here"}, ADMIN),
    "admin.staff.reset_password": ({"username": "nobody_here",
                                    "password": "a long password"}, ADMIN),
    "reception.register": ({"patient_id": "77000055", "gender": "male",
                            "exam_type": "cooks"}, ADMIN),
    "stream.ticket": ({"channel": "clinic:eyes:staff"}, OWN_STAFF),
}


def test_every_websocket_op_is_in_the_matrix():
    """A new op must get its row here."""
    from server import commands, protocol
    assert set(commands.OPERATIONS) | set(protocol.TRANSPORT_OPS) == set(WS)


async def test_websocket_op_authorisation(dsn, clock):
    """Each cell: after `auth` with the caller's token (none for `none`), the op is
    refused with unauthorized / forbidden exactly when the caller is not allowed."""
    from tests.realtime import Peer

    async with running_api(dsn, clock) as api:
        tokens = await tokens_for(api, dsn, clock)
        url = api.live.ws_url
        cells: dict[tuple[str, str], str] = {}
        for who in WHO:
            for op, (args, _) in WS.items():
                peer = await Peer.open(url)
                try:
                    if tokens[who] is not None and op != "auth":
                        await peer.request("auth", {"token": tokens[who]})
                    if op == "auth":
                        args = {"token": tokens[who]} if tokens[who] else {}
                    reply = await peer.request(op, args)
                finally:
                    await peer.close()
                assert reply.get("error") != "internal", (who, op, reply)
                denied = not reply["ok"] and reply["error"] in ("unauthorized", "forbidden")
                if op == "auth" and not reply["ok"]:
                    denied = True
                cells[(who, op)] = "deny" if denied else "allow"
    expected = {(who, op): "allow" if who in allowed else "deny"
                for who in WHO for op, (_, allowed) in WS.items()}
    wrong = {cell: got for cell, got in cells.items() if got != expected[cell]}
    assert wrong == {}
