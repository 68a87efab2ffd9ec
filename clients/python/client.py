"""An asyncio client for the server's WebSocket protocol (docs/protocol.md): requests
correlated by id, and subscriptions that survive reconnects by resuming from the last
seq seen on each channel, trying each of the server URLs in turn."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

Frame = dict[str, Any]
SUBPROTOCOL = "mmc.v1"
LOGIN_OPS = ("patient.login", "staff.login", "admin.login")


class ClientError(Exception):
    """The server refused a request; `envelope` is its error frame."""

    def __init__(self, envelope: Frame) -> None:
        super().__init__(f"{envelope.get('error')}: {envelope.get('message')}")
        self.envelope = envelope
        self.code: str = envelope.get("error", "")


class Disconnected(Exception):
    """The connection dropped before the reply came (the request may have run)."""


class Client:
    """`async with Client(urls) as c:` then `await c.request(op, args)`,
    `await c.subscribe(channel)` and `async for frame in c.frames():`."""

    def __init__(self, urls: str | Sequence[str], *, token: str | None = None,
                 reconnect: bool = True, max_backoff: float = 2.0,
                 open_timeout: float = 5.0, heartbeat: float | None = 60.0) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.token = token
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        # A ping this often: the server closes an anonymous socket silent for long.
        self.heartbeat = heartbeat
        self.last_seq: dict[str, int] = {}
        self.channels: list[str] = []
        self.connects = 0
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Frame]] = {}
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        # The subscribe request each channel got on the current connection: subscribe()
        # and the restore after a (re)connect share it, so none is sent twice.
        self._sent: dict[str, asyncio.Task[Any]] = {}
        self._closing = False
        self._url_index = 0

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection (raises if no URL answers), then keep it up."""
        await self._open()
        self._runner = asyncio.create_task(self._run())
        if self.heartbeat:
            self._pinger = asyncio.create_task(self._ping(self.heartbeat))

    async def close(self) -> None:
        self._closing = True
        for task in (self._runner, self._pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._ws is not None:
            await self._ws.close()

    async def _open(self) -> None:
        last_error: Exception | None = None
        for _ in range(len(self.urls)):
            url = self.urls[self._url_index % len(self.urls)]
            try:
                self._ws = await connect(url, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                                         open_timeout=self.open_timeout, max_size=2**20)
                self.connects += 1
                return
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                last_error = exc
                self._url_index += 1
        raise ConnectionError(f"no server answered: {last_error}")

    async def _run(self) -> None:
        """Read frames; when the connection drops, reconnect and resume."""
        attempt = 0
        while True:
            assert self._ws is not None
            reader = asyncio.create_task(self._read(self._ws))
            try:
                await self._restore()
                attempt = 0
            except (Disconnected, ConnectionClosed, ClientError):
                pass
            await reader
            self._connected.clear()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(Disconnected())
            self._replies.clear()
            if self._closing or not self.reconnect:
                return
            while True:
                delay = min(self.max_backoff, 0.05 * 2 ** attempt)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                attempt += 1
                self._url_index += 1
                try:
                    await self._open()
                    break
                except ConnectionError:
                    continue

    async def _ping(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if self._connected.is_set():
                with contextlib.suppress(Disconnected, ClientError, ConnectionClosed):
                    await self._request("ping", None)

    async def _restore(self) -> None:
        """On a new connection: authenticate again, then resubscribe from last seq.
        Requests wait for the authentication, so none goes out under no identity."""
        self._sent = {}
        try:
            if self.token is not None:
                await self._request("auth", {"token": self.token})
        finally:
            self._connected.set()
        for channel in list(self.channels):
            with contextlib.suppress(ClientError):  # that channel refused; the rest go on
                await self._subscription(channel)

    def _subscription(self, channel: str) -> asyncio.Task[Any]:
        """This connection's subscribe request for `channel`, sent once."""
        task = self._sent.get(channel)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(
                self._request("subscribe", self._subscribe_args(channel)))
            self._sent[channel] = task
        return task

    def _subscribe_args(self, channel: str) -> dict[str, Any]:
        args: dict[str, Any] = {"channel": channel}
        if channel in self.last_seq:
            args["since"] = self.last_seq[channel]
        return args

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                frame = orjson.loads(message)
                if "ok" in frame:
                    future = self._replies.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                    continue
                channel = frame.get("channel")
                seq = frame.get("seq")
                if frame.get("type") in ("event", "snapshot") and isinstance(channel, str) \
                        and isinstance(seq, int):
                    # Resume from the highest seq seen, whatever order frames came in.
                    self.last_seq[channel] = max(seq, self.last_seq.get(channel, seq))
                await self._frames.put(frame)

    async def _request(self, op: str, args: dict[str, Any] | None) -> Any:
        ws = self._ws
        if ws is None:
            raise Disconnected()
        rid = next(self._ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        frame: Frame = {"id": rid, "op": op}
        if args:
            frame["args"] = args
        try:
            await ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed:
            self._replies.pop(rid, None)
            raise Disconnected() from None
        reply = await future
        if not reply.get("ok"):
            raise ClientError(reply)
        return reply.get("result")

    async def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request on the current connection and return its result."""
        await self._connected.wait()
        result = await self._request(op, args)
        if op in LOGIN_OPS and isinstance(result, dict):
            self.token = result.get("token", self.token)
        return result

    async def auth(self, token: str) -> Any:
        self.token = token
        return await self.request("auth", {"token": token})

    async def subscribe(self, channel: str) -> Any:
        """Subscribe now and after every reconnect (resuming from the last seq)."""
        if channel not in self.channels:
            self.channels.append(channel)
        await self._connected.wait()
        return await asyncio.shield(self._subscription(channel))

    async def unsubscribe(self, channel: str) -> Any:
        if channel in self.channels:
            self.channels.remove(channel)
        self._sent.pop(channel, None)
        return await self.request("unsubscribe", {"channel": channel})

    async def next_frame(self) -> Frame:
        return await self._frames.get()

    async def frames(self) -> AsyncIterator[Frame]:
        """Events, snapshots, notices and invalidations, as they arrive."""
        while True:
            yield await self._frames.get()
