"""The one error hierarchy: every failure a client can see, rendered the same way on
HTTP and WebSocket (docs/protocol.md's envelope).

    MMCError                      code            status  close
    ├── BadRequest                bad_request     400
    ├── Unauthorized              unauthorized    401
    ├── Forbidden                 forbidden       403
    ├── WrongPin                  wrong_pin       403
    ├── NotFound                  not_found       404
    ├── Conflict                  conflict        409
    ├── Empty                     empty           409
    ├── TooLarge                  too_large       413     1009
    ├── Locked                    locked          429           (retry_after)
    ├── RateLimited               rate_limited    429     1008  (retry_after)
    ├── Unavailable               unavailable     503           (retry_after)
    └── Internal                  internal        500

Messages are written for the person in front of the screen and never carry a PIN or
another patient's data.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MMCError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    close_code: ClassVar[int | None] = None
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)

    def envelope(self, request_id: object = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": request_id,
            "ok": False,
            "error": self.code,
            "message": self.message,
            "status": self.status,
        }
        if self.retry_after is not None:
            body["retry_after"] = max(1, round(self.retry_after))
        return body


class BadRequest(MMCError):
    code, status, default_message = "bad_request", 400, "bad request"


class Unauthorized(MMCError):
    code, status, default_message = "unauthorized", 401, "log in first"


class Forbidden(MMCError):
    code, status, default_message = "forbidden", 403, "not allowed"


class WrongPin(MMCError):
    code, status, default_message = "wrong_pin", 403, "wrong PIN"


class NotFound(MMCError):
    code, status, default_message = "not_found", 404, "not found"


class Conflict(MMCError):
    code, status, default_message = "conflict", 409, "conflict"


class Empty(MMCError):
    code, status, default_message = "empty", 409, "nobody is waiting"


class TooLarge(MMCError):
    code, status, close_code, default_message = "too_large", 413, 1009, "frame too large"


class Locked(MMCError):
    code, status, default_message = "locked", 429, "too many attempts; try again later"


class RateLimited(MMCError):
    code, status, close_code, default_message = "rate_limited", 429, 1008, "too many requests"


class Unavailable(MMCError):
    code, status, default_message = "unavailable", 503, "service unavailable; retry shortly"


class Internal(MMCError):
    code, status, default_message = "internal", 500, "internal error"


BY_CODE: dict[str, type[MMCError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, WrongPin, NotFound, Conflict, Empty,
                TooLarge, Locked, RateLimited, Unavailable, Internal)
}
