"""(c) More client behaviours: profile, typing, receipts and read markers, account data, history
pagination, state events, devices, redaction, filters."""

from __future__ import annotations

import secrets

from nio import (
    DevicesResponse,
    FullyReadEvent,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    ProfileGetResponse,
    ProfileSetDisplayNameResponse,
    ReceiptEvent,
    RedactedEvent,
    RoomGetStateEventResponse,
    RoomGetStateResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPutStateResponse,
    RoomReadMarkersResponse,
    RoomRedactResponse,
    RoomSendResponse,
    RoomTypingResponse,
    TypingNoticeEvent,
    UnknownAccountDataEvent,
    UpdateReceiptMarkerResponse,
    UploadFilterResponse,
)

from conftest import Http, ephemeral, q, shared_room, sync_once, sync_until, timeline


async def send_text(client, room_id, body) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def test_profile_displayname(new_client):
    alice = await new_client("palice")
    bob = await new_client("pbob")
    room_id = await shared_room(alice, bob)

    name = f"Alice {secrets.token_hex(3)}"
    resp = await alice.set_displayname(name)
    assert isinstance(resp, ProfileSetDisplayNameResponse), resp

    own = await alice.get_displayname()
    assert isinstance(own, ProfileGetDisplayNameResponse), own
    assert own.displayname == name

    # Another user reads the same profile.
    seen = await bob.get_displayname(alice.user_id)
    assert isinstance(seen, ProfileGetDisplayNameResponse) and seen.displayname == name
    profile = await bob.get_profile(alice.user_id)
    assert isinstance(profile, ProfileGetResponse), profile
    assert profile.displayname == name

    # The change is propagated into rooms as a new m.room.member event with the displayname.
    await sync_until(
        bob,
        lambda r: any(
            isinstance(e, RoomMemberEvent)
            and e.state_key == alice.user_id
            and e.content.get("displayname") == name
            for e in timeline(r, room_id)
        ),
        "alice's member event with the new displayname",
    )
    assert bob.rooms[room_id].user_name(alice.user_id) == name


async def test_typing_notifications(new_client):
    alice = await new_client("talice")
    bob = await new_client("tbob")
    room_id = await shared_room(alice, bob)
    await sync_once(bob)

    resp = await alice.room_typing(room_id, True, timeout=30000)
    assert isinstance(resp, RoomTypingResponse), resp

    def typing_users(r):
        events = [e for e in ephemeral(r, room_id) if isinstance(e, TypingNoticeEvent)]
        return events[-1].users if events else None

    await sync_until(bob, lambda r: alice.user_id in (typing_users(r) or []), "alice typing")
    assert alice.user_id in bob.rooms[room_id].typing_users

    resp = await alice.room_typing(room_id, False)
    assert isinstance(resp, RoomTypingResponse), resp
    await sync_until(
        bob,
        lambda r: typing_users(r) is not None and alice.user_id not in typing_users(r),
        "alice stopped typing",
    )


async def test_read_receipt_and_fully_read_marker(new_client):
    alice = await new_client("ralice")
    bob = await new_client("rbob")
    room_id = await shared_room(alice, bob)

    event_id = await send_text(bob, room_id, "please read me")
    await sync_until(
        alice, lambda r: event_id in {e.event_id for e in timeline(r, room_id)}, "bob's message"
    )

    # nio's default: a threaded receipt on the main timeline, body {"thread_id": "main"}.
    # (nio sends {"thread_id": null} when thread_id=None, which Synapse rejects with
    # M_INVALID_PARAM, so the unthreaded receipt below goes over raw HTTP.)
    resp = await alice.update_receipt_marker(room_id, event_id)
    assert isinstance(resp, UpdateReceiptMarkerResponse), resp

    def alice_read(r, eid):
        for e in ephemeral(r, room_id):
            if isinstance(e, ReceiptEvent):
                for rc in e.receipts:
                    rtype = getattr(rc.receipt_type, "value", rc.receipt_type)
                    if rc.user_id == alice.user_id and rc.event_id == eid and rtype == "m.read":
                        return rc
        return None

    r = await sync_until(bob, lambda r: alice_read(r, event_id) is not None, "alice's read receipt")
    receipt = alice_read(r, event_id)
    assert receipt.timestamp > 0
    assert receipt.thread_id == "main"

    # An unthreaded receipt (empty body) on a newer message.
    event2 = await send_text(bob, room_id, "and me")
    await sync_until(
        alice, lambda r: event2 in {e.event_id for e in timeline(r, room_id)}, "bob's 2nd message"
    )
    status, body = await Http(alice).request(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event2)}", {}
    )
    assert status == 200, body
    r = await sync_until(bob, lambda r: alice_read(r, event2) is not None, "unthreaded receipt")
    assert alice_read(r, event2).thread_id is None

    # m.fully_read via /read_markers lands in alice's room account data.
    resp = await alice.room_read_markers(room_id, fully_read_event=event_id, read_event=event_id)
    assert isinstance(resp, RoomReadMarkersResponse), resp

    def fully_read(r):
        room = r.rooms.join.get(room_id)
        if not room:
            return None
        for e in room.account_data:
            if isinstance(e, FullyReadEvent):
                return e.event_id
        return None

    await sync_until(alice, lambda r: fully_read(r) == event_id, "m.fully_read account data")


async def test_account_data_round_trip(new_client):
    alice = await new_client("aalice")
    bob = await new_client("abob")
    room_id = await shared_room(alice, bob)
    http = Http(alice)
    user = q(alice.user_id)
    value = {"nonce": secrets.token_hex(6), "nested": {"list": [1, 2, 3], "flag": True}}

    # Global account data.
    status, body = await http.request(
        "PUT", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.test", value
    )
    assert status == 200, body
    status, body = await http.request(
        "GET", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.test"
    )
    assert status == 200 and body == value, body

    def global_ad(r):
        return [
            e.content for e in r.account_data_events
            if isinstance(e, UnknownAccountDataEvent) and e.type == "org.conifer.test"
        ]

    await sync_until(alice, lambda r: value in global_ad(r), "global account data in sync")

    # Overwrite: the new value replaces the old one.
    value2 = {"nonce": secrets.token_hex(6)}
    status, _ = await http.request(
        "PUT", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.test", value2
    )
    assert status == 200
    status, body = await http.request(
        "GET", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.test"
    )
    assert body == value2, body
    await sync_until(alice, lambda r: value2 in global_ad(r), "updated account data in sync")

    # Room account data.
    status, body = await http.request(
        "PUT",
        f"/_matrix/client/v3/user/{user}/rooms/{q(room_id)}/account_data/org.conifer.room",
        {"room": True},
    )
    assert status == 200, body
    status, body = await http.request(
        "GET", f"/_matrix/client/v3/user/{user}/rooms/{q(room_id)}/account_data/org.conifer.room"
    )
    assert status == 200 and body == {"room": True}, body

    # Account data is private: another user cannot read it, and unknown types are 404.
    status, body = await Http(bob).request(
        "GET", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.test"
    )
    assert status == 403, (status, body)
    status, body = await http.request(
        "GET", f"/_matrix/client/v3/user/{user}/account_data/org.conifer.absent"
    )
    assert status == 404 and body.get("errcode") == "M_NOT_FOUND", (status, body)


async def test_room_messages_pagination(new_client):
    alice = await new_client("malice")
    bob = await new_client("mbob")
    room_id = await shared_room(alice, bob)
    bodies = [f"msg {i:02d}" for i in range(15)]
    ids = [await send_text(alice, room_id, b) for b in bodies]

    # Backwards from the end of bob's sync stream, 4 at a time.
    sync = await sync_until(
        bob, lambda r: ids[-1] in {e.event_id for e in timeline(r, room_id)}, "bob caught up"
    )
    start = sync.next_batch
    collected: list[RoomMessageText] = []
    tokens = [start]
    last_end = None
    for _ in range(20):
        page = await bob.room_messages(room_id, start=start, direction=MessageDirection.back, limit=4)
        assert isinstance(page, RoomMessagesResponse), page
        assert len(page.chunk) <= 4
        collected.extend(e for e in page.chunk if isinstance(e, RoomMessageText))
        last_end = page.end
        if not page.chunk or page.end is None or len([c for c in collected if c.event_id in ids]) >= 15:
            break
        assert page.end != start, "pagination token did not move"
        start = page.end
        tokens.append(start)
    got = [e.body for e in collected if e.event_id in ids]
    assert got == list(reversed(bodies)), got
    assert len(tokens) >= 4, "15 events at limit 4 should take at least 4 pages"

    # Forwards from the last page's end token (just before "msg 00") returns all of them in
    # chronological order.
    assert last_end
    fwd = await bob.room_messages(room_id, start=last_end, direction=MessageDirection.front, limit=50)
    assert isinstance(fwd, RoomMessagesResponse), fwd
    fwd_bodies = [e.body for e in fwd.chunk if isinstance(e, RoomMessageText) and e.event_id in ids]
    assert fwd_bodies == bodies, fwd_bodies


async def test_state_event_put_get(new_client):
    alice = await new_client("salice")
    bob = await new_client("sbob")
    room_id = await shared_room(alice, bob)

    content = {"value": secrets.token_hex(4), "n": 7}
    put = await alice.room_put_state(room_id, "org.conifer.state", content, state_key="k1")
    assert isinstance(put, RoomPutStateResponse), put
    assert put.event_id.startswith("$")

    got = await bob.room_get_state_event(room_id, "org.conifer.state", "k1")
    assert isinstance(got, RoomGetStateEventResponse), got
    assert got.content == content

    # Missing state key: M_NOT_FOUND.
    missing = await bob.room_get_state_event(room_id, "org.conifer.state", "nope")
    assert not isinstance(missing, RoomGetStateEventResponse), missing

    # Full state contains it, plus the create event and both memberships.
    state = await bob.room_get_state(room_id)
    assert isinstance(state, RoomGetStateResponse), state
    by_key = {(e["type"], e.get("state_key")): e for e in state.events}
    assert by_key[("org.conifer.state", "k1")]["content"] == content
    assert ("m.room.create", "") in by_key
    assert by_key[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "join"

    # Topic through the state API and in bob's synced room state.
    put = await alice.room_put_state(room_id, "m.room.topic", {"topic": "the topic"})
    assert isinstance(put, RoomPutStateResponse), put
    await sync_until(bob, lambda _r: bob.rooms[room_id].topic == "the topic", "the new topic")

    # Replacing the state event: the latest value wins.
    put = await alice.room_put_state(room_id, "org.conifer.state", {"value": "new"}, state_key="k1")
    assert isinstance(put, RoomPutStateResponse), put
    got = await bob.room_get_state_event(room_id, "org.conifer.state", "k1")
    assert got.content == {"value": "new"}

    # Power levels: bob (power 0) may not set state that needs 50.
    denied = await bob.room_put_state(room_id, "m.room.name", {"name": "bob's name"})
    assert not isinstance(denied, RoomPutStateResponse), "a power-0 user changed the room name"


async def test_redaction(new_client):
    alice = await new_client("xalice")
    bob = await new_client("xbob")
    room_id = await shared_room(alice, bob)
    event_id = await send_text(alice, room_id, "oops")
    await sync_until(bob, lambda r: event_id in {e.event_id for e in timeline(r, room_id)}, "oops")

    red = await alice.room_redact(room_id, event_id, reason="typo")
    assert isinstance(red, RoomRedactResponse), red

    status, body = await Http(bob).request(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}"
    )
    assert status == 200, body
    assert body["content"] == {}, body
    assert body["unsigned"]["redacted_because"]["content"]["reason"] == "typo"
    page = await bob.room_messages(room_id, start=bob.next_batch, limit=10)
    assert isinstance(page, RoomMessagesResponse), page
    matching = [e for e in page.chunk if e.event_id == event_id]
    assert matching and isinstance(matching[0], RedactedEvent), matching


async def test_devices_and_filter(new_client):
    alice = await new_client("dalice")
    devices = await alice.devices()
    assert isinstance(devices, DevicesResponse), devices
    assert alice.device_id in {d.id for d in devices.devices}

    resp = await alice.upload_filter(room={"timeline": {"limit": 2}})
    assert isinstance(resp, UploadFilterResponse), resp
    status, body = await Http(alice).request(
        "GET", f"/_matrix/client/v3/user/{q(alice.user_id)}/filter/{q(resp.filter_id)}"
    )
    assert status == 200, body
    assert body["room"]["timeline"]["limit"] == 2

    # A sync with that filter limits the timeline and marks it limited.
    bob_room = await alice.room_create(name="filtered")
    room_id = bob_room.room_id
    for i in range(5):
        await send_text(alice, room_id, f"f{i}")
    r = await alice.sync(timeout=0, sync_filter=resp.filter_id)
    room = r.rooms.join[room_id]
    assert len(room.timeline.events) == 2, room.timeline.events
    assert room.timeline.limited is True
    assert [e.body for e in room.timeline.events] == ["f3", "f4"]
