"""The HTTP API: each endpoint's happy path and a bad input, the envelope on every
error, bearer tokens, logout, CORS, the OpenAPI document against the routes."""

from __future__ import annotations

import csv
import io

import pytest
from starlette.routing import Route

from server.app import create_app
from server.endpoints import ENDPOINTS
from server.openapi import document
from tests.api import Api, running_api

SEED_FUNCTIONS = {
    "health", "admin-login", "admin-status", "patient-login", "queue-enter", "queue-status",
    "queue-call", "queue-done", "pin-status", "pin-generate", "route-create", "route-get",
    "path-choose", "stats-dashboard", "stats-queues", "events-stream", "reports-daily",
    "reports-weekly", "reports-monthly", "reports-annual"}


@pytest.fixture
async def api(dsn, clock):
    async with running_api(dsn, clock) as api:
        yield api


def envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["error"] == code and body["status"] == status
    assert body["id"] is None and body["message"]
    return body  # type: ignore[no-any-return]


def result(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    return body["result"]  # type: ignore[no-any-return]


async def patient_at_eyes(api: Api, patient_id: str = "44000001") -> str:
    token = await api.login_patient(patient_id)
    result(await api.post("queue-enter", {"clinic": "eyes"}, token))
    return token


def test_every_seed_function_has_an_endpoint():
    """The twenty names of DESIGN.md, one path each."""
    assert {e.name for e in ENDPOINTS} >= SEED_FUNCTIONS


def test_openapi_document_matches_the_routes(dsn):
    """Every /api/v1 route is in the document with its method, and nothing else is."""
    app = create_app(dsn=dsn)
    routes = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route)
              and r.path.startswith("/api/v1/") and r.path != "/api/v1/openapi.json"
              for m in (r.methods or ()) if m != "HEAD"}
    documented = {(path, method) for path, ops in document()["paths"].items()
                  for method in ops}
    assert routes == documented


async def test_openapi_json_is_served(api):
    """GET /api/v1/openapi.json is the document."""
    response = await api.client.get("/api/v1/openapi.json")
    assert response.json()["openapi"].startswith("3.1")
    assert "/api/v1/queue-call" in response.json()["paths"]


async def test_health(api):
    """health: ok with the breaker and hub state; POST is 405 in the envelope."""
    body = result(await api.get("health"))
    assert body["status"] == "ok" and body["breaker"] == "CLOSED"
    envelope(await api.post("health", {}), 405, "bad_request")


async def test_admin_login(api):
    """admin-login: token for the admin; a missing password is a bad request."""
    from tests.api import ADMIN_PASSWORD
    assert result(await api.post("admin-login", {"username": "admin",
                                                 "password": ADMIN_PASSWORD}))["token"]
    envelope(await api.post("admin-login", {"username": "admin"}), 400, "bad_request")


async def test_staff_login(api):
    """staff-login: token with the clinic; a wrong password is unauthorized."""
    from tests.api import STAFF_PASSWORD
    body = result(await api.post("staff-login", {"username": "staff_eyes",
                                                 "password": STAFF_PASSWORD}))
    assert body["clinic"] == "eyes"
    envelope(await api.post("staff-login", {"username": "staff_eyes", "password": "nope"}),
             401, "unauthorized")


async def test_admin_status(api):
    """admin-status: the session; without a token, unauthorized."""
    body = result(await api.get("admin-status", api.tokens["staff_eyes"]))
    assert (body["role"], body["clinic"]) == ("staff", "eyes") and body["expires_at"]
    envelope(await api.get("admin-status"), 401, "unauthorized")


async def test_patient_login(api):
    """patient-login: a token for 2-12 digits; one digit is a bad request."""
    assert await api.login_patient("٤٤٠٠٠٠٠٩")
    envelope(await api.post("patient-login", {"patient_id": "4", "gender": "male"}),
             400, "bad_request")


async def test_queue_enter(api):
    """queue-enter: a number; an unknown clinic is not found; a non-JSON body is bad."""
    token = await api.login_patient("44000002")
    assert result(await api.post("queue-enter", {"clinic": "eyes"}, token))["number"] == 1
    envelope(await api.post("queue-enter", {"clinic": "mars"}, token), 404, "not_found")
    envelope(await api.post("queue-enter", token=token, content=b"{not json"), 400,
             "bad_request")
    envelope(await api.post("queue-enter", token=token, content=b"[1, 2]"), 400,
             "bad_request")


async def test_queue_status(api):
    """queue-status: the patient's own entry; staff of eyes asking for lab: forbidden."""
    token = await patient_at_eyes(api)
    assert result(await api.get("queue-status", token))["position"] == 1
    assert result(await api.get("queue-status", api.tokens["staff_eyes"]))["total_waiting"] == 1
    envelope(await api.get("queue-status", api.tokens["staff_eyes"], clinic="lab"), 403,
             "forbidden")
    envelope(await api.get("queue-status", api.tokens["admin"], clinic="EYES!"), 400,
             "bad_request")


async def test_queue_call(api):
    """queue-call: the next number; an empty clinic is `empty`."""
    await patient_at_eyes(api)
    body = result(await api.post("queue-call", {"clinic": "eyes"}, api.tokens["staff_eyes"]))
    assert body["called"]["number"] == 1
    envelope(await api.post("queue-call", {"clinic": "eyes"}, api.tokens["staff_eyes"]),
             409, "empty")


async def test_queue_done(api):
    """queue-done: completes the called number; a number that is not a number is bad."""
    await patient_at_eyes(api)
    await api.post("queue-call", {}, api.tokens["staff_eyes"])
    body = result(await api.post("queue-done", {"number": 1}, api.tokens["staff_eyes"]))
    assert body["status"] == "COMPLETED"
    envelope(await api.post("queue-done", {"number": "one"}, api.tokens["staff_eyes"]), 400,
             "bad_request")


async def test_pin_status(api):
    """pin-status: staff see their clinic's PIN; a patient is forbidden."""
    body = result(await api.get("pin-status", api.tokens["staff_eyes"]))
    assert list(body["pins"]) == ["eyes"]
    envelope(await api.get("pin-status", await api.login_patient("44000003")), 403,
             "forbidden")


async def test_pin_generate(api):
    """pin-generate: today's PINs for the admin, the same twice; lab has no PIN."""
    first = result(await api.post("pin-generate", {}, api.tokens["admin"]))["pins"]
    assert result(await api.post("pin-generate", {}, api.tokens["admin"]))["pins"] == first
    envelope(await api.post("pin-generate", {"clinic": "lab"}, api.tokens["admin"]), 400,
             "bad_request")


async def test_route_create_and_get(api):
    """route-create then route-get: the same route; an unknown exam type is not found."""
    token = await api.login_patient("44000004")
    created = result(await api.post("route-create", {"exam_type": "cooks"}, token))
    assert result(await api.get("route-get", token))["route_id"] == created["route_id"]
    other = await api.login_patient("44000005")
    envelope(await api.post("route-create", {"exam_type": "astronaut"}, other), 404,
             "not_found")
    envelope(await api.get("route-get", other), 404, "not_found")


async def test_path_choose(api):
    """path-choose: where to go; with no route today, not found."""
    token = await api.login_patient("44000006")
    await api.post("route-create", {"exam_type": "cooks"}, token)
    assert result(await api.post("path-choose", {}, token))["current"]["clinic"] == "lab"
    envelope(await api.post("path-choose", {}, await api.login_patient("44000007")), 404,
             "not_found")


async def test_stats_dashboard(api):
    """stats-dashboard: admin only."""
    await patient_at_eyes(api)
    body = result(await api.get("stats-dashboard", api.tokens["admin"]))
    assert body["totals"]["waiting"] == 1
    envelope(await api.get("stats-dashboard", api.tokens["staff_eyes"]), 403, "forbidden")


async def test_stats_queues(api):
    """stats-queues: public numbers for every clinic; POST is 405."""
    await patient_at_eyes(api, "44000008")
    body = result(await api.get("stats-queues"))
    eyes = next(c for c in body["clinics"] if c["clinic"] == "eyes")
    assert eyes["total_waiting"] == 1
    assert "44000008" not in str(body)
    envelope(await api.post("stats-queues", {}), 405, "bad_request")


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "annual"])
async def test_reports(api, period):
    """reports-*: JSON and CSV for the admin; a bad date is a bad request."""
    body = result(await api.get(f"reports-{period}", api.tokens["admin"], date="2026-03-01"))
    assert body
    response = await api.get(f"reports-{period}", api.tokens["admin"], date="2026-03-01",
                             format="csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/csv")
    assert list(csv.reader(io.StringIO(response.text)))
    envelope(await api.get(f"reports-{period}", api.tokens["admin"], date="2026-02-30"), 400,
             "bad_request")
    envelope(await api.get(f"reports-{period}", api.tokens["staff_eyes"], date="2026-03-01"),
             403, "forbidden")


async def test_events_stream(api):
    """events-stream: a snapshot then live events with ids; an unknown channel is bad."""
    async with api.client.stream("GET", "/api/v1/events-stream",
                                 params={"channel": "clinic:eyes"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        first = await anext(lines)
        while not first.startswith("event:"):
            first = await anext(lines)
        assert first == "event: snapshot"
    envelope(await api.get("events-stream", channel="nope"), 404, "not_found")
    envelope(await api.get("events-stream", channel="clinic:eyes", since="x"), 400,
             "bad_request")
    envelope(await api.get("events-stream", channel="admin"), 401, "unauthorized")


async def test_logout_ends_the_session(api):
    """After logout the token is refused; logout without a token is unauthorized."""
    token = await api.login_patient("44000010")
    result(await api.post("logout", {}, token))
    envelope(await api.get("route-get", token), 401, "unauthorized")
    envelope(await api.post("logout", {}), 401, "unauthorized")


async def test_unknown_path_and_oversized_body_use_the_envelope(api):
    """404 and 413 are envelopes too."""
    envelope(await api.client.get("/api/v1/nope"), 404, "not_found")
    envelope(await api.post("queue-enter", token=await api.login_patient("44000011"),
                            content=b"{" + b" " * 70_000 + b"}"), 413, "too_large")


async def test_cors_allows_only_listed_origins(dsn, clock, monkeypatch):
    """CORS_ORIGINS lists who may call from a browser; others get no CORS headers."""
    monkeypatch.setenv("CORS_ORIGINS", "https://screens.example")
    async with running_api(dsn, clock) as api:
        allowed = await api.client.options(
            "/api/v1/queue-status", headers={"Origin": "https://screens.example",
                                             "Access-Control-Request-Method": "GET"})
        assert allowed.headers["access-control-allow-origin"] == "https://screens.example"
        other = await api.client.get("/api/v1/stats-queues",
                                     headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
