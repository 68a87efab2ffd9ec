"""The hostile crowd, in a process of its own: thousands of anonymous sockets that only
hold a slot, and a few that send garbage, oversized frames, login floods and PIN guesses.
It counts every answer by its error code and every close by its code."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from multiprocessing.connection import Connection
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tests.bench import worker


class Socket(WSListener):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.transport: WSTransport | None = None
        self.closed = asyncio.Event()
        self.ids = itertools.count(1)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            body = orjson.loads(frame.get_payload_as_bytes())
            if body.get("ok") is False:
                self.tally.count("error", str(body.get("error")))
            elif body.get("ok"):
                self.tally.count("error", "ok")
        elif frame.msg_type is WSMsgType.CLOSE:
            self.tally.count("close", str(frame.get_close_code().value))
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed.set()

    def send(self, op: str, args: dict[str, Any]) -> None:
        if self.transport is not None and not self.closed.is_set():
            self.transport.send(WSMsgType.TEXT, orjson.dumps(
                {"id": next(self.ids), "op": op, "args": args}))

    def send_raw(self, data: bytes, binary: bool = False) -> None:
        if self.transport is not None and not self.closed.is_set():
            self.transport.send(WSMsgType.BINARY if binary else WSMsgType.TEXT, data)


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {"error": {}, "close": {}, "connect": {}}
        self.sent = 0

    def count(self, kind: str, name: str) -> None:
        bucket = self.counts[kind]
        bucket[name] = bucket.get(name, 0) + 1


class Hostile:
    def __init__(self) -> None:
        self.tally = Tally()
        self.stop = False
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, url: str, source: str) -> Socket | None:
        try:
            _, sock = await ws_connect(lambda: Socket(self.tally), url,
                                       local_addr=(source, 0),
                                       websocket_handshake_timeout=5, max_frame_size=1 << 20)
        except Exception as exc:
            self.tally.count("connect", type(exc).__name__)
            return None
        assert isinstance(sock, Socket)
        self.tally.count("connect", "ok")
        return sock

    async def idler(self, url: str, source: str) -> None:
        """An anonymous socket that holds its slot; opened again when dropped."""
        while not self.stop:
            sock = await self.connect(url, source)
            if sock is not None:
                await sock.closed.wait()
            await asyncio.sleep(random.uniform(0.5, 2.0))

    async def sender(self, url: str, source: str, behaviour: str, rate: float,
                     tokens: list[str], clinics: list[str]) -> None:
        while not self.stop:
            sock = await self.connect(url, source)
            if sock is None:
                await asyncio.sleep(0.5)
                continue
            if behaviour == "pins" and tokens:
                sock.send("auth", {"token": random.choice(tokens)})
            while not self.stop and not sock.closed.is_set():
                self.tally.sent += 1
                if behaviour == "garbage":
                    choice = random.randrange(4)
                    if choice == 0:
                        sock.send_raw(os.urandom(random.randrange(1, 200)), binary=True)
                    elif choice == 1:
                        sock.send_raw(b"{not json" + os.urandom(8).hex().encode())
                    elif choice == 2:
                        sock.send_raw(orjson.dumps({"id": 1, "args": {}}))
                    else:
                        sock.send("no.such.op", {"x": random.random()})
                elif behaviour == "oversized":
                    # Each one costs the sender its socket (1009): once a second.
                    sock.send_raw(b'{"id":1,"op":"ping","pad":"' + b"x" * 100_000 + b'"}')
                    await asyncio.sleep(max(0.0, 1.0 - 1.0 / rate))
                elif behaviour == "logins":
                    if random.random() < 0.5:
                        sock.send("staff.login", {"username": "admin",
                                                  "password": os.urandom(6).hex()})
                    else:
                        sock.send("patient.login", {"patient_id": f"{random.randrange(10**9):09d}9",
                                                    "gender": "male"})
                elif behaviour == "pins":
                    sock.send("pin.submit", {"clinic": random.choice(clinics),
                                             "pin": f"{random.randrange(1, 100):02d}"})
                await asyncio.sleep(1.0 / rate)
            await asyncio.sleep(random.uniform(0.2, 1.0))

    async def cmd_start(self, url: str, sources: list[str], anonymous: int, senders: int,
                        rate: float, tokens: list[str], clinics: list[str],
                        behaviours: list[str]) -> dict[str, Any]:
        self.stop = False
        for i in range(anonymous):
            self.tasks.append(asyncio.create_task(self.idler(url, sources[i % len(sources)])))
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        for i in range(senders):
            self.tasks.append(asyncio.create_task(self.sender(
                url, sources[i % len(sources)], behaviours[i % len(behaviours)], rate,
                tokens, clinics)))
        return {}

    async def cmd_stop(self) -> dict[str, Any]:
        self.stop = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        return {"sent": self.tally.sent, **self.tally.counts}

    async def serve(self, conn: Connection) -> None:
        await worker.serve(conn, self, self.cmd_stop, timed=True)


def main(conn: Connection) -> None:
    worker.run_sockets(Hostile().serve(conn))
