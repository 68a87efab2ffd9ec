"""Headers every response carries, pages and API alike (pure ASGI): no MIME sniffing, no
referrer, no framing of API answers, no caching of what carries a token or a PIN, and
HSTS when the public address is https. Pages set their own Content-Security-Policy."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
# API answers are data, never a page to frame; pages/ sets frame-ancestors itself.
API_ONLY = ((b"x-frame-options", b"DENY"),
            (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
NO_STORE = (b"cache-control", b"no-store")
# Every API answer may carry a token (logins), a PIN (pin-status) or a patient's data,
# so none is stored by a browser or a proxy; the metrics too name clinics' queues.
PRIVATE_PREFIXES = ("/api/", "/metrics")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        private = path.startswith(PRIVATE_PREFIXES)
        api = path.startswith("/api/") or path in ("/health", "/ready", "/metrics")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = list(ALWAYS)
                if api:
                    extra.extend(API_ONLY)
                if self.hsts:
                    extra.append(HSTS)
                if private:
                    # The stream's own no-cache gives way: it carries private frames.
                    headers = [(n, v) for n, v in headers if n.lower() != b"cache-control"]
                    present.discard(b"cache-control")
                    extra.append(NO_STORE)
                headers.extend((n, v) for n, v in extra if n not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
