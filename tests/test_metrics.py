"""/metrics: the seed's alert names on this server's real output, the realtime series,
and the alert rules loading and firing in promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api import running_api
from tests.realtime import Peer

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ")


def series(text: str) -> dict[str, set[frozenset[str]]]:
    """metric name -> the label-name sets it is exposed with."""
    found: dict[str, set[frozenset[str]]] = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match is None:
            continue
        labels = frozenset(p.split("=")[0] for p in (match.group(3) or "").split(",") if p)
        found.setdefault(match.group(1), set()).add(labels)
    return found


def alert_test_series() -> dict[str, frozenset[str]]:
    """The series alerts_test.yml feeds promtool, as name -> label names."""
    out = {}
    for line in (DEPLOY / "alerts_test.yml").read_text().splitlines():
        match = re.search(r"series: '([a-z_]+)(\{([^}]*)\})?'", line)
        if match:
            labels = frozenset(p.split("=")[0] for p in (match.group(3) or "").split(",") if p)
            out[match.group(1)] = labels
    return out


async def test_metrics_expose_the_alert_names_and_realtime_series(dsn, clock):
    """After HTTP calls, a failing request and a socket, /metrics carries every series
    the alerts and their promtool test use, with the same label names."""
    async with running_api(dsn, clock) as api:
        await api.get("stats-queues")
        await api.get("route-get")  # 401
        peer = await Peer.open(api.live.ws_url)
        await peer.call("subscribe", {"channel": "clinic:eyes"})
        await peer.call("display.hello", {"name": "Floor 2 hall", "clinics": ["eyes"],
                                          "sound": True, "voice": "server",
                                          "last_announced": None})
        token = await api.login_patient("55000001")
        await api.post("queue-enter", {"clinic": "eyes"}, token)
        await peer.wait_for(lambda frames: any(f.get("type") == "event" for f in frames))
        text = (await api.client.get("/metrics")).text
        await peer.close()
    exposed = series(text)
    for name, labels in alert_test_series().items():
        assert labels in exposed[name], (name, labels, exposed.get(name))
    assert "http_request_duration_seconds_bucket" in exposed
    assert 'http_requests_total{method="GET",route="/api/v1/route-get",status="401"}' in text
    assert "ws_connections 1.0" in text
    assert re.search(r'ws_frames_sent_total\{kind="event"\} [1-9]', text)
    assert re.search(r"hub_events_total [1-9]", text)
    assert "hub_listening 1.0" in text
    assert "displays_connected 1.0" in text
    assert re.search(r"event_delivery_lag_seconds_count [1-9]", text)
    assert 'queue_waiting{clinic="eyes"} 1.0' in text
    assert 'commands_total{op="queue.enter",outcome="ok"} 1.0' in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed "
                    "(.ci/run installs Debian's prometheus package)")
def test_alert_rules_load_and_fire_in_promtool():
    """`promtool check rules` accepts the seed's rules; `promtool test rules` shows
    CircuitBreakerOpen, HighErrorRate and DatabaseConnectionFailure firing."""
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
