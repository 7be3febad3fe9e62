"""Shared fixtures for the matrix-nio suite.

The homeserver comes from CONIFER_HS_URL (default http://127.0.0.1:8008). Every test registers
fresh users (m.login.dummy) whose names carry a per-run random tag, so the suite can run again and
again against the same server without clean-up.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    SyncResponse,
)

HS_URL = os.environ.get("CONIFER_HS_URL", "http://127.0.0.1:8008").rstrip("/")
PASSWORD = "conifer-test-password-1"
RUN_TAG = secrets.token_hex(3)
_counter = itertools.count(1)


def _check_loopback(url: str) -> None:
    """Refuse to run against anything but a loopback address."""
    host = urlsplit(url).hostname
    if host is None:
        raise pytest.UsageError(f"CONIFER_HS_URL has no host: {url!r}")
    for info in socket.getaddrinfo(host, None):
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_loopback:
            raise pytest.UsageError(f"CONIFER_HS_URL must be a loopback address, got {url!r}")


def pytest_configure(config: pytest.Config) -> None:
    _check_loopback(HS_URL)


def unique_localpart(prefix: str) -> str:
    return f"{prefix}_{RUN_TAG}_{next(_counter)}_{int(time.time() * 1000) % 100000}".lower()


async def register_user(localpart: str) -> RegisterResponse:
    """Registers through nio's register() (m.login.dummy) on a throw-away client."""
    tmp = AsyncClient(HS_URL, localpart, config=AsyncClientConfig(max_timeouts=2, request_timeout=30))
    try:
        resp = await tmp.register(localpart, PASSWORD, device_name="register")
        assert isinstance(resp, RegisterResponse), f"register {localpart}: {resp}"
        assert resp.user_id.startswith(f"@{localpart}:"), resp.user_id
        assert resp.access_token and resp.device_id
        return resp
    finally:
        await tmp.close()


class Http:
    """Minimal raw Client-Server API access for endpoints nio has no wrapper for."""

    def __init__(self, client: AsyncClient):
        self.client = client

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with aiohttp.ClientSession() as session:
            async with session.request(method, HS_URL + path, data=data, headers=headers) as resp:
                text = await resp.text()
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = text
                return resp.status, parsed


def q(s: str) -> str:
    return quote(s, safe="")


ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest_asyncio.fixture
async def new_client(tmp_path: Path):
    """Factory: registers a fresh user, then logs in a new nio client with its password."""
    clients: list[AsyncClient] = []

    async def factory(prefix: str = "user", encryption: bool = False) -> AsyncClient:
        localpart = unique_localpart(prefix)
        await register_user(localpart)
        store = tmp_path / localpart
        store.mkdir()
        config = AsyncClientConfig(
            encryption_enabled=encryption,
            store_sync_tokens=False,
            max_timeouts=2,
            max_limit_exceeded=3,
            request_timeout=30,
        )
        client = AsyncClient(HS_URL, localpart, store_path=str(store), config=config)
        clients.append(client)
        resp = await client.login(PASSWORD, device_name=f"nio-{prefix}")
        assert isinstance(resp, LoginResponse), f"login {localpart}: {resp}"
        assert client.user_id == resp.user_id
        assert client.access_token == resp.access_token
        if encryption:
            assert client.olm is not None, "nio did not load an Olm account (vodozemac missing?)"
        return client

    yield factory
    for client in clients:
        await client.close()


async def sync_once(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    resp = await client.sync(timeout=timeout_ms)
    assert isinstance(resp, SyncResponse), f"sync for {client.user_id}: {resp}"
    return resp


async def sync_until(
    client: AsyncClient,
    predicate: Callable[[SyncResponse], bool],
    what: str,
    deadline_s: float = 20.0,
    poll_ms: int = 1000,
    responses: list[SyncResponse] | None = None,
) -> SyncResponse:
    """Incremental syncs until predicate(response) holds; every response is appended to
    `responses` when given."""
    end = time.monotonic() + deadline_s
    while True:
        resp = await sync_once(client, poll_ms)
        if responses is not None:
            responses.append(resp)
        if predicate(resp):
            return resp
        if time.monotonic() > end:
            raise AssertionError(f"{client.user_id}: timed out waiting for {what}")


def timeline(resp: SyncResponse, room_id: str) -> list:
    room = resp.rooms.join.get(room_id)
    return list(room.timeline.events) if room else []


def ephemeral(resp: SyncResponse, room_id: str) -> list:
    room = resp.rooms.join.get(room_id)
    return list(room.ephemeral) if room else []


async def shared_room(
    alice: AsyncClient, bob: AsyncClient, **create_kwargs: Any
) -> str:
    """alice creates a room, invites bob, bob joins; both have synced the join."""
    created = await alice.room_create(**create_kwargs)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    invited = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(invited, RoomInviteResponse), invited
    await sync_until(bob, lambda r: room_id in r.rooms.invite, "the invite")
    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    assert joined.room_id == room_id
    await sync_until(alice, lambda _r: bob.user_id in alice.rooms[room_id].users, "bob's join")
    return room_id
