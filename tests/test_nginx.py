"""deploy/nginx.conf, the configuration operators run: `nginx -t` accepts it, and two
`python -m server serve` processes behind it serve WebSocket clients that land on both
and resume on the other, with no gap, when one stops (tests/chaos renders it alike)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients.python import Client
from server.db import Database
from tests.chaos import nginx
from tests.harness import MS, free_port
from tests.people import ADMIN, patient
from tests.realtime import Peer, token_for
from tests.test_hub import expected_seqs
from tests.test_multiprocess import ServeProcess, start_serve, stop

if nginx.binary() is None:
    if os.environ.get("MMC_REQUIRE_NGINX") == "1":
        raise RuntimeError("nginx is required here (MMC_REQUIRE_NGINX=1) but not installed")
    pytest.skip("nginx is not installed (apt-get install nginx-light)", allow_module_level=True)


def test_the_deployed_configuration_passes_nginx_t(tmp_path: Path) -> None:
    """Only the lines marked `# chaos:` change in the rendered copy; nginx accepts it."""
    conf = nginx.render(tmp_path, free_port(), [free_port(), free_port()])
    checked = nginx.check(conf)
    assert checked.returncode == 0, checked.stderr
    original = nginx.CONFIG.read_text().splitlines()
    kept = [line for line in original if "# chaos:" not in line]
    assert [line for line in conf.read_text().splitlines() if line in kept] == kept


def test_the_configuration_proxies_websockets_and_server_sent_events() -> None:
    """What a WebSocket and an SSE stream need through a proxy is in the file."""
    text = nginx.CONFIG.read_text()
    for needed in ("proxy_set_header Upgrade $http_upgrade",
                   "proxy_set_header Connection $connection_upgrade",
                   "location = /api/v1/events-stream", "proxy_buffering off",
                   "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
                   "client_max_body_size 64k", "location = /ready"):
        assert needed in text, needed
    # Longer than the servers' ping interval plus its timeout (server/runner.py).
    assert "proxy_read_timeout 120s" in text


@pytest.fixture
async def behind(dsn: str, tmp_path: Path
                 ) -> AsyncIterator[tuple[ServeProcess, ServeProcess, str]]:
    """Two served processes and nginx in front of them: (a, b, nginx's ws URL)."""
    a, b = await asyncio.gather(start_serve(dsn), start_serve(dsn))
    port = free_port()
    front = nginx.Nginx(nginx.render(tmp_path / "nginx", port, [a.port, b.port]))
    try:
        await asyncio.to_thread(front.start, port)
        yield a, b, f"ws://127.0.0.1:{port}/ws"
    finally:
        await asyncio.to_thread(front.stop)
        await asyncio.gather(stop(a), stop(b))


def accepted(served: ServeProcess) -> int:
    return sum("WebSocket /ws" in line and "accepted" in line for line in served.log)


async def collect(client: Client, into: list[dict[str, Any]]) -> None:
    async for frame in client.frames():
        into.append(frame)


async def test_clients_reach_both_processes_and_resume_on_the_other_when_one_stops(
        behind: tuple[ServeProcess, ServeProcess, str], db: Database) -> None:
    """Displays through nginx land on both processes; one process stops (SIGTERM, so
    its sockets get 1012); its displays come back through nginx on the other and end
    with every seq once, in order, and no reset."""
    a, b, url = behind
    db = Database(db.pool)  # the served processes run on the system clock
    patients = [await patient(db, f"2300000{i:04d}") for i in range(12)]
    displays: list[tuple[Client, list[dict[str, Any]]]] = []
    tasks = []
    for _ in range(4):
        client = Client(url, max_backoff=0.2)
        await client.connect()
        frames: list[dict[str, Any]] = []
        displays.append((client, frames))
        tasks.append(asyncio.create_task(collect(client, frames)))
        await client.subscribe("clinic:lab")
    assert accepted(a) >= 1 and accepted(b) >= 1, "round robin reaches both processes"
    tablet = await Peer.open(b.ws_url)
    await tablet.call("auth", {"token": await token_for(db, ADMIN)})

    async def enter(token: str) -> None:
        phone = await Peer.open(b.ws_url)
        await phone.call("auth", {"token": token})
        await phone.call("queue.enter", {"clinic": "lab"})
        await phone.close()

    for i, who in enumerate(patients):
        await enter(await token_for(db, who))
        await tablet.call("queue.call", {"clinic": "lab"})
        if i == 5:
            a.process.send_signal(signal.SIGTERM)
            await a.process.wait()
    want_all = (await expected_seqs(db))["clinic:lab"]
    for _client, frames in displays:
        start = next(f["seq"] for f in frames if f["type"] == "snapshot")
        want = [s for s in want_all if s > start]

        def seqs(fs: list[dict[str, Any]] = frames) -> list[int]:
            return [f["seq"] for f in fs if f["type"] == "event"]

        for _ in range(1000):
            if len(seqs()) >= len(want):
                break
            await asyncio.sleep(10 * MS)
        assert seqs() == want
        assert [f for f in frames if f["type"] == "snapshot" and f.get("reset")] == []
    assert any(client.connects == 2 for client, _ in displays), "someone moved"
    for client, _ in displays:
        await client.close()
    await tablet.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
