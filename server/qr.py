"""QR codes made by the server (segno), `GET /qr.svg?path=/`: PUBLIC_URL + path as an SVG,
so a display or a printed slip opens this server's page on a phone."""

from __future__ import annotations

import io
import re

import segno
from starlette.requests import Request
from starlette.responses import Response

from server import errors
from server.config import Config

# A path on this server: what a page link needs, nothing that could leave the origin.
PATH = re.compile(r"/[A-Za-z0-9/_.~?=&%+-]{0,255}")


def svg(url: str) -> bytes:
    """The QR code of `url`, medium error correction, with its text as the title."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=8, border=2, xmldecl=False,
                                    omitsize=True, title=url, dark="#000", light="#fff")
    return out.getvalue()


async def qr_svg(request: Request) -> Response:
    path = request.query_params.get("path", "/")
    if PATH.fullmatch(path) is None or path.startswith("//"):
        raise errors.BadRequest("path must be a path on this server, starting with /")
    config: Config = request.state.config
    return Response(svg(config.public_base + path), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=3600"})
