"""An encrypted conversation between a matrix-nio user on Conifer and one on Synapse: device keys
queried across servers, one-time keys claimed across servers, the Megolm room key carried by Olm
to-device messages over federation, and each side decrypting the other's message."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from urllib.parse import quote

import pytest
from nio.exceptions import EncryptionError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    RegisterResponse,
    RoomMessageText,
    RoomSendResponse,
    ShareGroupSessionResponse,
)

from conftest import SYNAPSE_NAME, SYNAPSE_URL, localpart
from matrix import PASSWORD, call

ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


async def new_client(url: str, prefix: str, store: str) -> AsyncClient:
    name = localpart(prefix)
    client = AsyncClient(url, store_path=store,
                         config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
    resp = await client.register(name, PASSWORD)
    assert isinstance(resp, RegisterResponse), resp
    up = await client.keys_upload()
    assert isinstance(up, KeysUploadResponse), up
    return client


async def housekeeping(client: AsyncClient) -> None:
    await client.sync(timeout=0)
    if client.should_upload_keys:
        assert isinstance(await client.keys_upload(), KeysUploadResponse)
    if client.should_query_keys:
        resp = await client.keys_query()
        assert isinstance(resp, KeysQueryResponse), resp
        assert not resp.failures if hasattr(resp, "failures") else True


async def send_encrypted(sender: AsyncClient, receiver: AsyncClient, room: str) -> str:
    deadline = time.time() + 60
    while receiver.device_id not in sender.device_store[receiver.user_id]:
        assert time.time() < deadline, f"{sender.user_id} never learnt {receiver.user_id}'s device"
        await housekeeping(sender)
        await asyncio.sleep(0.2)
    device = sender.device_store[receiver.user_id][receiver.device_id]
    keys = receiver.olm.account.identity_keys
    assert (device.ed25519, device.curve25519) == (keys["ed25519"], keys["curve25519"])
    missing = sender.get_missing_sessions(room)
    if missing:
        claim = await sender.keys_claim(missing)
        assert isinstance(claim, KeysClaimResponse), claim
        assert not claim.failures, claim.failures
        assert receiver.device_id in claim.one_time_keys[receiver.user_id]
    shared = await sender.share_group_session(room, ignore_unverified_devices=True)
    assert isinstance(shared, ShareGroupSessionResponse), shared
    plaintext = f"secret {secrets.token_hex(6)} from {sender.user_id}"
    sent = await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": plaintext},
                                  ignore_unverified_devices=True)
    assert isinstance(sent, RoomSendResponse), sent
    return plaintext


async def receive_decrypted(receiver: AsyncClient, room: str, plaintext: str) -> None:
    """Syncs until the message decrypts; a Megolm event that came before its room key (an Olm
    to-device message over federation) is tried again after each sync."""
    pending: list[MegolmEvent] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        resp = await receiver.sync(timeout=1000)
        if receiver.should_query_keys:  # what sync_forever does between syncs
            await receiver.keys_query()
        joined = resp.rooms.join.get(room)
        events = joined.timeline.events if joined else []
        # nio decrypts during sync when it already holds the key.
        for e in events:
            if isinstance(e, RoomMessageText) and e.body == plaintext:
                assert e.decrypted, "the message arrived unencrypted"
                return
        pending += [e for e in events if isinstance(e, MegolmEvent)]
        for e in pending:
            try:
                clear = receiver.decrypt_event(e)
            except EncryptionError:
                continue
            if isinstance(clear, RoomMessageText) and clear.body == plaintext:
                assert clear.decrypted, "the message arrived unencrypted"
                return
    raise AssertionError(f"{receiver.user_id} never decrypted {plaintext!r}")


@pytest.mark.parametrize("owner_side", ["synapse", "conifer"])
def test_encrypted_round_trip_between_servers(conifer, owner_side):
    async def run() -> None:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            carol = await new_client(conifer.url, "ecarol", a)
            sam = await new_client(SYNAPSE_URL, "esam", b)
            try:
                owner, guest, server = ((sam, carol, SYNAPSE_NAME) if owner_side == "synapse"
                                        else (carol, sam, conifer.name))
                created = call(owner.homeserver, "POST", "/_matrix/client/v3/createRoom",
                               owner.access_token,
                               {"preset": "public_chat", "initial_state": [ENCRYPTION]})
                room = created["room_id"]
                # nio's join has no server_name; the plain client joins through the owner's server.
                path = f"/_matrix/client/v3/join/{quote(room)}?server_name={quote(server)}"
                joined = call(guest.homeserver, "POST", path, guest.access_token, {})
                assert joined["room_id"] == room
                for sender, receiver in ((carol, sam), (sam, carol)):
                    await housekeeping(receiver)
                    text = await send_encrypted(sender, receiver, room)
                    await receive_decrypted(receiver, room, text)
            finally:
                await carol.close()
                await sam.close()

    asyncio.run(run())
