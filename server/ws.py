"""The WebSocket transport, `GET /ws`: authenticate, parse, call server.commands, map
errors; subscriptions through the hub; one reader and one writer task per socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import auth, commands, errors, protocol, wire
from server.args import Args
from server.auth import ANONYMOUS, Principal
from server.db import Database
from server.displays import Presence
from server.hub import Hub
from server.outbox import Outbox
from server.protocol import CloseCode
from server.ratelimit import ClientLimits, TokenBucket
from server.sessions import SessionRegistry

log = structlog.get_logger(__name__)
_connection_ids = itertools.count(1)


# Logins and PIN tries: each costs Postgres work (and a login an argon2 verification),
# so they are counted per socket and per address before any of it is done. A right PIN
# is given back: an examinee tries once or twice at each clinic of a morning.
ATTEMPTS = commands.LOGIN_OPERATIONS | {"pin.submit"}
REFUNDED_ATTEMPTS = frozenset({"pin.submit"})
# What the transport answers itself; any other op unknown to server.commands is malformed.
TRANSPORT_OPERATIONS = frozenset({"auth", "subscribe", "unsubscribe"})


@dataclass(frozen=True, kw_only=True)
class WsLimits:
    """What one socket may do, and one address across its sockets (in this process).
    `send_queue` is WS_SEND_QUEUE."""

    send_queue: int = 256
    rate: float = 20.0                 # frames a second, sustained
    burst: float = 60.0                # frames at once
    over_limit_seconds: float = 10.0   # refused this long without a pause: 1008
    idle_seconds: float = 30.0         # anonymous with no subscription: 1008
    # An anonymous socket (a display) says display.hello every 15 s: one silent this
    # long, subscriptions or not, is closed with 1008.
    anonymous_idle_seconds: float = 300.0
    max_subscriptions: int = 64
    anonymous_subscriptions: int = 8   # a display shows up to six public clinics
    anonymous_replay: int = 500        # events replayed to an anonymous resume, else reset
    close_grace_seconds: float = 10.0  # for the close frame behind a stalled client
    # Logins and wrong PINs: an examinee's morning is a login and a wrong PIN or two.
    attempt_rate: float = 0.5          # a second per socket, sustained
    attempt_burst: float = 10.0
    address_attempt_rate: float = 10.0  # the same per address, across its sockets
    address_attempt_burst: float = 100.0
    bad_frame_rate: float = 1.0        # malformed frames a second, sustained...
    bad_frame_burst: float = 20.0      # ...and at once; past either: 1008
    # The buckets of the addresses: one per app, shared by its sockets.
    address_attempts: ClientLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_attempts", ClientLimits(
            self.address_attempt_rate, self.address_attempt_burst))


async def endpoint(websocket: WebSocket) -> None:
    """One client: accept (with `mmc.v1` when offered), then read until it leaves."""
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(
        subprotocol=protocol.SUBPROTOCOL if protocol.SUBPROTOCOL in offered else None)
    connection = Connection(websocket, websocket.state.db, websocket.state.hub,
                            websocket.state.limits, presence=websocket.state.presence,
                            sessions=getattr(websocket.state, "sessions", None))
    metrics = connection.db.metrics
    metrics.ws_connections.inc()
    try:
        with structlog.contextvars.bound_contextvars(conn=next(_connection_ids)):
            await connection.run()
    finally:
        metrics.ws_connections.dec()
        if connection.outbox.close_code == CloseCode.TRY_AGAIN_LATER:
            metrics.ws_slow_closes.inc()


class Connection:
    def __init__(self, websocket: WebSocket, db: Database, hub: Hub, limits: WsLimits,
                 *, presence: Presence | None = None,
                 sessions: SessionRegistry | None = None) -> None:
        self.websocket = websocket
        self.db = db
        self.hub = hub
        self.limits = limits
        self.principal: Principal = ANONYMOUS
        self.outbox = Outbox(limits.send_queue,
                             direct=websocket.scope.get("extensions", {}).get(wire.EXTENSION))
        self.bucket = TokenBucket(limits.rate, limits.burst)
        self.attempts = TokenBucket(limits.attempt_rate, limits.attempt_burst)
        self.bad_frames = TokenBucket(limits.bad_frame_rate, limits.bad_frame_burst)
        self.subscriptions: dict[str, AsyncExitStack] = {}
        self.token_hash: bytes | None = None
        self.presence = presence
        self.sessions = sessions
        self._release_session: Callable[[], None] | None = None
        client = websocket.client
        self.client = client.host if client is not None else "unknown"
        self.display_id: str | None = None  # set by display.hello (server/displays.py)

    async def run(self) -> None:
        """Read in this task; a closing outbox interrupts the read. A writer task runs
        only when frames can queue: with direct writes (server/wire.py) they never do,
        and it is started at the end just to send the close frame."""
        writer = None if self.outbox.direct is not None else asyncio.create_task(self._write())
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        self.outbox.on_close = interrupt
        absorbed = False
        try:
            await self._read()
        except asyncio.CancelledError:
            if not interrupted or task.uncancel() > 0:
                raise
            absorbed = True
        except Exception as exc:
            log.error("ws.reader_failed", error=type(exc).__name__)
        finally:
            self.outbox.on_close = None
            if interrupted and not absorbed:
                # The read ended by itself (a disconnect already queued is received
                # without suspending) after the interrupt's cancel was asked for: take
                # that cancel here, where it is expected, not in the clean-up's waits.
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    if task.uncancel() > 0:
                        raise
            # Channels go at once: a socket on its way out holds none.
            for stack in self.subscriptions.values():
                await stack.aclose()
            self.subscriptions.clear()
            self._hold_session(None)
            if self.display_id is not None and self.presence is not None:
                await self.presence.detach(self.display_id, self.outbox)
            self.outbox.close(CloseCode.NORMAL)
            if self.outbox.close_code == CloseCode.TRY_AGAIN_LATER:
                log.info("ws.closed_slow")
            if writer is None:
                writer = asyncio.create_task(self._write())
            # A writer stuck behind a client that stopped reading gets a bounded
            # chance to deliver the close frame once the client reads again.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.close_grace_seconds):
                    await asyncio.shield(writer)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _write(self) -> None:
        try:
            while (frame := await self.outbox.get()) is not None:
                await self.websocket.send({"type": "websocket.send", "text": frame})
            await self.websocket.close(self.outbox.close_code or CloseCode.NORMAL)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client left first

    @property
    def idle_timeout(self) -> float | None:
        """Only an anonymous socket can be idle: soon with nothing subscribed, later
        with subscriptions (any frame it sends, a display's hello included, counts)."""
        if self.principal.is_anonymous:
            return (self.limits.anonymous_idle_seconds if self.subscriptions
                    else self.limits.idle_seconds)
        return None

    async def _read(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await self.websocket.receive()
            except TimeoutError:
                self.outbox.close(CloseCode.POLICY)
                continue
            if message["type"] == "websocket.disconnect":
                return
            if self.outbox.closed:
                continue  # closing: what the client still sends is not read
            if not self.bucket.take():
                await self._refuse(message)
                continue
            text = message.get("text")
            if text is None:
                await self._malformed(None, errors.BadRequest("frames must be JSON text"))
                continue
            await self._handle(text)

    async def _malformed(self, rid: int | None, exc: errors.MMCError) -> None:
        """Answer a frame that is not a request we know, without touching the database;
        a socket that keeps sending them is closed with 1008 once the answer is out."""
        await self.outbox.put(protocol.error(rid, exc))
        if not self.bad_frames.take():
            log.info("ws.malformed_close")
            self.outbox.close(CloseCode.POLICY, drain=True)

    async def _refuse(self, message: Mapping[str, Any]) -> None:
        rid = None
        text = message.get("text")
        if text is not None:
            try:
                rid = protocol.parse_request(text).id
            except protocol.BadFrame as exc:
                rid = exc.request_id
        refusal = errors.RateLimited(retry_after=self.bucket.retry_after())
        await self.outbox.put(protocol.error(rid, refusal))
        if self.bucket.over_for() > self.limits.over_limit_seconds:
            log.info("ws.rate_limited_close")
            self.outbox.close(CloseCode.POLICY, drain=True)

    async def _handle(self, text: str) -> None:
        try:
            request = protocol.parse_request(text)
        except protocol.BadFrame as exc:
            await self._malformed(exc.request_id, exc)
            return
        if request.op not in commands.OPERATIONS and request.op not in TRANSPORT_OPERATIONS:
            await self._malformed(request.id, errors.BadRequest("unknown op"))
            return
        try:
            if request.op == "subscribe":
                await self._subscribe(request)  # the hub sends the reply in order
                return
            result = await self._dispatch(request)
        except errors.MMCError as exc:
            await self.outbox.put(protocol.error(request.id, exc))
            return
        except Exception:
            log.exception("ws.op_failed", op=request.op)
            await self.outbox.put(protocol.error(request.id, errors.Internal()))
            return
        await self.outbox.put(protocol.reply(request.id, result))

    async def _dispatch(self, request: protocol.Request) -> Any:
        args = Args(request.args)
        if request.op == "auth":
            token = args.text("token", max_len=256)
            principal = await auth.authenticate(self.db, token)
            await self._become(principal, auth.token_hash(token))
            return principal.public()
        if request.op == "unsubscribe":
            name = args.text("channel", max_len=64)
            stack = self.subscriptions.pop(name, None)
            if stack is not None:
                await stack.aclose()
            return {}
        if request.op in ATTEMPTS:
            self._count_attempt()
        result = await commands.execute(self.db, self.principal, request.op, request.args,
                                        client=self.client, token=self.token_hash)
        if request.op in REFUNDED_ATTEMPTS:
            self.attempts.refund()
            self.limits.address_attempts.refund(self.client, "attempts")
        if request.op in commands.LOGIN_OPERATIONS:
            await self._become(commands.principal_from_login(result),
                               auth.token_hash(result["token"]))
        elif request.op == "display.hello" and self.presence is not None:
            self._hold_display(result["display_id"])
        return result

    def _count_attempt(self) -> None:
        """A login or PIN try over this socket's or this address's budget is refused
        here, before Postgres or argon2 sees it."""
        wait = (None if self.attempts.take() else self.attempts.retry_after())
        if wait is None:
            wait = self.limits.address_attempts.retry_after(self.client, "attempts")
        if wait is not None:
            raise errors.RateLimited("too many attempts; try again later", retry_after=wait)

    def _hold_display(self, display_id: str) -> None:
        """This socket is that display now: IDENTIFY signals for it come here."""
        assert self.presence is not None
        if self.display_id is not None and self.display_id != display_id:
            self.presence.forget(self.display_id, self.outbox)
        self.display_id = display_id
        self.presence.attach(display_id, self.outbox)

    async def _become(self, principal: Principal, hashed: bytes | None) -> None:
        """A new identity keeps only the public channels: the others were granted to
        the old one. The socket acts for the session `hashed` until that ends."""
        self._hold_session(hashed)
        if principal == self.principal:
            return
        self.principal = principal
        for name in [n for n in self.subscriptions if n.count(":") != 1]:
            await self.subscriptions.pop(name).aclose()

    def _hold_session(self, hashed: bytes | None) -> None:
        if self._release_session is not None:
            self._release_session()
            self._release_session = None
        self.token_hash = hashed
        if hashed is not None and self.sessions is not None:
            self._release_session = self.sessions.hold(hashed, self._session_ended)

    def _session_ended(self) -> None:
        """The session this socket acts for is gone (logout, reset, disabled account,
        expiry): it loses that identity at once and is closed with 1008; the client
        reconnects and learns from `auth` that it must log in again."""
        self._release_session = None
        self.token_hash = None
        self.principal = ANONYMOUS
        log.info("ws.session_ended")
        self.outbox.close(CloseCode.POLICY)

    async def _subscribe(self, request: protocol.Request) -> None:
        args = Args(request.args)
        channel = protocol.parse_channel(args.value("channel"), self.principal)
        since = args.optional_integer("since", low=0, high=2**62)
        old = self.subscriptions.pop(channel.name, None)
        if old is not None:
            await old.aclose()  # subscribing again is how a client resumes
        anonymous = self.principal.is_anonymous
        most = (self.limits.anonymous_subscriptions if anonymous
                else self.limits.max_subscriptions)
        if len(self.subscriptions) >= most:
            raise errors.BadRequest("too many subscriptions")
        rid = request.id

        def reply(seq: int) -> str:
            return protocol.reply(rid, {"channel": channel.name, "seq": seq})

        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(
                self.hub.subscribe(self.outbox, channel, since, reply=reply,
                                   replay_limit=self.limits.anonymous_replay
                                   if anonymous else None))
        except BaseException:
            await stack.aclose()
            raise
        self.subscriptions[channel.name] = stack
