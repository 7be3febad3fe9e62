"""(a) Two users: register, log in, create a room, invite, join, exchange plain messages,
incremental sync (tokens advance, each event delivered once), leave."""

from __future__ import annotations

import secrets

from nio import (
    InviteMemberEvent,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomSendResponse,
    WhoamiResponse,
)

from conftest import (
    HS_URL,
    PASSWORD,
    register_user,
    sync_once,
    sync_until,
    timeline,
    unique_localpart,
)


def texts(resps, room_id):
    out = []
    for r in resps:
        room = r.rooms.join.get(room_id)
        if room:
            out.extend(e for e in room.timeline.events if isinstance(e, RoomMessageText))
    return out


async def test_register_then_password_login_and_whoami(new_client):
    alice = await new_client("alice")
    who = await alice.whoami()
    assert isinstance(who, WhoamiResponse), who
    assert who.user_id == alice.user_id
    assert who.device_id == alice.device_id

    # A second login for the same user creates a second, distinct device and token.
    from nio import AsyncClient

    other = AsyncClient(HS_URL, alice.user_id)
    wrong = AsyncClient(HS_URL, alice.user_id)
    try:
        resp = await other.login(PASSWORD, device_name="second")
        assert isinstance(resp, LoginResponse), resp
        assert resp.device_id != alice.device_id
        assert resp.access_token != alice.access_token
        bad = await wrong.login("wrong password")
        assert not isinstance(bad, LoginResponse), "login with a wrong password succeeded"
        assert bad.status_code == "M_FORBIDDEN", bad
    finally:
        await other.close()
        await wrong.close()


async def test_register_rejects_taken_username():
    localpart = unique_localpart("dup")
    await register_user(localpart)
    from nio import AsyncClient, RegisterResponse

    tmp = AsyncClient(HS_URL, localpart)
    try:
        again = await tmp.register(localpart, PASSWORD)
        assert not isinstance(again, RegisterResponse), "registered the same username twice"
        assert again.status_code == "M_USER_IN_USE", again
    finally:
        await tmp.close()


async def test_two_users_create_invite_join_message_sync_leave(new_client):
    alice = await new_client("alice")
    bob = await new_client("bob")

    # Initial syncs: each gets a next_batch token.
    a0 = await sync_once(alice)
    b0 = await sync_once(bob)
    assert a0.next_batch and b0.next_batch

    room_name = f"conifer test {secrets.token_hex(2)}"
    created = await alice.room_create(name=room_name, topic="plain messages")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    assert room_id.startswith("!")

    # alice's own sync shows the room she created, with its name.
    await sync_until(alice, lambda r: room_id in r.rooms.join, "alice's new room")
    assert alice.rooms[room_id].name == room_name
    assert alice.rooms[room_id].topic == "plain messages"
    joined_rooms = await alice.joined_rooms()
    assert isinstance(joined_rooms, JoinedRoomsResponse) and room_id in joined_rooms.rooms

    invited = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(invited, RoomInviteResponse), invited

    # bob sees the invite in rooms.invite, with stripped state naming him as invited.
    inv = await sync_until(bob, lambda r: room_id in r.rooms.invite, "the invite")
    invite_state = inv.rooms.invite[room_id].invite_state
    my_invite = [
        e for e in invite_state
        if isinstance(e, InviteMemberEvent) and e.state_key == bob.user_id
    ]
    assert my_invite and my_invite[0].membership == "invite", invite_state
    assert my_invite[0].sender == alice.user_id

    joined = await bob.join(room_id)
    assert joined.room_id == room_id, joined
    await sync_until(bob, lambda r: room_id in r.rooms.join, "bob's joined room")
    assert bob.rooms[room_id].name == room_name

    # alice sees bob's membership change to join.
    await sync_until(
        alice,
        lambda r: any(
            isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "join"
            for e in timeline(r, room_id)
        ),
        "bob's join event",
    )
    members = await alice.joined_members(room_id)
    assert isinstance(members, JoinedMembersResponse), members
    assert {m.user_id for m in members.members} == {alice.user_id, bob.user_id}

    # Plain messages, both directions.
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
    assert isinstance(sent, RoomSendResponse), sent
    assert sent.event_id.startswith("$")

    bob_resps = []
    token_before = bob.next_batch
    await sync_until(
        bob,
        lambda r: any(e.event_id == sent.event_id for e in texts([r], room_id)),
        "alice's message",
        responses=bob_resps,
    )
    got = [e for e in texts(bob_resps, room_id) if e.event_id == sent.event_id]
    assert len(got) == 1
    assert got[0].body == "hello bob" and got[0].sender == alice.user_id
    assert bob.next_batch != token_before, "next_batch did not advance although an event arrived"

    reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
    assert isinstance(reply, RoomSendResponse), reply
    alice_resps = []
    await sync_until(
        alice,
        lambda r: any(e.event_id == reply.event_id for e in texts([r], room_id)),
        "bob's reply",
        responses=alice_resps,
    )
    got = [e for e in texts(alice_resps, room_id) if e.event_id == reply.event_id]
    assert len(got) == 1 and got[0].body == "hi alice" and got[0].sender == bob.user_id

    # Incremental sync delivers each event once: three more messages, then several syncs.
    ids = []
    for i in range(3):
        r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
        assert isinstance(r, RoomSendResponse), r
        ids.append(r.event_id)
    assert len(set(ids)) == 3
    seen = []
    tokens = [bob.next_batch]
    await sync_until(
        bob,
        lambda r: ids[-1] in {e.event_id for e in texts([r], room_id)},
        "the three messages",
        responses=seen,
    )
    tokens += [r.next_batch for r in seen]
    # an extra incremental sync with nothing new: must not repeat any of them
    extra = await sync_once(bob, 500)
    seen.append(extra)
    delivered = [e.event_id for e in texts(seen, room_id)]
    for eid in ids:
        assert delivered.count(eid) == 1, f"{eid} delivered {delivered.count(eid)} times"
    assert [e.body for e in texts(seen, room_id) if e.event_id in ids] == ["n0", "n1", "n2"]
    # alice's first message was delivered to bob before: never again. bob's own reply had not
    # been synced by bob yet, so it comes (once) in this batch.
    assert sent.event_id not in delivered
    assert delivered.count(reply.event_id) == 1
    assert tokens[0] != tokens[-1], "next_batch never advanced"

    # Leave: bob's sync moves the room to rooms.leave, alice sees the leave event.
    left = await bob.room_leave(room_id)
    assert isinstance(left, RoomLeaveResponse), left
    await sync_until(bob, lambda r: room_id in r.rooms.leave, "the room under rooms.leave")
    await sync_until(
        alice,
        lambda r: any(
            isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "leave"
            for e in timeline(r, room_id)
        ),
        "bob's leave event",
    )
    members = await alice.joined_members(room_id)
    assert {m.user_id for m in members.members} == {alice.user_id}
    bob_rooms = await bob.joined_rooms()
    assert isinstance(bob_rooms, JoinedRoomsResponse) and room_id not in bob_rooms.rooms

    # After leaving, bob no longer receives the room's messages.
    after = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "gone?"})
    assert isinstance(after, RoomSendResponse)
    r = await sync_once(bob, 1000)
    assert after.event_id not in {e.event_id for e in texts([r], room_id)}
