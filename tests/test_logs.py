"""Logs: JSON lines with a request or connection id, and never a PIN or a full
patient ID, through a whole run of HTTP and WebSocket traffic at debug level."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from server import logs
from tests.api import running_api
from tests.realtime import Peer

PATIENT_IDS = ("98765432101", "98765432102")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    logs.configure("json", "debug")
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        logs.configure("console", "warning")


async def test_no_pin_and_no_full_patient_id_is_ever_logged(dsn, clock, captured):
    """Logins, a route, calls, wrong and right PINs, PIN reads by staff, errors and a
    socket: every line is JSON, HTTP lines carry request_id, and neither the PINs nor
    the patients' IDs appear anywhere."""
    async with running_api(dsn, clock) as api:
        pins = (await api.get("pin-status", api.tokens["admin"])).json()["result"]["pins"]
        tokens = [await api.login_patient(pid) for pid in PATIENT_IDS]
        for token in tokens:
            await api.post("queue-enter", {"clinic": "eyes"}, token)
        staff = api.tokens["staff_eyes"]
        await api.get("pin-status", staff)
        await api.post("queue-call", {}, staff)
        phone = await Peer.open(api.live.ws_url)
        await phone.call("auth", {"token": tokens[0]})
        await phone.call("subscribe", {"channel": "me"})
        wrong = "01" if pins["eyes"] != "01" else "02"
        assert (await phone.request("pin.submit", {"clinic": "eyes", "pin": wrong}))[
            "error"] == "wrong_pin"
        await phone.call("pin.submit", {"clinic": "eyes", "pin": pins["eyes"]})
        await phone.request("queue.enter", {"clinic": "mars"})
        await phone.send_raw("not json")
        await phone.request("patient.login", {"patient_id": PATIENT_IDS[1], "gender": "x"})
        await phone.close()
        await api.post("patient-login", {"patient_id": PATIENT_IDS[1], "gender": "female"})
        await api.client.get("/api/v1/nope")
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    assert len(lines) > 20
    records = [orjson.loads(line) for line in lines]
    assert any(r.get("event") == "http.request" and r.get("request_id") for r in records)
    text = captured.getvalue()
    for patient_id in PATIENT_IDS:
        assert patient_id not in text
    for pin in set(pins.values()):
        assert not re.search(rf'"{pin}"|pin[=:]\s*"?{pin}\b', text), pin
    assert not any("pin" in key.lower() for r in records for key in r)
