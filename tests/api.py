"""A served app with an HTTP client and the accounts the HTTP tests log in with."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from server import accounts
from server.app import create_app
from server.clock import Clock
from server.db import init_connection
from tests.harness import LiveServer, serve

ADMIN_PASSWORD = "admin password 1"
STAFF_PASSWORD = "staff password 1"


@dataclass
class Api:
    live: LiveServer
    client: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)

    async def get(self, name: str, token: str | None = None, **params: Any) -> httpx.Response:
        return await self.client.get(f"/api/v1/{name}", params=params,
                                     headers=_auth(token))

    async def post(self, name: str, body: Any = None, token: str | None = None,
                   **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return await self.client.post(f"/api/v1/{name}", headers=_auth(token), **kwargs)

    async def login_patient(self, patient_id: str, gender: str = "male") -> str:
        response = await self.post("patient-login", {"patient_id": patient_id,
                                                     "gender": gender})
        assert response.status_code == 200, response.text
        return str(response.json()["result"]["token"])

    async def login(self, username: str, password: str) -> str:
        endpoint = "admin-login" if username == "admin" else "staff-login"
        response = await self.post(endpoint, {"username": username, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["result"]["token"])


def _auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def create_accounts(dsn: str, staff_clinics: tuple[str, ...] = ("eyes", "lab")) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        await accounts.ensure_first_admin(conn, "admin", ADMIN_PASSWORD)
        for clinic in staff_clinics:
            await accounts.create_staff(conn, f"staff_{clinic}", STAFF_PASSWORD, clinic)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_api(dsn: str, clock: Clock | None = None, **app_kwargs: Any
                      ) -> AsyncIterator[Api]:
    await create_accounts(dsn)
    async with serve(create_app(dsn=dsn, clock=clock, **app_kwargs)) as live, \
            httpx.AsyncClient(base_url=live.http_url, timeout=30) as client:
        api = Api(live, client)
        api.tokens["admin"] = await api.login("admin", ADMIN_PASSWORD)
        for clinic in ("eyes", "lab"):
            api.tokens[f"staff_{clinic}"] = await api.login(f"staff_{clinic}", STAFF_PASSWORD)
        yield api
