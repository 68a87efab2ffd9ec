"""One load-generator process: picows clients (displays, phones, callers) on its own
uvloop, driven over a pipe by the coordinator (tests/bench/fleet.py). It counts every
frame and turns CALLED events and POSITION notices into latency samples."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tests.bench import worker

DISPLAY, PHONE, CALLER, PROBE = "display", "phone", "caller", "probe"
SETUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Spec:
    """One socket to open: who it is, which clinic it watches, what it subscribes."""

    kind: str
    clinic: str
    channel: str | None = None
    token: str | None = None


@dataclass
class Window:
    """What this process received during one measured phase."""

    frames: int = 0
    first: float = 0.0
    last: float = 0.0
    display_latency: list[float] = field(default_factory=list)
    seen_at: dict[tuple[str, int], float] = field(default_factory=dict)
    # (clinic, k) -> when the last of this process's phones learnt of the k-th call.
    covered: dict[tuple[str, int], float] = field(default_factory=dict)
    started_cpu: float = field(default_factory=time.process_time)

    def cover(self, clinic: str, k: int, t: float) -> None:
        key = (clinic, k)
        if self.covered.get(key, 0.0) < t:
            self.covered[key] = t


class Client(WSListener):  # type: ignore[misc]
    def __init__(self, worker: Worker, spec: Spec) -> None:
        self.worker = worker
        self.spec = spec
        self.transport: WSTransport | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.snapshot: asyncio.Future[dict[str, Any]] | None = None
        self.base: int | None = None  # ours: `ahead` in the phone's first snapshot
        self.reached = 0              # ours: how many calls the phone has learnt of
        self.frames = 0
        self.close_code: int | None = None
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.worker.on_text(self, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"closed {self.close_code}"))
        if self.snapshot is not None and not self.snapshot.done():
            self.snapshot.set_exception(ConnectionError(f"closed {self.close_code}"))

    def request(self, op: str, args: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        rid = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(ConnectionError("closed"))
            return future
        future.add_done_callback(_retrieve)
        self.pending[rid] = future
        frame: dict[str, Any] = {"id": rid, "op": op}
        if args is not None:
            frame["args"] = args
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))
        return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A request nobody awaits any more (its socket closed) is not an error to log."""
    if not future.cancelled():
        future.exception()


class Worker:
    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.window: Window | None = None
        self.probe_seen: dict[str, int] = {}
        self.probe_changed = asyncio.Event()
        self.extensions: dict[str, Any] = {}

    # --- frames ------------------------------------------------------------------------

    def on_text(self, client: Client, data: bytes) -> None:
        t = time.time()
        frame = orjson.loads(data)
        w = self.window
        if w is not None:
            w.frames += 1
            if not w.first:
                w.first = t
            w.last = t
            client.frames += 1
        if "ok" in frame:
            future = client.pending.pop(frame.get("id"), None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        kind = frame.get("type")
        if kind == "event":
            if frame.get("event") == "CALLED":
                self.on_called(client, frame, t)
        elif kind == "notice":
            if frame.get("notice") == "POSITION" and client.base is not None and w is not None:
                k = client.base - int(frame["data"]["ahead"])
                for j in range(client.reached + 1, k + 1):
                    w.cover(client.spec.clinic, j, t)
                client.reached = max(client.reached, k)
        elif kind == "snapshot":
            entry = (frame.get("state") or {}).get("entry") if client.spec.kind == PHONE else None
            if isinstance(entry, dict) and entry.get("ahead") is not None:
                client.base = int(entry["ahead"])
            if client.snapshot is not None and not client.snapshot.done():
                client.snapshot.set_result(frame)

    def on_called(self, client: Client, frame: dict[str, Any], t: float) -> None:
        clinic, kind = client.spec.clinic, client.spec.kind
        if kind == PROBE:
            self.probe_seen[clinic] = self.probe_seen.get(clinic, 0) + 1
            self.probe_changed.set()
        w = self.window
        if w is None:
            return
        at = datetime.fromisoformat(frame["at"]).timestamp()
        if kind in (DISPLAY, PROBE):
            w.display_latency.append(t - at)
            w.seen_at[(clinic, int(frame["seq"]))] = at
        elif kind == PHONE and client.base is None:
            # A peer's phone watches the clinic channel: its seq counts the calls.
            w.cover(clinic, int(frame["seq"]), t)

    # --- commands from the coordinator -------------------------------------------------

    async def cmd_connect(self, url: str, specs: list[dict[str, Any]], source: str,
                          concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}
        started = time.perf_counter()

        async def one(spec: Spec) -> None:
            async with gate:
                try:
                    self.clients.append(await self.open(url, spec, source))
                except Exception as exc:
                    name = type(exc).__name__ + (f" {exc}"[:60] if str(exc) else "")
                    errors[name] = errors.get(name, 0) + 1

        await asyncio.gather(*(one(Spec(**s)) for s in specs))
        return {"connected": len(specs) - sum(errors.values()), "errors": errors,
                "seconds": time.perf_counter() - started}

    async def open(self, url: str, spec: Spec, source: str) -> Client:
        _, client = await ws_connect(
            lambda: Client(self, spec), url, local_addr=(source, 0),
            extra_headers={"Sec-WebSocket-Protocol": "mmc.v1"},
            websocket_handshake_timeout=SETUP_TIMEOUT, max_frame_size=1 << 20)
        assert isinstance(client, Client)
        async with asyncio.timeout(SETUP_TIMEOUT):
            if spec.token is not None:
                reply = await client.request("auth", {"token": spec.token})
                if not reply.get("ok"):
                    raise RuntimeError(f"auth: {reply.get('error')}")
            if spec.channel is not None:
                client.snapshot = asyncio.get_running_loop().create_future()
                client.snapshot.add_done_callback(_retrieve)
                reply = await client.request("subscribe", {"channel": spec.channel})
                if not reply.get("ok"):
                    raise RuntimeError(f"subscribe: {reply.get('error')}")
                await client.snapshot
        return client

    async def cmd_measure(self) -> dict[str, Any]:
        for client in self.clients:
            client.frames = 0
        self.window = Window()
        return {}

    async def cmd_report(self) -> dict[str, Any]:
        w, self.window = self.window or Window(), None
        watchers = [c for c in self.clients if c.spec.kind in (DISPLAY, PHONE)]
        return {
            "frames": w.frames, "first": w.first, "last": w.last,
            "display_latency": w.display_latency,
            "seen_at": [[c, s, at] for (c, s), at in w.seen_at.items()],
            "covered": [[c, k, t] for (c, k), t in w.covered.items()],
            "silent": sum(1 for c in watchers if c.frames == 0),
            "closed": sum(1 for c in watchers if c.closed),
            "close_codes": sorted({c.close_code for c in watchers if c.close_code}),
            "sockets": len(watchers),
            "cpu_seconds": time.process_time() - w.started_cpu,
        }

    async def cmd_call(self, mode: str, seconds: float, rate: float, max_calls: int,
                       window: int = 1, delay: float = 0.0) -> dict[str, Any]:
        from tests.bench.calls import call_clinics
        return await call_clinics(self, mode, seconds, rate, max_calls, window, delay)

    async def cmd_mixed(self, **plan: Any) -> dict[str, Any]:
        from tests.bench.mixed import run_mixed
        return await run_mixed(self, **plan)

    async def cmd_poll(self, **plan: Any) -> dict[str, Any]:
        from tests.bench.polling import run_pollers
        return await run_pollers(self, **plan)

    async def close_all(self) -> None:
        for client in self.clients:
            if client.transport is not None and not client.closed:
                client.transport.disconnect(graceful=False)
        self.clients.clear()
        await asyncio.sleep(0.05)

    async def serve(self, conn: Connection) -> None:
        await worker.serve(conn, self, self.close_all)


def main(conn: Connection) -> None:
    """Process entry point: as many sockets as the hard file limit allows."""
    worker.run_sockets(Worker().serve(conn))
