"""The two screens people look at (`/` the patient's phone, `/display` the waiting-room
wall) and their static assets from clients/web, compressed, cached and under a CSP.

Assets live under `/assets/<build>/...`, where `build` is a hash of every file in
clients/web: an upgrade changes the path, so a browser may keep an asset forever
(`immutable`) and still never runs a stale script; the HTML itself is `no-cache`
(revalidated by ETag) and names the current build. Everything is read and gzipped once,
when the routes are built, so serving is a dictionary lookup."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

WEB_ROOT = Path(__file__).resolve().parent.parent / "clients" / "web"
BUILD_MARK = "__BUILD__"
PAGES = {"/": "patient.html", "/display": "display.html", "/clinic": "clinic.html",
         "/admin": "admin.html", "/reception": "reception.html"}
# Only these kinds are served; anything else under clients/web (a test, a README) is not.
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".txt")
# Only this origin: no inline script or style, no framing, no <base>, and Trusted Types
# so a stray innerHTML throws instead of running. connect-src 'self' covers same-origin
# ws:// and wss:// in Chromium and Firefox.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; "
       "require-trusted-types-for 'script'; trusted-types 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), screen-wake-lock=(self)",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, gzipped bytes (when smaller) and validators."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, suffix: str) -> Asset:
        packed = gzip.compress(body, 9, mtime=0) if suffix in COMPRESSIBLE else None
        if packed is not None and len(packed) >= len(body):
            packed = None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        media_type = TYPES.get(suffix) or mimetypes.guess_type("x" + suffix)[0] or ""
        return cls(body, packed, media_type, etag)

    def response(self, request: Request, headers: dict[str, str]) -> Response:
        headers = {**headers, "ETag": self.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        body = self.body
        if self.gzipped is not None and accepts_gzip(request):
            body = self.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=self.media_type, headers=headers)


def accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0")
    return False


@dataclass(frozen=True)
class Site:
    """The pages and assets of one build of clients/web."""

    build: str
    pages: dict[str, Asset]
    assets: dict[str, Asset]

    @classmethod
    def load(cls, root: Path = WEB_ROOT) -> Site:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TYPES
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        build = digest.hexdigest()[:12]
        assets = {p.relative_to(root).as_posix(): Asset.of(p.read_bytes(), p.suffix)
                  for p in files if p.suffix != ".html"}
        pages = {}
        for url, name in PAGES.items():
            path = root / name
            if path.is_file():
                html = path.read_bytes().replace(BUILD_MARK.encode(), build.encode())
                pages[url] = Asset.of(html, ".html")
        return cls(build, pages, assets)

    async def page(self, request: Request) -> Response:
        page = self.pages.get(request.url.path)
        if page is None:
            raise HTTPException(404)
        return page.response(request, {**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    async def asset(self, request: Request) -> Response:
        # Another build's path is refused: a page of that build must reload, not mix.
        asset = (self.assets.get(request.path_params["path"])
                 if request.path_params["build"] == self.build else None)
        if asset is None:
            raise HTTPException(404)
        return asset.response(request, {"Cache-Control": IMMUTABLE,
                                        "X-Content-Type-Options": "nosniff"})


def routes(root: Path = WEB_ROOT) -> list[BaseRoute]:
    """`/`, `/display` and `/assets/<build>/<path>`; unknown paths fall through to the
    app's JSON 404."""
    site = Site.load(root)
    return [
        *(Route(url, site.page, methods=["GET", "HEAD"]) for url in PAGES),
        Route("/assets/{build}/{path:path}", site.asset, methods=["GET", "HEAD"]),
    ]
