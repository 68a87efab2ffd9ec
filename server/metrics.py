"""Prometheus metrics of one app instance (its own registry, no module globals), with
the names the migration plan's alerts.yml uses plus sockets, frames, hub events and lag."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from server.breaker import State

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests answered", ["method", "route", "status"],
            registry=r)
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration", ["route"], registry=r)
        self.breaker_state = Gauge(
            "circuit_breaker_state", "1 for the breaker's current state", ["service", "state"],
            registry=r)
        self.db_connection_errors = Counter(
            "database_connection_errors", "Database calls that failed to reach Postgres",
            registry=r)
        self.ws_connections = Gauge(
            "ws_connections", "Open WebSocket connections", registry=r)
        self.ws_frames_sent = Counter(
            "ws_frames_sent", "Frames sent to WebSocket clients", ["kind"], registry=r)
        self.ws_frames_dropped = Counter(
            "ws_frames_dropped", "Frames dropped because a client's queue was full",
            registry=r)
        self.ws_slow_closes = Counter(
            "ws_slow_client_closes", "Connections closed with 1013 for not reading",
            registry=r)
        self.hub_events = Counter(
            "hub_events", "Events the hub fanned out", registry=r)
        self.hub_log_reads = Counter(
            "hub_log_reads", "Times the hub read the event log rather than relaying the "
            "NOTIFY: a gap in ids, an event too large for NOTIFY, a reconnect, the keepalive",
            registry=r)
        self.hub_listening = Gauge(
            "hub_listening", "1 while the hub's LISTEN connection is up", registry=r)
        self.delivery_lag = Histogram(
            "event_delivery_lag_seconds", "Event commit to frame handed to the socket",
            buckets=LAG_BUCKETS, registry=r)
        self.gc_sweep = Histogram(
            "gc_sweep_seconds", "Full garbage collections (one a minute): how long each "
            "held the event loop", buckets=LAG_BUCKETS, registry=r)
        self.queue_waiting = Gauge(
            "queue_waiting", "Patients waiting per clinic today", ["clinic"], registry=r)
        self.displays_connected = Gauge(
            "displays_connected", "Waiting-room displays connected (to any process)",
            registry=r)
        self.display_last_seen = Gauge(
            "display_last_seen_seconds", "Seconds since each display's last hello",
            ["display", "id"], registry=r)
        self.announcements = Counter(
            "announcements_total", "Spoken calls served, by whether the cache had them",
            ["cache"], registry=r)
        self.commands = Counter(
            "commands_total", "Commands run", ["op", "outcome"], registry=r)
        self.set_breaker_state(State.CLOSED)

    def set_breaker_state(self, state: State, service: str = "database") -> None:
        for candidate in State:
            self.breaker_state.labels(service=service, state=candidate.value).set(
                1 if candidate is state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
