"""Fixtures: a real Postgres per session, a fresh database per test, the manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from server import logs
from server.clock import ManualClock
from server.db import Database
from tests.harness import Cluster, start_cluster

logs.configure("console", "warning")

# A Sunday morning in Doha: 08:00 Asia/Qatar.
START = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        if cluster.embedded is not None:
            cluster.embedded.stop()


@pytest.fixture(scope="session")
async def template(cluster: Cluster) -> Cluster:
    await cluster.create_template()
    return cluster


@pytest.fixture
async def dsn(template: Cluster) -> AsyncIterator[str]:
    name = await template.create_database()
    try:
        yield template.dsn(name)
    finally:
        await template.drop_database(name)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def db(dsn: str, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.connect(dsn, clock=clock, min_size=1, max_size=20)
    try:
        yield database
    finally:
        await database.close()
