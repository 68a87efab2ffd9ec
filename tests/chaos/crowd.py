"""One crowd process: picows clients (displays, phones, staff) that reconnect through
nginx and resume with `since`, each keeping a ledger of the seqs it accepted, plus the
mixed command driver; driven over a pipe by the coordinator like tests/bench/loadgen."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tests.bench import stats, worker
from tests.chaos.driver import TERMINAL, Driver

DISPLAY, PHONE, STAFF = "display", "phone", "staff"
SETUP_TIMEOUT = 5.0
# A display says something about once a minute, as the real one's display.hello every
# 15 s does: the server closes an anonymous socket silent for 300 s (server/ws.py).
DISPLAY_SPEAKS = (45.0, 75.0)
# A full patient ID (10+ digits in a row) or a PIN's field in a public or patient frame.
FULL_ID = re.compile(rb"(?<![0-9A-Za-z])[0-9]{10,}(?![0-9A-Za-z])")
RECENT = 2048                 # accepted seqs remembered to tell a repeat from a late one
LAG_SAMPLE = 200_000


@dataclass(frozen=True)
class Spec:
    kind: str
    clinic: str
    channel: str
    token: str | None = None
    patient: str | None = None


@dataclass
class Segment:
    """Seqs accepted without a reset in between: (start, last], how many, their sum."""

    start: int
    last: int
    count: int = 0
    total: int = 0


@dataclass
class Ledger:
    segments: list[Segment] = field(default_factory=list)
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    recent_set: set[int] = field(default_factory=set)
    duplicates: int = 0      # a seq seen before, dropped by the client's de-duplication
    out_of_order: int = 0    # a seq below the last one that was never seen
    resets: int = 0          # a resume answered with a reset snapshot

    @property
    def last(self) -> int | None:
        return self.segments[-1].last if self.segments else None

    def remember(self, seq: int) -> None:
        if len(self.recent) == RECENT:
            self.recent_set.discard(self.recent[0])
        self.recent.append(seq)
        self.recent_set.add(seq)


class Client(WSListener):
    def __init__(self, crowd: Crowd, spec: Spec) -> None:
        self.crowd = crowd
        self.spec = spec
        self.transport: WSTransport | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ledger = Ledger()
        self.up = False
        self.down = asyncio.Event()
        self.subscribed: asyncio.Future[None] | None = None
        self.connects = 0
        self.close_codes: list[int] = []
        self.worst_lag: float | None = None
        self.dropped_at: float | None = None
        self.reconnect_gaps: list[float] = []
        self.reading = True
        self.status: str | None = None   # a phone's own entry, from its `me` events
        self.not_before = 0.0            # retry_after: no command before this

    # picows callbacks ------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.crowd.on_text(self, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_codes.append(frame.get_close_code().value)
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.up = False
        if self.dropped_at is None:
            self.dropped_at = time.monotonic()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))
        self.pending.clear()
        if self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed"))
        self.down.set()

    def request(self, op: str, args: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        if self.transport is None or self.down.is_set():
            future.set_exception(ConnectionError("not connected"))
            return future
        rid = next(self.ids)
        self.pending[rid] = future
        body: dict[str, Any] = {"id": rid, "op": op}
        if args is not None:
            body["args"] = args
        self.transport.send(WSMsgType.TEXT, orjson.dumps(body))
        return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class Window:
    """What happened during one fault (or soak slice)."""

    started: float = field(default_factory=time.time)
    lags: list[float] = field(default_factory=list)
    lag_seen: int = 0
    privacy: list[str] = field(default_factory=list)
    leaks: int = 0

    def leak(self, what: str) -> None:
        self.leaks += 1
        if len(self.privacy) < 5:
            self.privacy.append(what)


class Crowd:
    def __init__(self) -> None:
        self.url = ""
        self.source = "127.0.0.1"
        self.clients: list[Client] = []
        self.keepers: list[asyncio.Task[None]] = []
        self.stopping = False
        self.window = Window()
        self.connect_errors: dict[str, int] = {}
        self.driver: Driver | None = None

    # frames ----------------------------------------------------------------------------

    def on_text(self, client: Client, data: bytes) -> None:
        now = time.time()
        frame = orjson.loads(data)
        if "ok" in frame:
            future = client.pending.pop(frame.get("id"), None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        kind = frame.get("type")
        if kind in ("event", "snapshot", "notice") and client.spec.kind != STAFF:
            self.check_privacy(client, data)
        if kind == "event":
            self.on_event(client, frame, now)
        elif kind == "snapshot":
            self.on_snapshot(client, frame)

    def check_privacy(self, client: Client, data: bytes) -> None:
        """No PIN and no full patient ID, the patient's own included, in any frame."""
        w = self.window
        if b'"pin"' in data or b'"pins"' in data:
            w.leak(f"{client.spec.channel}: a pin field: {data[:200]!r}")
        elif FULL_ID.search(data):
            w.leak(f"{client.spec.channel}: a full ID: {data[:200]!r}")

    def on_snapshot(self, client: Client, frame: dict[str, Any]) -> None:
        ledger, seq = client.ledger, int(frame["seq"])
        if ledger.last is None:
            ledger.segments.append(Segment(seq, seq))
        elif frame.get("reset"):
            # What lay between the last seq and this snapshot is not known to have
            # arrived: a new segment, and the ledger counts the reset. (A `me` resume
            # ends with a snapshot that is not a reset: every event up to its seq came
            # before it, and the ledger holds the server to that.)
            ledger.resets += 1
            ledger.segments.append(Segment(seq, seq))
        if client.spec.kind == PHONE:
            entry = (frame.get("state") or {}).get("entry")
            client.status = entry.get("status") if isinstance(entry, dict) else None
        if client.subscribed is not None and not client.subscribed.done():
            client.subscribed.set_result(None)

    def on_event(self, client: Client, frame: dict[str, Any], now: float) -> None:
        ledger, seq = client.ledger, int(frame["seq"])
        last = ledger.last
        if last is None:
            return  # before the snapshot: not part of this client's ledger
        if seq <= last:
            if seq in ledger.recent_set:
                ledger.duplicates += 1
            else:
                ledger.out_of_order += 1
            return
        segment = ledger.segments[-1]
        segment.count += 1
        segment.total += seq
        segment.last = seq
        ledger.remember(seq)
        if client.subscribed is not None and not client.subscribed.done():
            client.subscribed.set_result(None)  # a replay answers a resume
        lag = now - datetime.fromisoformat(frame["at"]).timestamp()
        if client.worst_lag is None or lag > client.worst_lag:
            client.worst_lag = lag
        w = self.window
        w.lag_seen += 1
        if len(w.lags) < LAG_SAMPLE:
            w.lags.append(lag)
        elif (j := random.randrange(w.lag_seen)) < LAG_SAMPLE:
            w.lags[j] = lag
        name = frame.get("event")
        if client.spec.kind == PHONE:
            if name in TERMINAL:
                client.status = None
            elif name in ("ENTERED", "CALLED", "RECALLED"):
                client.status = name
        elif client.spec.kind == STAFF and self.driver is not None:
            self.driver.on_staff_event(client.spec.clinic, seq, name,
                                       (frame.get("data") or {}).get("number"))

    # keeping each client connected -----------------------------------------------------

    async def keep(self, client: Client) -> None:
        attempt = 0
        while not self.stopping:
            try:
                await self.open(client)
                attempt = 0
                await self.stay(client)
            except Exception as exc:
                name = type(exc).__name__
                self.connect_errors[name] = self.connect_errors.get(name, 0) + 1
                if client.transport is not None and not client.down.is_set():
                    client.transport.disconnect(graceful=False)
            if self.stopping:
                return
            # Jittered backoff, as clients/python: a storm must not come back in step.
            delay = min(2.0, 0.1 * 2 ** min(attempt, 5))
            await asyncio.sleep(random.uniform(delay / 2, delay))
            attempt += 1

    async def stay(self, client: Client) -> None:
        """Until the socket drops. A display that reads sends a `ping` now and then;
        without it the servers closed every display as idle every five minutes and all
        584 reconnected at once, which no real display does (docs/chaos.md, finding 12).
        One that stopped reading (the slow-reader fault) stays silent, frozen."""
        if client.spec.kind != DISPLAY:
            await client.down.wait()
            return
        while not client.down.is_set():
            try:
                await asyncio.wait_for(client.down.wait(), random.uniform(*DISPLAY_SPEAKS))
            except TimeoutError:
                if client.reading:
                    client.request("ping")

    async def open(self, client: Client) -> None:
        client.down = asyncio.Event()
        client.transport = None
        _, listener = await ws_connect(
            lambda: client, self.url, local_addr=(self.source, 0),
            extra_headers={"Sec-WebSocket-Protocol": "mmc.v1"},
            websocket_handshake_timeout=SETUP_TIMEOUT, max_frame_size=1 << 20)
        assert listener is client
        client.connects += 1
        async with asyncio.timeout(SETUP_TIMEOUT):
            if client.spec.token is not None:
                reply = await client.request("auth", {"token": client.spec.token})
                if not reply.get("ok"):
                    raise RuntimeError(f"auth {reply.get('error')}")
            args: dict[str, Any] = {"channel": client.spec.channel}
            if client.ledger.last is not None:
                args["since"] = client.ledger.last
            client.subscribed = asyncio.get_running_loop().create_future()
            client.subscribed.add_done_callback(_retrieve)
            reply = await client.request("subscribe", args)
            if not reply.get("ok"):
                raise RuntimeError(f"subscribe {reply.get('error')}")
        client.up = True
        if client.dropped_at is not None:
            client.reconnect_gaps.append(time.monotonic() - client.dropped_at)
            client.dropped_at = None
        if not client.reading and client.transport is not None:
            client.transport.underlying_transport.pause_reading()

    # commands from the coordinator -----------------------------------------------------

    async def cmd_connect(self, url: str, source: str, specs: list[dict[str, Any]],
                          within: float) -> dict[str, Any]:
        self.url, self.source = url, source
        new = [Client(self, Spec(**s)) for s in specs]
        self.clients += new
        if any(c.spec.kind == STAFF for c in new):
            self.driver = Driver(self)
        for i, client in enumerate(new):
            self.keepers.append(asyncio.create_task(self.keep(client)))
            if i % 50 == 49:
                await asyncio.sleep(0.02)  # a gentle start, not a storm
        await self.settle(new, within)
        return {"up": sum(c.up for c in new), "errors": dict(self.connect_errors)}

    @staticmethod
    async def settle(clients: list[Client], within: float) -> None:
        """Until every client is up (bounded): polled, the keepers own the events."""
        for _ in range(int(within / 0.1)):
            if all(c.up for c in clients):
                return
            await asyncio.sleep(0.1)

    async def cmd_window(self) -> dict[str, Any]:
        """Start a new window: lags and reconnect gaps from now on."""
        self.window = Window()
        for c in self.clients:
            c.worst_lag = None
            c.reconnect_gaps = []
            c.close_codes = []
        if self.driver is not None:
            self.driver.reset()
        return {}

    async def cmd_report(self) -> dict[str, Any]:
        if self.driver is not None:
            await self.driver.settle()
        w = self.window
        lags = sorted(w.lags)
        return {
            "lag_p50": stats.percentile(lags, 50), "lag_p99": stats.percentile(lags, 99),
            "lag_max": lags[-1] if lags else None, "lag_events": w.lag_seen,
            "worst_lags": [c.worst_lag for c in self.clients if c.worst_lag is not None],
            "gaps": [g for c in self.clients for g in c.reconnect_gaps],
            "reconnected": sum(1 for c in self.clients if c.reconnect_gaps),
            "down": sum(1 for c in self.clients if not c.up),
            "close_codes": sorted({x for c in self.clients for x in c.close_codes}),
            "privacy": w.privacy, "leaks": w.leaks,
            "commands": self.driver.report() if self.driver is not None else None,
            "connect_errors": dict(self.connect_errors),
        }

    async def cmd_current(self, heads: dict[str, int]) -> dict[str, Any]:
        """How many connected clients have not yet reached their channel's head."""
        behind = 0
        for c in self.clients:
            head = heads.get(self.key(c))
            if head is not None and (not c.up or (c.ledger.last or 0) < head):
                behind += 1
        return {"behind": behind}

    @staticmethod
    def key(c: Client) -> str:
        return f"me:{c.spec.patient}" if c.spec.channel == "me" else c.spec.channel

    async def cmd_ledger(self) -> dict[str, Any]:
        """Every client's segments, duplicates and late seqs since the last call; the
        ledgers then start again from each client's last seq."""
        out = []
        for c in self.clients:
            ledger = c.ledger
            out.append({"key": self.key(c), "kind": c.spec.kind,
                        "segments": [[s.start, s.last, s.count, s.total]
                                     for s in ledger.segments],
                        "duplicates": ledger.duplicates, "out_of_order": ledger.out_of_order,
                        "resets": ledger.resets})
            if ledger.segments:
                last = ledger.segments[-1].last
                ledger.segments = [Segment(last, last)]
            ledger.duplicates = ledger.out_of_order = ledger.resets = 0
        return {"clients": out}

    async def cmd_drive(self, **plan: Any) -> None:
        assert self.driver is not None
        try:
            await self.driver.run(**plan)
        except Exception:
            self.driver.failure = traceback.format_exc(limit=-4)

    async def cmd_halt(self) -> dict[str, Any]:
        """Stop the command driver and wait for its last replies."""
        if self.driver is not None:
            self.driver.stop = True
            await self.driver.idle.wait()
        return {}

    async def cmd_stop_reading(self, fraction: float) -> dict[str, Any]:
        """A fraction of the watchers stop reading their sockets (they stay open)."""
        watchers = [c for c in self.clients if c.spec.kind == DISPLAY]
        chosen = watchers[:max(1, int(len(watchers) * fraction))] if watchers else []
        for c in chosen:
            c.reading = False
            if c.up and c.transport is not None:
                c.transport.underlying_transport.pause_reading()
        return {"stopped": len(chosen)}

    async def cmd_resume_reading(self) -> dict[str, Any]:
        for c in self.clients:
            if not c.reading:
                c.reading = True
                if c.transport is not None and not c.down.is_set():
                    c.transport.underlying_transport.resume_reading()
        return {}

    async def cmd_drop_all(self) -> dict[str, Any]:
        """A reconnect storm: every socket cut at once (each keeper reconnects)."""
        for c in self.clients:
            if c.transport is not None and not c.down.is_set():
                c.transport.disconnect(graceful=False)
        return {"dropped": len(self.clients)}

    async def close_all(self) -> None:
        self.stopping = True
        if self.driver is not None:
            self.driver.stop = True
        for c in self.clients:
            if c.transport is not None and not c.down.is_set():
                c.transport.send_close(WSCloseCode.OK)
                c.transport.disconnect()
        for task in self.keepers:
            task.cancel()
        await asyncio.gather(*self.keepers, return_exceptions=True)

    async def serve(self, conn: Connection) -> None:
        # `drive` runs in the background; `report` reads it.
        await worker.serve(conn, self, self.close_all, background=("drive",))


def main(conn: Connection) -> None:
    worker.run_sockets(Crowd().serve(conn))
