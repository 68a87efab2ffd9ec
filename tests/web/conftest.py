"""Fixtures of the browser tests: one Chromium per session (or a plain skip)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.web.browser import chromium


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched
