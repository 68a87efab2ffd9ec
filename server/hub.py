"""The hub: one dedicated LISTEN connection per process, events fanned out in id order
as their NOTIFYs arrive, and fan-out to bounded per-connection send queues.

The log is `events` (ids commit in id order, see mmc_emit). Each NOTIFY carries its
event (schema/010), and the hub fans it out directly when its id is the next one;
otherwise (an id burnt by a rollback, an event too large for NOTIFY, a reconnect, the
keepalive) it reads the log on from the last id it dispatched: nothing is lost or
repeated. Each frame is serialised once per (channel, event) and the same text goes to
every subscriber; a subscriber whose queue is full is closed with 1013 (it resumes
from its last seq). See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog

from server import protocol, views
from server.db import init_connection
from server.notices import NoticeBook
from server.outbox import Outbox
from server.protocol import Channel, CloseCode
from server.views import EventRow, Views
from server.wire import Batch, encode_text

__all__ = ["Hub", "Outbox", "Subscription", "backoff"]  # Outbox: SSE imports it from here

log = structlog.get_logger(__name__)
# Jitter from a generator of our own: the module-level one is shared with whatever else
# runs in the process (and property-based tests watch it for use they did not make).
_jitter = random.Random()

EVENTS_CHANNEL = "mmc_events"
QUEUES_CHANNEL = "mmc_queues"
# Signals that are not events (a session revoked, a display asked to identify itself):
# JSON `{"kind": ..., ...}` sent with `pg_notify('mmc_control', ...)` by any process.
CONTROL_CHANNEL = "mmc_control"
RECONNECTED = "reconnected"  # the kind handlers hear after a reconnect: signals were missed
ControlHandler = Callable[[dict[str, Any]], None]
APPLICATION_NAME = "mmc-hub"
READ_BATCH = 500
READ_EVENTS = (f"SELECT {views.EVENT_COLUMNS} FROM events WHERE id > $1 "
               f"ORDER BY id LIMIT {READ_BATCH}")
# READ_EVENTS always asks for the newest tail of the log. A generic plan, cached once
# the statement has run five times, is chosen for whatever size the table had then: on
# a morning's near-empty log that is a sequential scan, kept for the connection's life,
# so every read would cost more as the day's events pile up. Planning each read with
# its real `id` costs little and always walks the primary key from the end.
LISTEN_SETTINGS = {"application_name": APPLICATION_NAME, "plan_cache_mode": "force_custom_plan"}


@dataclass(eq=False)
class Subscription:
    """One channel feeding one outbox. Until `live`, frames wait in `pending` (with
    their seq) while the snapshot or replay is read, so none falls in between."""

    channel: Channel
    outbox: Outbox
    seq: int = 0  # went live here: events up to it are in its snapshot or replay
    live: bool = False
    pending: list[tuple[int, str, bool]] = field(default_factory=list)  # seq, frame, event

    def deliver(self, seq: int, frame: str, wire: bytes | None = None,
                batch: Batch | None = None) -> bool:
        """An event: False when the frame was dropped (the outbox is full or closed).
        `wire` is the frame already encoded, shared by every subscriber. The hub
        dispatches in id order, and an event at or below the seq the subscription went
        live at is skipped: seq strictly grows per subscription, by construction, at the
        cost of one integer compare on the fan-out path."""
        if self.live:
            if seq <= self.seq:
                return True
            return self.outbox.offer(frame, wire, batch)
        return self._hold(seq, frame, True)

    def tell(self, seq: int, frame: str, wire: bytes | None = None,
             batch: Batch | None = None) -> bool:
        """A notice: derived state at `seq`, not an event; it does not move `seq`."""
        if self.live:
            return self.outbox.offer(frame, wire, batch)
        return self._hold(seq, frame, False)

    def _hold(self, seq: int, frame: str, event: bool) -> bool:
        if len(self.pending) >= self.outbox.capacity * 4:
            self.outbox.close(CloseCode.TRY_AGAIN_LATER)
            return False
        self.pending.append((seq, frame, event))
        return True


def backoff(attempt: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential with jitter, so N processes do not reconnect in lockstep."""
    delay = min(cap, base * 2 ** min(attempt, 16))
    return _jitter.uniform(delay / 2, delay)


class Hub:
    """Channels of this process and the listener that feeds them."""

    def __init__(self, dsn: str, views_: Views, *, replay_limit: int = 10_000,
                 keepalive: float = 10.0, max_backoff: float = 2.0) -> None:
        self.dsn = dsn
        self.views = views_
        self.metrics = views_.db.metrics
        self.replay_limit = replay_limit
        self.keepalive = keepalive
        self.max_backoff = max_backoff
        self.listening = False
        self.last_id: int | None = None
        self.notices = NoticeBook()
        self.position_queries = 0  # how many per-clinic recomputes ran (coalescing)
        self._subs: dict[str, set[Subscription]] = {}
        self._batch = Batch()
        self._wake = asyncio.Event()
        self._arrived: list[EventRow | None] = []  # events NOTIFYs since the last read
        self._must_read = True
        self._became_ready = asyncio.Event()
        self._queue_changes: set[str] = set()
        self._dirty: set[str] = set()
        self._invalid: dict[str, set[str]] = {}
        self._recomputing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._control: dict[str, list[ControlHandler]] = {}
        self._resets: set[asyncio.Task[None]] = set()
        self.resets = 0  # subscriptions given a reset snapshot after pruned events

    def on_control(self, kind: str, handler: ControlHandler) -> None:
        """Call `handler(payload)` for each `mmc_control` signal of `kind` (and with `{}`
        for RECONNECTED after the LISTEN connection came back, when signals were lost)."""
        self._control.setdefault(kind, []).append(handler)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, *, within: float = 10.0) -> None:
        """Start listening; fails when the first connection is not up `within` seconds."""
        self._task = asyncio.create_task(self._run(), name="hub")
        async with asyncio.timeout(within):
            await self._became_ready.wait()

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._recomputing.values(), *self._resets)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subs in self._subs.values():
            for sub in subs:
                sub.outbox.close(CloseCode.RESTART)

    @property
    def backend_pid(self) -> int | None:
        return None if self._conn is None else self._conn.get_server_pid()

    async def _run(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, timeout=5, command_timeout=self.keepalive,
                    server_settings=LISTEN_SETTINGS)
                await init_connection(conn)
                conn.add_termination_listener(functools.partial(self._on_lost, lost))
                await conn.add_listener(EVENTS_CHANNEL, self._on_event)
                await conn.add_listener(QUEUES_CHANNEL, self._on_queue)
                await conn.add_listener(CONTROL_CHANNEL, self._on_control)
                if self.last_id is None:
                    self.last_id = int(await conn.fetchval("SELECT mmc_head_seq()"))
                else:
                    self._recovered()
                    pruned = await conn.fetchval(
                        "SELECT pruned_through FROM event_watermark")
                    if pruned is not None and self.last_id < int(pruned):
                        self._reset_all(int(pruned))
                self._conn = conn
                self.listening = True
                self.metrics.hub_listening.set(1)
                self._became_ready.set()
                log.info("hub.listening", since=self.last_id, reconnect=attempt > 0)
                attempt = 0
                await self._pump(conn, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub.connection_lost", error=type(exc).__name__,
                            since=self.last_id, attempt=attempt)
            finally:
                self.listening = False
                self.metrics.hub_listening.set(0)
                self._conn = None
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff(attempt, cap=self.max_backoff))
            attempt += 1

    def _on_lost(self, lost: asyncio.Event, conn: Any) -> None:
        lost.set()
        self._wake.set()

    def _on_event(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._arrived.append(EventRow.from_notify(payload))
        self._wake.set()

    def _on_queue(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        try:
            clinic = orjson.loads(payload).get("clinic")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(clinic, str):
            self._queue_changes.add(clinic)
            self._wake.set()

    def _on_control(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            signal = orjson.loads(payload) if isinstance(payload, str) else None
        except orjson.JSONDecodeError:
            signal = None
        if isinstance(signal, dict):
            self._signal(str(signal.get("kind")), signal)

    def _signal(self, kind: str, payload: dict[str, Any]) -> None:
        for handler in self._control.get(kind, ()):
            try:
                handler(payload)
            except Exception:
                log.exception("hub.control_handler_failed", kind=kind)

    def _recovered(self) -> None:
        """After a reconnect: queue NOTIFYs were missed (they are not in the log), so
        every cached view is stale and every position is worth a fresh look."""
        self._signal(RECONNECTED, {})
        self.views.cache.clear()
        for key in self._subs:
            if key.startswith("clinic:"):
                self._queue_changes.add(key.split(":")[1])
        self._queue_changes.update(self.notices.clinics())

    def _reset_all(self, pruned: int) -> None:
        """Events this hub never relayed were pruned while it was away: every live
        subscriber gets a reset snapshot (as a resuming client would), and the log is
        read on from what is left."""
        log.warning("hub.events_pruned_while_away", last_id=self.last_id, pruned=pruned)
        self.last_id = pruned
        for subs in self._subs.values():
            for sub in subs:
                if sub.live:
                    sub.live = False
                    self.resets += 1
                    task = asyncio.create_task(self._reset(sub))
                    self._resets.add(task)
                    task.add_done_callback(self._resets.discard)

    async def _reset(self, sub: Subscription) -> None:
        try:
            cut = await self._send_reset(sub, sub.seq)
            self._go_live(sub, cut)
        except Exception as exc:
            log.warning("hub.reset_failed", error=type(exc).__name__)
            sub.outbox.close(CloseCode.TRY_AGAIN_LATER)  # it resumes, and is reset then

    def _go_live(self, sub: Subscription, cut: int) -> None:
        """Hand over what waited while the snapshot was read (later than `cut`), then
        go live, with no await in between so nothing slips past."""
        top = cut
        batch, sub.pending = sub.pending, []
        for seq, frame, event in batch:
            if seq > cut and sub.outbox.offer(frame) and event:
                top = max(top, seq)
        sub.seq = top
        sub.live = True

    async def _pump(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        self._must_read = True  # whatever committed while nobody listened
        self._wake.set()
        while True:
            try:
                async with asyncio.timeout(self.keepalive):
                    await self._wake.wait()
            except TimeoutError:
                self._must_read = True  # proves the connection is alive
            # One more pass of the loop, so NOTIFYs read in that pass join this batch:
            # under load a socket gets one write for several events, not one each (at
            # 10,000 sockets that measured more frames/s and lower p99s); when idle it
            # costs one pass.
            await asyncio.sleep(0)
            self._wake.clear()
            if lost.is_set():
                raise ConnectionError("LISTEN connection lost")
            await self._read(conn)

    async def _read(self, conn: asyncpg.Connection) -> None:
        try:
            arrived, self._arrived = self._arrived, []
            if not self._relay(arrived) or self._must_read:
                self._must_read = False
                self.metrics.hub_log_reads.inc()
                while True:
                    records = await conn.fetch(READ_EVENTS, self.last_id)
                    for record in records:
                        row = EventRow.from_record(record)
                        self._dispatch(row)
                        self.last_id = row.id
                    if len(records) < READ_BATCH:
                        break
            changes, self._queue_changes = self._queue_changes, set()
            for clinic in changes:
                self._dirty.add(clinic)
                for channel_key, key in views.queue_invalidations(clinic):
                    self._invalidate(channel_key, key)
            self._flush_invalidations()
        finally:
            # Each socket's frames of this read leave in one write.
            self._batch.flush()
        self._recompute_positions()

    def _relay(self, arrived: list[EventRow | None]) -> bool:
        """Fan out the events NOTIFYs carried, while each is the next id; False when the
        log must be read on from there."""
        for row in arrived:
            if row is None or self.last_id is None:
                return False
            if row.id <= self.last_id:
                continue  # already read from the log
            if row.id != self.last_id + 1:
                return False
            self._dispatch(row)
            self.last_id = row.id
        return True

    # --- fan-out -----------------------------------------------------------------------

    def _dispatch(self, row: EventRow) -> None:
        # Caches go first: a snapshot read before this event must not be served after.
        for channel_key, key in views.invalidations(row):
            self._invalidate(channel_key, key)
        if row.clinic is not None:
            self._dirty.add(row.clinic)
            if row.patient is not None and f"me:{row.patient}" in self._subs:
                self.notices.hint(row.patient, row.clinic)
        sent = dropped = 0
        for key, name, build in views.audiences(row):
            subs = self._subs.get(key)
            if subs:
                frame = protocol.event(name, row.id, row.type, build(row), row.at)
                wire = encode_text(frame)
                for sub in list(subs):
                    if sub.deliver(row.id, frame, wire, self._batch):
                        sent += 1
                    else:
                        dropped += 1
        # Counted once per event, not per frame: the fan-out loop stays tight.
        self.metrics.hub_events.inc()
        self.metrics.delivery_lag.observe(max(0.0, time.time() - row.at.timestamp()))
        if sent:
            self.metrics.ws_frames_sent.labels(kind="event").inc(sent)
        if dropped:
            self.metrics.ws_frames_dropped.inc(dropped)

    def _invalidate(self, channel_key: str, key: str) -> None:
        self.views.cache.drop(key)
        if channel_key in self._subs:
            self._invalid.setdefault(channel_key, set()).add(key)

    def _flush_invalidations(self) -> None:
        """One invalidate frame per socket per read, however many events it held."""
        per_outbox: dict[Outbox, set[str]] = {}
        for channel_key, keys in self._invalid.items():
            for sub in self._subs.get(channel_key, ()):
                if sub.live:
                    per_outbox.setdefault(sub.outbox, set()).update(keys)
        self._invalid.clear()
        frames: dict[frozenset[str], tuple[str, bytes]] = {}
        for outbox, keys in per_outbox.items():
            frozen = frozenset(keys)
            if frozen not in frames:
                text = protocol.invalidate(sorted(keys))
                frames[frozen] = (text, encode_text(text))
            outbox.offer(*frames[frozen], self._batch)

    # --- patient notices ---------------------------------------------------------------

    def _recompute_positions(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for clinic in dirty:
            if clinic in self._recomputing:
                self._again.add(clinic)
            elif self.notices.listens_at(clinic):
                self._recomputing[clinic] = asyncio.create_task(self._positions(clinic))

    async def _positions(self, clinic: str) -> None:
        """Coalesced: however many changes arrive while a query runs, one more runs."""
        try:
            while True:
                self._again.discard(clinic)
                patients = self.notices.patients_at(clinic)
                if not patients:
                    break  # nobody here listens for this clinic
                self.position_queries += 1
                found = await self.views.positions(clinic, patients)
                if found is not None:
                    self._tell_positions(found)
                if clinic not in self._again:
                    break
        except Exception as exc:
            # The database is away; the reconnect marks every clinic dirty again.
            log.warning("hub.positions_failed", clinic=clinic, error=type(exc).__name__)
        finally:
            self._recomputing.pop(clinic, None)

    def _tell_positions(self, found: dict[str, Any]) -> None:
        seq = int(found["seq"])
        batch = Batch()
        try:
            self._tell(found, seq, batch)
        finally:
            batch.flush()

    def _tell(self, found: dict[str, Any], seq: int, batch: Batch) -> None:
        # Once per listening patient per call at their clinic: kept lean.
        subscribers, update = self._subs.get, self.notices.update
        near_ahead = int(found["near_ahead"])
        for position in found["positions"]:
            patient = position["patient"]
            subs = subscribers("me:" + patient)
            if not subs:
                continue
            for kind, data in update(patient, seq, found, position, near_ahead):
                frame = protocol.notice(kind, data)
                wire = encode_text(frame)
                for sub in list(subs):
                    sub.tell(seq, frame, wire, batch)

    # --- subscriptions -----------------------------------------------------------------

    def subscribers(self, channel_key: str) -> int:
        return len(self._subs.get(channel_key, ()))

    @asynccontextmanager
    async def subscribe(self, outbox: Outbox, channel: Channel, since: int | None = None,
                        reply: Callable[[int], str] | None = None,
                        replay_limit: int | None = None,
                        ) -> AsyncIterator[Subscription]:
        """Feed `channel` into `outbox` until the block exits: first `reply(seq)` if
        given, then a snapshot (fresh, or `reset` when `since` is beyond retention) or
        the events after `since`, then live events with higher seqs."""
        sub = Subscription(channel, outbox)
        self._subs.setdefault(channel.key, set()).add(sub)
        try:
            await self._start(sub, since, reply, replay_limit or self.replay_limit)
            yield sub
        finally:
            subs = self._subs.get(channel.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[channel.key]
                    if channel.patient is not None:
                        self.notices.forget(channel.patient)

    async def _start(self, sub: Subscription, since: int | None,
                     reply: Callable[[int], str] | None, replay_limit: int) -> None:
        channel, outbox = sub.channel, sub.outbox
        replay = state = None
        if since is not None:
            if channel.kind == "me":
                # Read before the replay: every event up to the snapshot's seq is then in
                # the replay, so it can go ahead of the snapshot. (Read after it, an
                # event committed in between but not yet relayed by this hub would be
                # in neither: covered by the snapshot, its frame dropped when it came.)
                state = await self.views.snapshot(channel)
            replay = await self.views.replay(channel, since, replay_limit)
        if replay is not None and replay.resumable:
            assert since is not None
            sub.seq = since
            if reply is not None:
                await outbox.put(reply(since))
            for row in replay.rows:
                if state is not None and row.id > state[0]:
                    await self._put_snapshot(sub, *state, reset=False)
                    state = None
                frame = views.frame_for(channel, row)
                if frame is not None:
                    await outbox.put(frame)
            if state is not None:
                # Notices are derived state: after a resume the snapshot is current.
                await self._put_snapshot(sub, *state, reset=False)
            cut = replay.head
        else:
            seq, found = state or await self.views.snapshot(channel)
            sub.seq = seq
            if reply is not None:
                await outbox.put(reply(seq))
            await self._put_snapshot(sub, seq, found, reset=replay is not None)
            cut = seq
        top = cut
        while sub.pending:
            batch, sub.pending = sub.pending, []
            for seq, frame, event in batch:
                if seq > cut:
                    await outbox.put(frame)
                    if event:
                        top = max(top, seq)
        # No await between the last empty check and going live: nothing slips past.
        sub.seq = top
        sub.live = True

    async def _put_snapshot(self, sub: Subscription, seq: int, state: Any, *,
                            reset: bool) -> None:
        await sub.outbox.put(protocol.snapshot(sub.channel.name, seq, state, reset=reset))
        if sub.channel.kind == "me" and sub.channel.patient is not None:
            self.notices.baseline(sub.channel.patient, seq, state.get("entry"))

    async def _send_reset(self, sub: Subscription, cut: int) -> int:
        """A reset snapshot for a live subscriber whose events were pruned (seq `cut`
        is the last it was sent); returns the snapshot's seq."""
        seq, state = await self.views.snapshot(sub.channel)
        # Events the subscriber has not seen but the snapshot already reflects go first.
        batch, sub.pending = sub.pending, []
        later = []
        for pending_seq, frame, event in batch:
            if cut < pending_seq <= seq:
                await sub.outbox.put(frame)
            elif pending_seq > seq:
                later.append((pending_seq, frame, event))
        sub.pending = later + sub.pending
        await self._put_snapshot(sub, seq, state, reset=True)
        return seq
