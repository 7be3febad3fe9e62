"""(b) End-to-end encryption round trip with matrix-nio (vodozemac): device and one-time key
upload, key query, key claim, room key shared by to-device Olm messages, Megolm decryption in both
directions.

nio is driven by hand (no sync_forever), so key upload/query/claim are called explicitly, guarded
by should_upload_keys / should_query_keys / should_claim_keys, and messages are sent with
ignore_unverified_devices=True (devices are not cross-signed or verified here)."""

from __future__ import annotations

import json
import secrets

from nio import (
    AsyncClient,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    RoomInviteResponse,
    RoomKeyEvent,
    RoomLeaveResponse,
    RoomMessageText,
    RoomSendResponse,
    ShareGroupSessionResponse,
    SyncResponse,
)

from conftest import Http, q, shared_room, sync_once, sync_until

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def upload_keys(client: AsyncClient) -> KeysUploadResponse:
    assert client.should_upload_keys, "a fresh device should need a key upload"
    resp = await client.keys_upload()
    assert isinstance(resp, KeysUploadResponse), resp
    assert resp.signed_curve25519_count > 0, "server reports no one-time keys after upload"
    assert not client.should_upload_keys
    return resp


async def housekeeping(client: AsyncClient) -> None:
    """What sync_forever does after each sync."""
    if client.should_upload_keys:
        resp = await client.keys_upload()
        assert isinstance(resp, KeysUploadResponse), resp
    if client.should_query_keys:
        resp = await client.keys_query()
        assert isinstance(resp, KeysQueryResponse), resp
    if client.should_claim_keys:
        resp = await client.keys_claim(client.get_users_for_key_claiming())
        assert isinstance(resp, KeysClaimResponse), resp


async def otk_count(client: AsyncClient) -> int:
    """The server's count of this device's unclaimed signed_curve25519 keys (empty upload)."""
    status, body = await Http(client).request("POST", "/_matrix/client/v3/keys/upload", {})
    assert status == 200, body
    return body.get("one_time_key_counts", {}).get("signed_curve25519", 0)


def find_decrypted(resps: list[SyncResponse], client: AsyncClient, room_id: str, event_id: str):
    """The event as the client sees it; a Megolm event that arrived before its key is decrypted
    now."""
    for r in resps:
        room = r.rooms.join.get(room_id)
        if not room:
            continue
        for e in room.timeline.events:
            if e.event_id != event_id:
                continue
            if isinstance(e, MegolmEvent):
                return client.decrypt_event(e)
            return e
    return None


def check_device_known(observer: AsyncClient, target: AsyncClient) -> None:
    devices = observer.device_store[target.user_id]
    assert target.device_id in devices, f"{observer.user_id} does not know {target.device_id}"
    device = devices[target.device_id]
    keys = target.olm.account.identity_keys
    assert device.ed25519 == keys["ed25519"]
    assert device.curve25519 == keys["curve25519"]


async def send_and_decrypt(
    sender: AsyncClient, receiver: AsyncClient, room_id: str, expect_claim: bool
) -> None:
    plaintext = f"secret {secrets.token_hex(8)} from {sender.user_id}"

    # Sender side: know the receiver's devices, claim a one-time key if there is no Olm session.
    await sync_once(sender)
    await housekeeping(sender)
    check_device_known(sender, receiver)
    missing = sender.get_missing_sessions(room_id)
    # The first sender has no Olm session with the receiver's device and must claim a one-time
    # key; the reply reuses the session the first pre-key message established.
    assert bool(missing) == expect_claim, missing
    if missing:
        assert receiver.device_id in missing.get(receiver.user_id, []), missing
        before = await otk_count(receiver)
        claim = await sender.keys_claim(missing)
        assert isinstance(claim, KeysClaimResponse), claim
        assert not claim.failures, claim.failures
        claimed = claim.one_time_keys[receiver.user_id][receiver.device_id]
        assert len(claimed) == 1
        (key_id, key), = claimed.items()
        assert key_id.startswith("signed_curve25519:"), key_id
        assert "signatures" in key and receiver.user_id in key["signatures"]
        assert receiver.device_id not in sender.get_missing_sessions(room_id).get(receiver.user_id, [])
        after = await otk_count(receiver)
        assert after == before - 1, f"one-time key count {before} -> {after} after one claim"

    shared = await sender.share_group_session(room_id, ignore_unverified_devices=True)
    assert isinstance(shared, ShareGroupSessionResponse), shared
    assert (receiver.user_id, receiver.device_id) in shared.users_shared_with

    sent = await sender.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": plaintext},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent

    # The server stores only ciphertext.
    status, raw = await Http(receiver).request(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(sent.event_id)}"
    )
    assert status == 200, raw
    assert raw["type"] == "m.room.encrypted", raw
    assert raw["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "ciphertext" in raw["content"]
    assert plaintext not in json.dumps(raw)

    # Receiver side: the room key arrives as an Olm-encrypted to-device message, then the
    # Megolm event decrypts.
    resps: list[SyncResponse] = []
    await sync_until(
        receiver,
        lambda r: find_decrypted([r], receiver, room_id, sent.event_id) is not None,
        "the encrypted message",
        responses=resps,
    )
    await housekeeping(receiver)
    keys = [e for r in resps for e in r.to_device_events if isinstance(e, RoomKeyEvent)]
    assert any(k.room_id == room_id and k.sender == sender.user_id for k in keys), (
        f"no m.room_key to-device event for {room_id}: {[r.to_device_events for r in resps]}"
    )
    event = find_decrypted(resps, receiver, room_id, sent.event_id)
    assert isinstance(event, RoomMessageText), f"could not decrypt: {event!r}"
    assert event.decrypted
    assert event.body == plaintext
    assert event.sender == sender.user_id
    assert any(k.session_id == event.session_id for k in keys)


async def test_encrypted_round_trip(new_client):
    alice = await new_client("ealice", encryption=True)
    bob = await new_client("ebob", encryption=True)

    a_up = await upload_keys(alice)
    await upload_keys(bob)
    assert await otk_count(alice) == a_up.signed_curve25519_count

    room_id = await shared_room(
        alice, bob, name="e2ee", initial_state=[ENCRYPTION_STATE]
    )
    await sync_once(bob)
    assert alice.rooms[room_id].encrypted
    assert bob.rooms[room_id].encrypted

    # /keys/query straight from the server agrees with the device's own identity keys.
    status, body = await Http(alice).request(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bob.user_id: []}}
    )
    assert status == 200, body
    dk = body["device_keys"][bob.user_id][bob.device_id]
    assert dk["user_id"] == bob.user_id and dk["device_id"] == bob.device_id
    bob_keys = bob.olm.account.identity_keys
    assert dk["keys"][f"ed25519:{bob.device_id}"] == bob_keys["ed25519"]
    assert dk["keys"][f"curve25519:{bob.device_id}"] == bob_keys["curve25519"]
    assert "m.megolm.v1.aes-sha2" in dk["algorithms"]
    assert bob.user_id in dk["signatures"]

    # alice -> bob, then bob -> alice.
    await send_and_decrypt(alice, bob, room_id, expect_claim=True)
    await send_and_decrypt(bob, alice, room_id, expect_claim=False)


async def test_to_device_message_delivered_once(new_client):
    """A plain (unencrypted) to-device message arrives in the recipient's next sync, once."""
    alice = await new_client("tdalice")
    bob = await new_client("tdbob")
    await sync_once(bob)
    token = secrets.token_hex(6)
    status, body = await Http(alice).request(
        "PUT",
        f"/_matrix/client/v3/sendToDevice/org.conifer.test/{token}",
        {"messages": {bob.user_id: {bob.device_id: {"token": token}}}},
    )
    assert status == 200, body

    def mine(r: SyncResponse):
        return [
            e for e in r.to_device_events
            if e.source.get("type") == "org.conifer.test"
            and e.source.get("content", {}).get("token") == token
        ]

    r = await sync_until(bob, lambda r: bool(mine(r)), "the to-device message")
    (event,) = mine(r)
    assert event.source["sender"] == alice.user_id
    again = await sync_once(bob, 500)
    assert not mine(again), "to-device message delivered twice"


async def test_late_joiner_gets_room_key_and_device_list_updates(new_client):
    """A user who joins an encrypted room later appears in device_lists.changed of the members'
    next sync, gets the room key for new messages and decrypts them; after leaving, the user is
    in device_lists.left."""
    alice = await new_client("lalice", encryption=True)
    bob = await new_client("lbob", encryption=True)
    carol = await new_client("lcarol", encryption=True)
    for c in (alice, bob, carol):
        await upload_keys(c)
    room_id = await shared_room(alice, bob, name="late joiner", initial_state=[ENCRYPTION_STATE])
    await send_and_decrypt(alice, bob, room_id, expect_claim=True)

    resps = []
    await sync_once(alice)
    invited = await alice.room_invite(room_id, carol.user_id)
    assert isinstance(invited, RoomInviteResponse), invited
    await sync_until(carol, lambda r: room_id in r.rooms.invite, "carol's invite")
    joined = await carol.join(room_id)
    assert isinstance(joined, JoinResponse) and joined.room_id == room_id, joined
    await sync_once(carol)
    await sync_until(
        alice,
        lambda r: carol.user_id in (r.device_list.changed if r.device_list else []),
        "carol in alice's device_lists.changed",
        responses=resps,
    )
    await send_and_decrypt(alice, carol, room_id, expect_claim=True)

    left = await carol.room_leave(room_id)
    assert isinstance(left, RoomLeaveResponse), left
    await sync_until(
        alice,
        lambda r: carol.user_id in (r.device_list.left if r.device_list else []),
        "carol in alice's device_lists.left",
    )
