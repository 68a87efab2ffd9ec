"""The documents under docs/ describe the server: every op, channel, event, notice, error
code, close code, setting and environment variable the server knows appears in them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server import commands, errors, protocol, settings
from server.config import ENVIRONMENT

DOCS = Path(__file__).resolve().parent.parent / "docs"


def document(name: str) -> str:
    return (DOCS / name).read_text()


PROTOCOL = document("protocol.md")


@pytest.mark.parametrize("op", sorted({*commands.OPERATIONS, *protocol.TRANSPORT_OPS}))
def test_every_op_is_in_the_protocol_section(op: str) -> None:
    """An op the server answers is listed (in backquotes) in the ops table."""
    assert f"`{op}`" in PROTOCOL


@pytest.mark.parametrize("event", protocol.EVENTS)
def test_every_event_is_documented(event: str) -> None:
    """Each event type appears among the protocol's events."""
    assert re.search(rf"\b{event}\b", PROTOCOL.split("### Events")[1])


@pytest.mark.parametrize("notice", protocol.NOTICES)
def test_every_notice_is_documented(notice: str) -> None:
    """POSITION, NEAR_TURN, YOUR_TURN each have a row."""
    assert f"| {notice} |" in PROTOCOL


@pytest.mark.parametrize("channel", ["`clinic:<code>`", "`clinic:<code>:staff`", "`me`",
                                     "`admin`"])
def test_every_channel_is_documented(channel: str) -> None:
    """The channels table names each channel."""
    assert f"| {channel} |" in PROTOCOL


@pytest.mark.parametrize("code", sorted(errors.BY_CODE))
def test_every_error_code_is_documented(code: str) -> None:
    """The error envelope's codes with their statuses."""
    assert f"`{code}` {errors.BY_CODE[code].status}" in PROTOCOL


@pytest.mark.parametrize("close", [c for c in protocol.CloseCode if c != 1000])
def test_every_close_code_is_documented(close: protocol.CloseCode) -> None:
    """1008, 1009, 1012 and 1013 each say when they happen."""
    assert f"| {int(close)} |" in PROTOCOL


@pytest.mark.parametrize("key", sorted(settings.SETTINGS))
def test_every_setting_is_documented(key: str) -> None:
    """Each committee setting has a row in the settings table."""
    assert f"| `{key}` |" in document("settings-and-reports.md").split("## Scheduler")[0]


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_every_environment_variable_is_documented(name: str) -> None:
    """Each variable the server reads has a row in the configuration table."""
    assert f"| `{name}` |" in document("configuration.md").split("## Command line")[0]


def test_realtime_modules_are_in_the_module_table() -> None:
    """The architecture's module table names the realtime modules."""
    for module in ("hub", "outbox", "ws", "protocol", "views", "notices", "ratelimit"):
        assert f"| `server/{module}.py` |" in document("architecture.md")
