"""WebSocket frames written straight into uvicorn's transport. A server frame is
unmasked and, with per-message deflate off, the same bytes for every reader: the hub
encodes it once and writes it to each socket without a task switch per socket.

`FanoutWebSocketProtocol` is uvicorn's sans-io WebSocket protocol plus one ASGI
extension, `mmc.direct`: a `DirectWriter` for the accepted socket, and its keepalive
pings timed on a shared grid and skipped for a peer just heard from; at the server's
stop, a socket already closing is dropped rather than sent 1012. Everything else
(handshake, sending pings and reading pongs, closing, reading) stays uvicorn's and
websockets'.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "mmc.direct"
_TEXT_FIN = 0x81  # FIN + opcode 1 (text), RFC 6455 section 5.2
# Keepalive pings fall due on this grid (seconds): see FanoutWebSocketProtocol.
PING_GRID = 0.25
# Linux's struct tcp_info (linux/tcp.h, 4.6 and later): tcpi_last_ack_recv, the
# milliseconds since the peer last acknowledged anything, is at byte 56, and
# tcpi_notsent_bytes, what the kernel holds but cannot send yet, at byte 144.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_SIZE = 148
_LAST_ACK_RECV, _NOTSENT_BYTES = 56, 144


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


def quiet_for(transport: asyncio.WriteTransport) -> float | None:
    """Seconds since the peer's TCP last acknowledged anything, when nothing waits to
    be sent (in the transport or in the kernel); None when something waits, or when
    the kernel cannot say (not Linux, not TCP)."""
    sock = transport.get_extra_info("socket")
    # (uvloop's transports are not asyncio.WriteTransport subclasses: no isinstance.)
    if _TCP_INFO is None or sock is None or transport.get_write_buffer_size():
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE or struct.unpack_from("=I", info, _NOTSENT_BYTES)[0]:
        return None
    return float(struct.unpack_from("=I", info, _LAST_ACK_RECV)[0]) / 1000


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-io protocol, handing the app a DirectWriter for its socket;
    keepalive pings due on a shared grid (PING_GRID) rather than each at its own
    instant, and only to a peer that has been quiet for a whole interval."""

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        self._ping_in(max(0.0, self.ping_interval - self.last_ping_rtt))

    def _ping_in(self, delay: float) -> None:
        # uvicorn arms each socket's timer for its own instant, so 2,000 idle phones
        # wake the process 100 times a second for one ping each. Rounded up to the
        # grid, the pings due in the same slot leave in one wake-up and their pongs
        # come back together (server CPU per idle phone about a third lower in the
        # polling scenario). A ping leaves less than PING_GRID late.
        due = self.loop.time() + delay
        self.ping_timer = self.loop.call_at(math.ceil(due / PING_GRID) * PING_GRID,
                                            self.send_keepalive_ping)

    def send_keepalive_ping(self) -> None:
        # A ping asks "are you there?". A peer whose TCP acknowledged something less
        # than an interval ago has answered that already: the check moves to one
        # interval after that acknowledgement, when the peer will have been quiet for
        # a whole interval. A phone told its place every few seconds, or a display
        # showing calls, is then not pinged; a quiet socket is pinged as before, and
        # so is one whose frames wait unsent (a reader that stopped reading: the ping
        # waits behind them, goes unanswered, and the socket is dropped). A peer that
        # vanishes is pinged one interval after it was last heard and dropped one
        # timeout later: the bound of pinging every interval.
        assert self.ping_interval is not None
        if not (self.close_sent or self.transport.is_closing()):
            quiet = quiet_for(self.transport)
            if quiet is not None and quiet < self.ping_interval:
                self._ping_in(self.ping_interval - quiet)
                return
        super().send_keepalive_ping()

    def shutdown(self) -> None:
        # The server is stopping. A peer whose close we have answered already (websockets
        # replies as it reads the peer's close, and uvicorn then closes the transport)
        # is closing, not open: uvicorn would send it 1012 all the same, websockets
        # refuses (InvalidState), and the exception ends the server's shutdown before
        # the sockets after this one are told 1012. Such a socket has nothing left to
        # say: it is dropped, without waiting for frames it may never read.
        if not self.close_sent and self.conn.state in (State.CLOSING, State.CLOSED):
            self.stop_keepalive()
            self.transport.abort()
            return
        super().shutdown()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.response.status_code == 101:
            # The ASGI task is created but has not run yet: it sees the extension.
            scope["extensions"][EXTENSION] = DirectWriter(self)

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        super().on_task_complete(task)
        # The app is done with its socket: take its writer out of the scope. The writer
        # points back at this protocol, whose scope points at the writer; left in place,
        # every closed connection is a cycle that only a full collection frees, and the
        # serving process collects its oldest generation rarely (server/collector.py).
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(EXTENSION, None)
