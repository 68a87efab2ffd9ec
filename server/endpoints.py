"""The HTTP API's table: the migration plan's twenty edge functions (plus staff-login, logout, the
account, reception and stream-ticket operations), each with its method, command, callers
and input shape. The HTTP adapter
(server/http.py) and the OpenAPI document (server/openapi.py) both read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

CLINIC: Schema = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$", "maxLength": 32,
                  "description": "clinic code, e.g. eyes"}
NUMBER: Schema = {"type": "integer", "minimum": 1, "maximum": 1000000,
                  "description": "today's queue number; omitted: the entry the action applies to"}
USERNAME: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$", "maxLength": 64}
PASSWORD: Schema = {"type": "string", "minLength": 8, "maxLength": 256}
DATE: Schema = {"type": "string", "format": "date",
                "description": "a day in the period (YYYY-MM-DD)"}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    summary: str
    roles: str
    op: str | None = None
    body: dict[str, dict[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/api/v1/{self.name}"


REPORT_QUERY: dict[str, Schema] = {
    "date": DATE,
    "format": {"type": "string", "enum": ["json", "csv"], "default": "json"},
}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("health", "GET", "Liveness and the state of the database, hub and breaker",
             "anyone"),
    Endpoint("admin-login", "POST", "Log in an admin account; returns a bearer token",
             "anyone", op="admin.login",
             body={"username": {"type": "string", "maxLength": 64},
                   "password": {"type": "string", "maxLength": 256}},
             required=("username", "password")),
    Endpoint("staff-login", "POST", "Log in a staff (or admin) account; returns a bearer token",
             "anyone", op="staff.login",
             body={"username": {"type": "string", "maxLength": 64},
                   "password": {"type": "string", "maxLength": 256}},
             required=("username", "password")),
    Endpoint("admin-status", "GET", "The signed-in staff or admin session", "staff, admin"),
    Endpoint("patient-login", "POST", "Log in an examinee by ID (2-12 digits) and gender",
             "anyone", op="patient.login",
             body={"patient_id": {"type": "string", "maxLength": 64,
                                  "description": "2-12 digits; Arabic-Indic digits accepted"},
                   "gender": {"type": "string", "enum": ["male", "female"]},
                   "login_code": {"type": "string", "maxLength": 32,
                                  "description": "the one-time code of reception's slip; "
                                                 "required when patient_registration is "
                                                 "registered"}},
             required=("patient_id", "gender")),
    Endpoint("queue-enter", "POST", "Enter a clinic's queue", "patient", op="queue.enter",
             body={"clinic": CLINIC}, required=("clinic",)),
    Endpoint("queue-status", "GET", "A patient's own entry, or a clinic's numbers",
             "patient, staff, admin", op="queue.status", query={"clinic": CLINIC}),
    Endpoint("queue-call", "POST", "Call the next patient", "staff of the clinic, admin",
             op="queue.call", body={"clinic": CLINIC}),
    Endpoint("queue-done", "POST", "Complete a called patient's station; routes them on",
             "staff of the clinic, admin", op="queue.done",
             body={"clinic": CLINIC, "number": NUMBER}),
    Endpoint("pin-status", "GET", "Today's PIN (own clinic for staff, all for admins)",
             "staff, admin", op="pin.current", query={"clinic": CLINIC}),
    Endpoint("pin-generate", "POST", "Generate today's PINs where missing (idempotent); "
             "with fresh, draw new ones at once", "admin", op="pin.rotate",
             body={"clinic": CLINIC,
                   "fresh": {"type": "boolean", "default": False,
                             "description": "replace today's PINs (one clinic or all)"}}),
    Endpoint("route-create", "POST", "Create today's route (sticky) and enter its first clinic",
             "patient", op="route.create",
             body={"exam_type": {"type": "string", "maxLength": 32,
                                 "enum": ["recruitment", "promotion", "transfer", "referral",
                                          "contract", "aviation", "cooks", "courses"]}},
             required=("exam_type",)),
    Endpoint("route-get", "GET", "Today's route with done / current / locked stations",
             "patient", op="route.get"),
    Endpoint("path-choose", "POST", "Where to go now; re-enters the route after a no-show",
             "patient", op="path.choose"),
    Endpoint("stats-dashboard", "GET", "Per clinic waiting, serving, served, mean wait",
             "admin", op="stats.dashboard"),
    Endpoint("stats-queues", "GET", "Every clinic's public numbers (no IDs)", "anyone"),
    Endpoint("announce", "GET", "A called number spoken (WAV): \"number 23, ophthalmology\"",
             "anyone",
             query={"clinic": CLINIC,
                    "number": {"type": "integer", "minimum": 1, "maximum": 9999},
                    "lang": {"type": "string", "enum": ["ar", "en"], "default": "ar"}}),
    Endpoint("events-stream", "GET",
             "Server-Sent Events of one channel; resume with Last-Event-ID",
             "as the channel (docs/protocol.md)",
             query={"channel": {"type": "string", "maxLength": 64,
                                "description": "clinic:<code>, clinic:<code>:staff, me, admin"},
                    "since": {"type": "integer", "minimum": 0},
                    "ticket": {"type": "string", "maxLength": 64,
                               "description": "single-use ticket from stream-ticket, for "
                                              "EventSource clients (never a session token)"}}),
    Endpoint("stream-ticket", "POST",
             "A single-use ticket (30 s) for events-stream on one channel",
             "the channel's subscriber", op="stream.ticket",
             body={"channel": {"type": "string", "maxLength": 64}}, required=("channel",)),
    Endpoint("reports-daily", "GET", "Daily report", "admin", query=REPORT_QUERY),
    Endpoint("reports-weekly", "GET", "Weekly report (Saturday-Friday)", "admin",
             query=REPORT_QUERY),
    Endpoint("reports-monthly", "GET", "Monthly report", "admin", query=REPORT_QUERY),
    Endpoint("reports-annual", "GET", "Annual report", "admin", query=REPORT_QUERY),
    Endpoint("logout", "POST", "End the session of the bearer token",
             "patient, staff, admin, reception"),
    Endpoint("admin-staff-create", "POST", "Create a staff (one clinic) or reception account",
             "admin", op="admin.staff.create",
             body={"username": USERNAME, "password": PASSWORD, "clinic": CLINIC,
                   "role": {"type": "string", "enum": ["staff", "reception"],
                            "default": "staff"}},
             required=("username", "password")),
    Endpoint("admin-staff-list", "GET", "Every account: username, role, clinic, active",
             "admin", op="admin.staff.list"),
    Endpoint("admin-staff-disable", "POST",
             "Disable an account; its sessions end on every server at once", "admin",
             op="admin.staff.disable", body={"username": USERNAME}, required=("username",)),
    Endpoint("admin-staff-enable", "POST", "Enable a disabled account", "admin",
             op="admin.staff.enable", body={"username": USERNAME}, required=("username",)),
    Endpoint("admin-staff-reset-password", "POST",
             "Set a new password; the account's sessions end on every server at once",
             "admin", op="admin.staff.reset_password",
             body={"username": USERNAME, "password": PASSWORD},
             required=("username", "password")),
    Endpoint("reception-register", "POST",
             "Register an examinee at the desk: today's route, its first entry and a "
             "one-time login_code for the slip", "reception, admin", op="reception.register",
             body={"patient_id": {"type": "string", "maxLength": 64},
                   "gender": {"type": "string", "enum": ["male", "female"]},
                   "exam_type": {"type": "string", "maxLength": 32}},
             required=("patient_id", "gender", "exam_type")),
)
