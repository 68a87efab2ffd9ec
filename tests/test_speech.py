"""The spoken call (server/speech.py) and the QR code (server/qr.py): audio in both
languages from espeak-ng, the second request from the cache, the error envelope for
what cannot be said, and a QR code of PUBLIC_URL."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest

from server.app import create_app
from server.config import Config
from server.metrics import Metrics
from server.speech import Speech
from tests.harness import serve

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(
    ESPEAK is None and os.environ.get("MMC_REQUIRE_SPEECH") != "1",
    reason="espeak-ng is not installed (apt-get install espeak-ng); spoken calls untested")


async def client_for(dsn: str, **config: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=4, **config))
    async with serve(app) as live, httpx.AsyncClient(base_url=live.http_url) as client:
        yield client


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(dsn, public_url="https://queue.example.org/"):
        yield c


@needs_espeak
@pytest.mark.parametrize("lang", ["ar", "en"])
async def test_a_call_is_spoken_and_the_second_time_comes_from_the_cache(
        client: httpx.AsyncClient, lang: str) -> None:
    """WAV audio of a few seconds; asked again, the same bytes from the cache."""
    params = {"clinic": "eyes", "number": "23", "lang": lang}
    first = await client.get("/api/v1/announce", params=params)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "audio/wav"
    assert first.headers["x-cache"] == "miss"
    assert first.content.startswith(b"RIFF") and first.content[8:12] == b"WAVE"
    # 16-bit mono at 22,050 Hz: "number 23, ophthalmology" lasts between 1 and 6 s.
    assert 44_100 < len(first.content) < 6 * 44_100
    second = await client.get("/api/v1/announce", params=params)
    assert second.headers["x-cache"] == "hit" and second.content == first.content
    metrics = (await client.get("/metrics")).text
    assert 'announcements_total{cache="hit"} 1.0' in metrics
    assert 'announcements_total{cache="miss"} 1.0' in metrics


@needs_espeak
async def test_the_languages_and_numbers_say_different_things(
        client: httpx.AsyncClient) -> None:
    """Arabic and English, 23 and 24: four different recordings."""
    bodies = set()
    for lang in ("ar", "en"):
        for number in ("23", "24"):
            response = await client.get("/api/v1/announce",
                                        params={"clinic": "eyes", "number": number,
                                                "lang": lang})
            bodies.add(response.content)
    assert len(bodies) == 4


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"clinic": "mars", "number": "23"}, 404, "not_found"),
    ({"clinic": "eyes", "number": "0"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "10000"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "²"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "٢٣"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "-5"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "2.5"}, 400, "bad_request"),
    ({"clinic": "eyes"}, 400, "bad_request"),
    ({"clinic": "Eyes!", "number": "23"}, 400, "bad_request"),
    ({"number": "23"}, 400, "bad_request"),
    ({"clinic": "eyes", "number": "23", "lang": "fr"}, 400, "bad_request"),
])
async def test_what_cannot_be_said_gets_the_error_envelope(
        client: httpx.AsyncClient, params: dict[str, str], status: int, code: str) -> None:
    response = await client.get("/api/v1/announce", params=params)
    assert response.status_code == status
    assert response.json()["error"] == code and response.json()["ok"] is False


async def test_without_espeak_the_server_says_unavailable(
        dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No espeak-ng on the machine: 503 `unavailable`, so the display uses another voice."""
    monkeypatch.setattr("server.speech.shutil.which", lambda name: None)
    async for client in client_for(dsn):
        response = await client.get("/api/v1/announce",
                                    params={"clinic": "eyes", "number": "5", "lang": "en"})
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        assert response.headers["retry-after"]


async def test_the_qr_code_opens_the_public_address(client: httpx.AsyncClient) -> None:
    """An SVG whose title is PUBLIC_URL + path."""
    response = await client.get("/qr.svg", params={"path": "/"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert "<title>https://queue.example.org/</title>" in response.text
    assert "<path" in response.text
    default = await client.get("/qr.svg")
    assert default.text == response.text


@pytest.mark.parametrize("path", ["https://evil.example", "//evil.example/", "relative",
                                  "/a b", "/" + "x" * 300, "/<script>", "/²"])
async def test_a_qr_code_only_for_a_path_of_this_server(client: httpx.AsyncClient,
                                                        path: str) -> None:
    response = await client.get("/qr.svg", params={"path": path})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


@needs_espeak
async def test_the_cache_keeps_recordings_up_to_its_size_in_bytes() -> None:
    """Many calls, each a new number: the cache holds at most its budget in bytes, the
    latest recordings (the soak grew each process by every call's recording)."""
    speech = Speech(ESPEAK, Metrics(), cache_bytes=400_000)
    sizes = []
    for number in range(1, 13):
        audio, hit = await speech.say("en", f"Number {number}, ophthalmology")
        assert not hit
        sizes.append(len(audio))
    assert sum(sizes) > 3 * speech.cache_bytes  # every one would not fit
    assert 0 < speech.cached_bytes <= speech.cache_bytes
    assert (await speech.say("en", "Number 12, ophthalmology"))[1]  # the latest: kept
    assert not (await speech.say("en", "Number 1, ophthalmology"))[1]  # the oldest: gone
