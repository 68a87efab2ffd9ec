"""WebSocket frames written straight into uvicorn's transport. A server frame is
unmasked and, with per-message deflate off, the same bytes for every reader: the hub
encodes it once and writes it to each socket without a task switch per socket.

`FanoutWebSocketProtocol` is uvicorn's sans-io WebSocket protocol plus one ASGI
extension, `mmc.direct`: a `DirectWriter` for the accepted socket. Everything else
(handshake, pings, closing, reading) stays uvicorn's and websockets'.
"""

from __future__ import annotations

import math
import struct

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION = "mmc.direct"
_TEXT_FIN = 0x81  # FIN + opcode 1 (text), RFC 6455 section 5.2
# Keepalive pings fall due on this grid (seconds): see FanoutWebSocketProtocol.
PING_GRID = 0.25


def encode_text(text: str) -> bytes:
    """One complete, unmasked text frame (server to client)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + payload


class Batch:
    """Writers corked during one read of the hub: `flush` writes each one's frames in
    one call (a display's event and its invalidate cost one system call, not two)."""

    __slots__ = ("writers",)

    def __init__(self) -> None:
        self.writers: list[DirectWriter] = []

    def flush(self) -> None:
        writers, self.writers = self.writers, []
        for writer in writers:
            writer.flush()


class DirectWriter:
    """Writes whole frames to one accepted socket's transport, in call order, beside
    uvicorn's own writes (pings, the close frame), which are whole frames too."""

    __slots__ = ("_pending", "_protocol", "backlog")

    # A corked writer writes through past this many frames, so the backlog estimate
    # stays close to what the client really has not taken.
    CORK_LIMIT = 64

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._pending: list[bytes] | None = None
        # Frames written since the transport's buffer was last empty: an upper bound
        # on how many this client has not taken yet.
        self.backlog = 0

    @property
    def open(self) -> bool:
        p = self._protocol
        return p.handshake_complete and not (
            p.close_sent or p.disconnected or p.transport.is_closing())

    def cork(self, batch: Batch) -> None:
        """Hold frames (from anyone, so order holds) until `batch` is flushed."""
        if self._pending is None:
            self._pending = []
            batch.writers.append(self)

    def write(self, frame: bytes) -> int | None:
        """Write (or, corked, hold) one encoded frame; returns the backlog, or None once
        the socket no longer takes frames (closing or gone)."""
        if not self.open:
            return None
        pending = self._pending
        if pending is not None and len(pending) < self.CORK_LIMIT:
            pending.append(frame)
            return self.backlog + len(pending)
        if pending:
            self._send(b"".join(pending), len(pending))
            pending.clear()
        return self._send(frame, 1)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and self.open:
            self._send(b"".join(pending), len(pending))

    def _send(self, data: bytes, frames: int) -> int:
        transport = self._protocol.transport
        transport.write(data)
        self.backlog = self.backlog + frames if transport.get_write_buffer_size() else 0
        return self.backlog


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-io protocol, handing the app a DirectWriter for its socket, and
    keepalive pings due on a shared grid (PING_GRID) rather than each at its own
    instant."""

    def schedule_ping(self) -> None:
        # uvicorn arms each socket's timer for its own instant, so 2,000 idle phones
        # wake the process 100 times a second for one ping each. Rounded up to the
        # grid, the pings due in the same slot leave in one wake-up and their pongs
        # come back together (server CPU per idle phone about a third lower in the
        # polling scenario). A ping leaves less than PING_GRID late.
        assert self.ping_interval is not None
        due = self.loop.time() + max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_at(math.ceil(due / PING_GRID) * PING_GRID,
                                            self.send_keepalive_ping)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.response.status_code == 101:
            # The ASGI task is created but has not run yet: it sees the extension.
            scope["extensions"][EXTENSION] = DirectWriter(self)
