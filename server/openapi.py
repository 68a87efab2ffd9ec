"""The OpenAPI 3.1 document of the HTTP API, built from server/endpoints.py so the
document and the routes cannot drift apart (a test checks both ways)."""

from __future__ import annotations

from typing import Any

from server import __version__
from server.endpoints import ENDPOINTS, Endpoint

ERROR = {
    "type": "object",
    "required": ["id", "ok", "error", "message", "status"],
    "properties": {
        "id": {"type": "null"},
        "ok": {"const": False},
        "error": {"type": "string", "enum": [
            "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "wrong_pin",
            "locked", "rate_limited", "empty", "too_large", "unavailable", "internal"]},
        "message": {"type": "string"},
        "status": {"type": "integer"},
        "retry_after": {"type": "integer", "minimum": 1},
    },
}
OK = {
    "type": "object",
    "required": ["ok", "result"],
    "properties": {"ok": {"const": True}, "result": {"type": "object"}},
}
# Every status an endpoint can answer with besides 200 (docs/protocol.md's codes).
ERROR_STATUSES = {
    "400": "bad request", "401": "missing, invalid or expired token",
    "403": "not allowed (or wrong PIN)", "404": "not found", "409": "conflict or empty",
    "413": "body too large", "429": "rate limited or locked (Retry-After)",
    "503": "database unavailable (Retry-After)",
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    error_response = {"content": {"application/json": {"schema": {"$ref":
                                                                   "#/components/schemas/Error"}}}}
    op: dict[str, Any] = {
        "operationId": endpoint.name.replace("-", "_"),
        "summary": endpoint.summary,
        "description": f"Who may call: {endpoint.roles}.",
        "security": [{}, {"bearer": []}],
        "responses": {"200": _success(endpoint)} | {
            status: {"description": text, **error_response}
            for status, text in ERROR_STATUSES.items()},
    }
    if endpoint.query:
        op["parameters"] = [{"name": name, "in": "query", "required": False, "schema": schema}
                            for name, schema in endpoint.query.items()]
    if endpoint.method == "POST":
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": endpoint.body,
                "required": list(endpoint.required),
                "additionalProperties": True,
            }}},
        }
    return op


def _success(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.name == "events-stream":
        return {"description": "a stream of Server-Sent Events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    if endpoint.name == "announce":
        return {"description": "the spoken call",
                "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}
    content: dict[str, Any] = {"application/json": {"schema": {"$ref":
                                                               "#/components/schemas/Ok"}}}
    if endpoint.name.startswith("reports-"):
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"description": "success", "content": content}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Medical committee queue server", "version": __version__,
                 "description": "The queue server's commands over HTTP, the same ones the "
                                "WebSocket at /ws carries (docs/protocol.md): JSON bodies, "
                                "bearer tokens, one error envelope."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "Ok": OK},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
