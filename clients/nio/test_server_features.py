"""Further server behaviours clients rely on: discovery, aliases and the room directory,
membership moderation, media, presence, logout, device-list changes for E2EE."""

from __future__ import annotations

import io
import secrets

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    MemoryDownloadResponse,
    PresenceGetResponse,
    PresenceSetResponse,
    RoomBanResponse,
    RoomCreateResponse,
    RoomDeleteAliasResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomMemberEvent,
    RoomPutAliasResponse,
    RoomResolveAliasResponse,
    RoomUnbanResponse,
    RoomVisibility,
    UploadResponse,
    WhoamiResponse,
)

from conftest import HS_URL, PASSWORD, Http, shared_room, sync_once, sync_until, timeline


async def test_discovery_endpoints(new_client):
    async with aiohttp.ClientSession() as s:
        async with s.get(HS_URL + "/_matrix/client/versions") as r:
            assert r.status == 200
            versions = await r.json()
        async with s.get(HS_URL + "/_matrix/client/v3/login") as r:
            assert r.status == 200
            flows = await r.json()
    assert isinstance(versions["versions"], list) and versions["versions"]
    assert any(v.startswith("v1.") for v in versions["versions"]), versions
    assert {"type": "m.login.password"} in [{"type": f["type"]} for f in flows["flows"]], flows

    alice = await new_client("disc")
    status, caps = await Http(alice).request("GET", "/_matrix/client/v3/capabilities")
    assert status == 200, caps
    assert "capabilities" in caps
    rv = caps["capabilities"].get("m.room_versions")
    if rv is not None:
        assert rv["default"] in rv["available"], rv

    # Requests without or with a bad token are rejected with M_MISSING_TOKEN / M_UNKNOWN_TOKEN.
    async with aiohttp.ClientSession() as s:
        async with s.get(HS_URL + "/_matrix/client/v3/account/whoami") as r:
            assert r.status == 401
            assert (await r.json())["errcode"] == "M_MISSING_TOKEN"
        async with s.get(
            HS_URL + "/_matrix/client/v3/account/whoami",
            headers={"Authorization": "Bearer not-a-token"},
        ) as r:
            assert r.status == 401
            assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_invalidates_token(new_client):
    alice = await new_client("logout")
    token = alice.access_token
    who = await alice.whoami()
    assert isinstance(who, WhoamiResponse)
    await alice.logout()
    async with aiohttp.ClientSession() as s:
        async with s.get(
            HS_URL + "/_matrix/client/v3/account/whoami",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            assert r.status == 401
            assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"
    # The password still works for a new login.
    again = AsyncClient(HS_URL, alice.user_id)
    try:
        resp = await again.login(PASSWORD)
        assert isinstance(resp, LoginResponse), resp
    finally:
        await again.close()


async def test_alias_and_public_directory(new_client):
    alice = await new_client("dir")
    bob = await new_client("dirb")
    server_name = alice.user_id.split(":", 1)[1]
    local = f"conifer-{secrets.token_hex(4)}"
    alias = f"#{local}:{server_name}"
    created = await alice.room_create(
        visibility=RoomVisibility.public, alias=local, name=f"public {local}"
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    resolved = await bob.room_resolve_alias(alias)
    assert isinstance(resolved, RoomResolveAliasResponse), resolved
    assert resolved.room_id == room_id

    # A second alias via PUT, then delete it.
    extra = f"#{local}-2:{server_name}"
    put = await alice.room_put_alias(extra, room_id)
    assert isinstance(put, RoomPutAliasResponse), put
    assert (await bob.room_resolve_alias(extra)).room_id == room_id
    deleted = await alice.room_delete_alias(extra)
    assert isinstance(deleted, RoomDeleteAliasResponse), deleted
    gone = await bob.room_resolve_alias(extra)
    assert not isinstance(gone, RoomResolveAliasResponse), gone

    # The public room shows in the directory and can be joined by alias.
    status, body = await Http(bob).request(
        "POST", "/_matrix/client/v3/publicRooms", {"limit": 100, "filter": {"generic_search_term": local}}
    )
    assert status == 200, body
    assert room_id in [c["room_id"] for c in body["chunk"]], body
    joined = await bob.join(alias)
    assert isinstance(joined, JoinResponse), joined
    assert joined.room_id == room_id


async def test_kick_ban_unban(new_client):
    alice = await new_client("mod")
    bob = await new_client("modb")
    room_id = await shared_room(alice, bob)

    def membership_of(r, user, value):
        return any(
            isinstance(e, RoomMemberEvent) and e.state_key == user and e.membership == value
            for e in timeline(r, room_id)
        )

    kicked = await alice.room_kick(room_id, bob.user_id, reason="test kick")
    assert isinstance(kicked, RoomKickResponse), kicked
    await sync_until(bob, lambda r: room_id in r.rooms.leave, "the kick (room under leave)")

    # bob can rejoin a private_chat room only after a new invite; ban then blocks it.
    banned = await alice.room_ban(room_id, bob.user_id, reason="test ban")
    assert isinstance(banned, RoomBanResponse), banned
    await sync_until(alice, lambda r: membership_of(r, bob.user_id, "ban"), "the ban event")
    rejoin = await bob.join(room_id)
    assert not isinstance(rejoin, JoinResponse), "a banned user joined"
    invite = await alice.room_invite(room_id, bob.user_id)
    assert not isinstance(invite, RoomInviteResponse), "invited a banned user"

    unbanned = await alice.room_unban(room_id, bob.user_id)
    assert isinstance(unbanned, RoomUnbanResponse), unbanned
    await sync_until(alice, lambda r: membership_of(r, bob.user_id, "leave"), "the unban event")
    reinvite = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(reinvite, RoomInviteResponse), reinvite
    again = await bob.join(room_id)
    assert isinstance(again, JoinResponse), again


async def test_media_upload_download(new_client):
    alice = await new_client("media")
    bob = await new_client("mediab")
    payload = secrets.token_bytes(3000) + b"conifer"
    resp, _keys = await alice.upload(
        io.BytesIO(payload), content_type="application/octet-stream",
        filename="blob.bin", filesize=len(payload),
    )
    assert isinstance(resp, UploadResponse), resp
    assert resp.content_uri.startswith("mxc://"), resp.content_uri

    got = await bob.download(mxc=resp.content_uri)
    assert isinstance(got, MemoryDownloadResponse), got
    assert got.body == payload
    assert got.content_type.startswith("application/octet-stream")

    status, config = await Http(bob).request("GET", "/_matrix/client/v1/media/config")
    assert status == 200, config
    assert config.get("m.upload.size", len(payload)) >= len(payload)


async def test_presence(new_client):
    alice = await new_client("pres")
    bob = await new_client("presb")
    await shared_room(alice, bob)
    resp = await alice.set_presence("online", "testing conifer")
    assert isinstance(resp, PresenceSetResponse), resp
    got = await bob.get_presence(alice.user_id)
    assert isinstance(got, PresenceGetResponse), got
    assert got.presence == "online"
    assert got.status_msg == "testing conifer"


async def test_new_device_shows_in_device_lists(new_client):
    """E2EE housekeeping: a user's new device appears in the other user's sync as
    device_lists.changed, and /keys/query then returns it."""
    alice = await new_client("dlalice", encryption=True)
    bob = await new_client("dlbob", encryption=True)
    for c in (alice, bob):
        up = await c.keys_upload()
        assert isinstance(up, KeysUploadResponse), up
    # nio tracks the device lists of users it shares an encrypted room with.
    await shared_room(
        alice, bob, initial_state=[{
            "type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        }],
    )
    await sync_once(alice)
    q = await alice.keys_query()
    assert isinstance(q, KeysQueryResponse), q
    assert set(alice.device_store[bob.user_id]) == {bob.device_id}

    # bob logs in a second device and uploads its keys.
    second = AsyncClient(
        HS_URL, bob.user_id, store_path=bob.store_path,
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
    )
    try:
        login = await second.login(PASSWORD, device_name="second")
        assert isinstance(login, LoginResponse), login
        up = await second.keys_upload()
        assert isinstance(up, KeysUploadResponse), up

        await sync_until(
            alice,
            lambda r: bob.user_id in (r.device_list.changed if r.device_list else []),
            "bob in device_lists.changed",
        )
        status, body = await Http(alice).request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bob.user_id: []}}
        )
        assert status == 200, body
        assert {bob.device_id, second.device_id} <= set(body["device_keys"][bob.user_id]), body
        assert alice.should_query_keys, "nio did not mark bob's device list as outdated"
        q = await alice.keys_query()
        assert isinstance(q, KeysQueryResponse), q
        assert second.device_id in alice.device_store[bob.user_id]
    finally:
        await second.close()
