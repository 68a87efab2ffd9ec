"""The spoken call, `GET /api/v1/announce?clinic=eyes&number=23&lang=ar`: "number 23,
ophthalmology" as WAV from espeak-ng, cached per clinic, number and language.

Displays play it so that a screen with no Arabic voice of its own still speaks. It is
public: it names only a clinic and a number. Without espeak-ng it answers `unavailable`
and the display falls back to the browser's voice or the chime."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import OrderedDict

import structlog
from starlette.requests import Request
from starlette.responses import Response

from server import errors
from server.args import CLINIC_CODE
from server.db import Database
from server.metrics import Metrics

log = structlog.get_logger(__name__)

LANGUAGES = {"ar": ("ar", "الرقم {number}، {name}"), "en": ("en", "Number {number}, {name}")}
NUMBER = re.compile(r"[0-9]{1,4}")  # ASCII digits only: int() would take "²" or "٣" too
MAX_NUMBER = 9999
# The recordings kept, by size (about 90 KB in English, 120 KB in Arabic): every display
# of a clinic asks for a call within seconds of it (and again for a recall), and the
# page's HTTP cache keeps it for an hour, so the last few dozen calls are all worth
# keeping (8 MiB: the last 35 or so calls in both languages). Bounded by count (512)
# it grew each process by every call's recordings, about 1 MiB a minute in the soak,
# up to some 55 MiB.
CACHE_BYTES = 8 * 1024 * 1024
SYNTHESIS_TIMEOUT = 10.0
CONCURRENT_SYNTHESES = 2   # espeak-ng is CPU-bound; more would only queue in the kernel
# Missing espeak-ng is a property of the machine, not a passing fault.
NOT_INSTALLED_RETRY_AFTER = 3600


class Speech:
    """espeak-ng behind an LRU cache bounded in bytes; one synthesis per text at a time."""

    def __init__(self, binary: str | None, metrics: Metrics, *,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.binary = binary
        self.metrics = metrics
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0  # the recordings' size in the cache
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Task[bytes]] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_SYNTHESES)

    @classmethod
    def from_path(cls, metrics: Metrics) -> Speech:
        return cls(shutil.which("espeak-ng"), metrics)

    async def say(self, voice: str, text: str) -> tuple[bytes, bool]:
        """The WAV for `text` and whether it came from the cache."""
        key = (voice, text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.metrics.announcements.labels(cache="hit").inc()
            return cached, True
        if self.binary is None:
            raise errors.Unavailable("spoken calls are not installed on this server",
                                     retry_after=NOT_INSTALLED_RETRY_AFTER)
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.create_task(self._synthesise(voice, text))
            task.add_done_callback(lambda _: self._running.pop(key, None))
        audio = await asyncio.shield(task)
        if key not in self._cache:
            self._cache[key] = audio
            self.cached_bytes += len(audio)
        while self.cached_bytes > self.cache_bytes:
            self.cached_bytes -= len(self._cache.popitem(last=False)[1])
        self.metrics.announcements.labels(cache="miss").inc()
        return audio, False

    async def _synthesise(self, voice: str, text: str) -> bytes:
        assert self.binary is not None
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                self.binary, "-v", voice, "-s", "150", "--stdout",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            try:
                async with asyncio.timeout(SYNTHESIS_TIMEOUT):
                    audio, _ = await process.communicate(text.encode())
            except TimeoutError:
                process.kill()
                await process.wait()
                audio = b""
        if process.returncode != 0 or not audio.startswith(b"RIFF"):
            log.warning("speech.failed", voice=voice, returncode=process.returncode)
            raise errors.Unavailable("the spoken call could not be made", retry_after=5)
        return audio


def parse(request: Request) -> tuple[str, int, str]:
    """clinic, number and language from the query, or bad_request."""
    query = request.query_params
    clinic, number, lang = query.get("clinic"), query.get("number"), query.get("lang", "ar")
    if clinic is None or CLINIC_CODE.fullmatch(clinic) is None:
        raise errors.BadRequest("clinic must be a clinic code")
    if number is None or NUMBER.fullmatch(number) is None or \
            not 1 <= int(number) <= MAX_NUMBER:
        raise errors.BadRequest(f"number must be a whole number from 1 to {MAX_NUMBER}")
    if lang not in LANGUAGES:
        raise errors.BadRequest("lang must be ar or en")
    return clinic, int(number), lang


async def announce(request: Request) -> Response:
    clinic, number, lang = parse(request)
    db: Database = request.state.db
    names = await db.row("SELECT name, name_ar FROM clinics WHERE code = $1 AND is_active",
                         clinic)
    if names is None:
        raise errors.NotFound("unknown clinic")
    voice, template = LANGUAGES[lang]
    text = template.format(number=number, name=names["name_ar" if lang == "ar" else "name"])
    speech: Speech = request.state.speech
    audio, hit = await speech.say(voice, text)
    return Response(audio, media_type="audio/wav",
                    headers={"Cache-Control": "public, max-age=3600",
                             "X-Cache": "hit" if hit else "miss"})
