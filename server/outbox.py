"""A socket's bounded queue of serialised frames and its backpressure policy: the hub
never waits on a client (a full queue closes it with 1013); replies wait for room.

With a DirectWriter (server/wire.py) the queue stays empty: frames go straight into
the socket's transport in call order, and the bound applies to what the client has
not taken yet (the transport's backlog) instead of to the queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from server.protocol import CloseCode
from server.wire import Batch, DirectWriter, encode_text


class Outbox:
    """One client's bounded queue of frames, drained by its one writer. The hub only
    `offer`s (never waits; a full queue closes the outbox with 1013); what one client
    asked for (replies, snapshots, replays) is `put`, which waits while the queue is
    half full so live frames always find room behind it."""

    def __init__(self, capacity: int, direct: DirectWriter | None = None) -> None:
        self.capacity = capacity
        self.direct = direct
        self._half = max(1, capacity // 2)
        self.close_code: int | None = None
        self._drain = False
        # Made on first use: with direct writes nothing ever queues or waits, and an
        # idle socket then holds none of them (a deque or an asyncio.Event is most of
        # a KiB each; see the connections scenario of tests/bench).
        self._frames: deque[str] | None = None
        self._readable: asyncio.Event | None = None
        self._roomy: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        # Called once when the outbox closes (its socket stops reading then).
        self.on_close: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def __len__(self) -> int:
        return len(self._frames) if self._frames else 0

    def _queue(self, frame: str) -> None:
        if self._frames is None:
            self._frames = deque()
        self._frames.append(frame)
        if self._readable is not None:
            self._readable.set()

    def _write_through(self, frame: str, wire: bytes | None, batch: Batch | None = None
                       ) -> bool:
        """Write straight to the socket when nothing is queued ahead (order holds);
        False when the frame must be queued instead."""
        if self.direct is None or self._frames:
            return False
        if batch is not None:
            self.direct.cork(batch)
        backlog = self.direct.write(wire if wire is not None else encode_text(frame))
        if backlog is None:
            # The socket is closing under us: nothing more will be read from here.
            self.close(CloseCode.NORMAL)
        elif backlog > self.capacity:
            self.close(CloseCode.TRY_AGAIN_LATER)
        return True

    def offer(self, frame: str, wire: bytes | None = None, batch: Batch | None = None) -> bool:
        """Hand over a live frame (`wire`: the same frame already encoded; `batch`: the
        hub's read, whose writes go out together)."""
        if self.close_code is not None:
            return False
        if self._write_through(frame, wire, batch):
            return self.close_code is None
        if len(self) >= self.capacity:
            self.close(CloseCode.TRY_AGAIN_LATER)
            return False
        self._queue(frame)
        return True

    async def put(self, frame: str) -> None:
        while self.close_code is None and len(self) >= self._half:
            if self._roomy is None:
                self._roomy = asyncio.Event()
            self._roomy.clear()
            await self._roomy.wait()
        if self.close_code is None and not self._write_through(frame, None):
            self._queue(frame)

    def close(self, code: int, *, drain: bool = False) -> None:
        """Stop; with `drain` the frames already queued are still written first."""
        if self.close_code is None:
            self.close_code = code
            self._drain = drain
            if self.on_close is not None:
                self.on_close()
        if not self._drain and self._frames:
            self._frames.clear()
        for event in (self._readable, self._roomy, self._closed):
            if event is not None:
                event.set()

    async def wait_closed(self) -> None:
        if self.close_code is None:
            if self._closed is None:
                self._closed = asyncio.Event()
            await self._closed.wait()

    async def get(self) -> str | None:
        """The next frame, or None once closed (and drained)."""
        while True:
            if self._frames and (self.close_code is None or self._drain):
                frame = self._frames.popleft()
                if len(self._frames) < self._half and self._roomy is not None:
                    self._roomy.set()
                return frame
            if self.close_code is not None:
                return None
            if self._readable is None:
                self._readable = asyncio.Event()
            self._readable.clear()
            await self._readable.wait()
