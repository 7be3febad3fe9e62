"""Harder sync behaviours (gaps, long-poll wake-up, idempotent sends, notification counts) and
account management (UIA for device deletion and password change, push rules, tags, relations,
context, search, user directory, member lists)."""

from __future__ import annotations

import asyncio
import secrets
import time

from nio import (
    AsyncClient,
    LoginResponse,
    MessageDirection,
    RoomInviteResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomTopicEvent,
)

from conftest import HS_URL, PASSWORD, Http, q, shared_room, sync_once, sync_until, timeline


async def send_text(client, room_id, body, extra=None) -> str:
    content = {"msgtype": "m.text", "body": body, **(extra or {})}
    resp = await client.room_send(room_id, "m.room.message", content)
    assert hasattr(resp, "event_id"), resp
    return resp.event_id


async def test_limited_sync_gap_is_filled_by_pagination(new_client):
    alice = await new_client("gapa")
    bob = await new_client("gapb")
    room_id = await shared_room(alice, bob)
    await sync_once(bob)

    bodies = [f"g{i:02d}" for i in range(25)]
    for i, body in enumerate(bodies):
        await send_text(alice, room_id, body)
        if i == 10:
            r = await alice.room_put_state(room_id, "m.room.topic", {"topic": "gap topic"})
            assert hasattr(r, "event_id"), r

    # Incremental sync limited to 5 timeline events: the rest is a gap.
    resp = await bob.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 5}}})
    room = resp.rooms.join[room_id]
    assert room.timeline.limited is True
    assert [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)] == bodies[-5:]
    assert room.timeline.prev_batch
    # State that changed inside the gap comes in the state section.
    topics = [e for e in room.state if isinstance(e, RoomTopicEvent)]
    assert topics and topics[-1].topic == "gap topic", room.state
    assert bob.rooms[room_id].topic == "gap topic"

    # Back-paginating from prev_batch fills the gap exactly: no holes, no repeats.
    token = room.timeline.prev_batch
    seen = []
    topic_pos = None
    for _ in range(20):
        page = await bob.room_messages(room_id, start=token, direction=MessageDirection.back, limit=7)
        assert isinstance(page, RoomMessagesResponse), page
        for e in page.chunk:
            if isinstance(e, RoomMessageText) and e.body.startswith("g"):
                seen.append(e.body)
            if isinstance(e, RoomTopicEvent) and e.topic == "gap topic":
                topic_pos = len(seen)
        if "g00" in seen or not page.chunk or not page.end:
            break
        token = page.end
    assert list(reversed(seen)) == bodies[:-5], seen
    # The topic change was sent after g10, so 9 messages (g11..g19) come before it backwards.
    assert topic_pos == 9, topic_pos


async def test_long_poll_returns_when_an_event_arrives(new_client):
    alice = await new_client("lpa")
    bob = await new_client("lpb")
    room_id = await shared_room(alice, bob)
    await sync_once(bob)

    start = time.monotonic()
    task = asyncio.create_task(bob.sync(timeout=20000))
    await asyncio.sleep(1.0)
    assert not task.done(), "a sync with timeout=20000 and nothing new returned at once"
    event_id = await send_text(alice, room_id, "wake up")
    resp = await asyncio.wait_for(task, 15)
    elapsed = time.monotonic() - start
    assert event_id in {e.event_id for e in timeline(resp, room_id)}, "long poll woke without the event"
    assert elapsed < 8, f"long poll took {elapsed:.1f}s to deliver the event"


async def test_send_is_idempotent_per_transaction_id(new_client):
    alice = await new_client("txna")
    bob = await new_client("txnb")
    room_id = await shared_room(alice, bob)
    txn = f"txn{secrets.token_hex(4)}"
    path = f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}"
    body = {"msgtype": "m.text", "body": f"once {txn}"}
    s1, r1 = await Http(alice).request("PUT", path, body)
    s2, r2 = await Http(alice).request("PUT", path, body)
    assert s1 == 200 and s2 == 200, (r1, r2)
    assert r1["event_id"] == r2["event_id"], "retrying a transaction created a second event"
    # The same transaction ID from another user is a different event.
    s3, r3 = await Http(bob).request("PUT", path, body)
    assert s3 == 200 and r3["event_id"] != r1["event_id"]

    page = await bob.room_messages(room_id, start=(await sync_once(bob)).next_batch, limit=20)
    bodies = [e.body for e in page.chunk if isinstance(e, RoomMessageText)]
    assert bodies.count(f"once {txn}") == 2, bodies


async def test_unread_notification_and_highlight_counts(new_client):
    alice = await new_client("nota")
    bob = await new_client("notb")
    room_id = await shared_room(alice, bob)
    await sync_once(bob)

    await send_text(alice, room_id, "one")
    await send_text(alice, room_id, "two")
    last = await send_text(
        alice, room_id, f"hey {bob.user_id}", {"m.mentions": {"user_ids": [bob.user_id]}}
    )

    def counts(r):
        room = r.rooms.join.get(room_id)
        if not room or room.unread_notifications is None:
            return None
        u = room.unread_notifications
        return (u.notification_count, u.highlight_count)

    r = await sync_until(
        bob, lambda r: last in {e.event_id for e in timeline(r, room_id)}, "the mention"
    )
    assert counts(r) == (3, 1), f"unread (notifications, highlights) = {counts(r)}, want (3, 1)"

    # Reading up to the last message clears the counts.
    status, body = await Http(bob).request(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(last)}", {}
    )
    assert status == 200, body
    await sync_until(bob, lambda r: counts(r) == (0, 0), "counts reset to 0 after the receipt")


async def test_push_rules(new_client):
    alice = await new_client("push")
    http = Http(alice)
    status, rules = await http.request("GET", "/_matrix/client/v3/pushrules/")
    assert status == 200, rules
    glob = rules["global"]
    override_ids = {r["rule_id"] for r in glob["override"]}
    underride_ids = {r["rule_id"] for r in glob["underride"]}
    assert ".m.rule.master" in override_ids, override_ids
    assert ".m.rule.message" in underride_ids, underride_ids

    rule_id = f"kw{secrets.token_hex(3)}"
    path = f"/_matrix/client/v3/pushrules/global/content/{rule_id}"
    status, body = await http.request(
        "PUT", path, {"pattern": "conifer", "actions": ["notify", {"set_tweak": "highlight"}]}
    )
    assert status == 200, body
    status, rule = await http.request("GET", path)
    assert status == 200 and rule["pattern"] == "conifer" and rule["rule_id"] == rule_id, rule
    status, body = await http.request("PUT", path + "/enabled", {"enabled": False})
    assert status == 200, body
    status, body = await http.request("GET", path + "/enabled")
    assert status == 200 and body["enabled"] is False, body
    status, body = await http.request("DELETE", path)
    assert status == 200, body
    status, body = await http.request("GET", path)
    assert status == 404, (status, body)


async def test_room_tags(new_client):
    alice = await new_client("taga")
    bob = await new_client("tagb")
    room_id = await shared_room(alice, bob)
    http = Http(alice)
    base = f"/_matrix/client/v3/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags"
    status, body = await http.request("PUT", f"{base}/m.favourite", {"order": 0.25})
    assert status == 200, body
    status, body = await http.request("GET", base)
    assert status == 200 and body["tags"] == {"m.favourite": {"order": 0.25}}, body

    def tags(r):
        room = r.rooms.join.get(room_id)
        for e in (room.account_data if room else []):
            if getattr(e, "tags", None) is not None:
                return e.tags
        return None

    await sync_until(alice, lambda r: (tags(r) or {}).get("m.favourite") == {"order": 0.25}, "m.tag")
    status, body = await http.request("DELETE", f"{base}/m.favourite")
    assert status == 200, body
    status, body = await http.request("GET", base)
    assert body["tags"] == {}, body


async def test_relations(new_client):
    alice = await new_client("rela")
    bob = await new_client("relb")
    room_id = await shared_room(alice, bob)
    target = await send_text(alice, room_id, "react to me")

    status, reaction = await Http(bob).request(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.reaction/r{secrets.token_hex(4)}",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}},
    )
    assert status == 200, reaction
    edit = await send_text(
        alice, room_id, "* edited",
        {"m.new_content": {"msgtype": "m.text", "body": "edited"},
         "m.relates_to": {"rel_type": "m.replace", "event_id": target}},
    )

    http = Http(bob)
    status, rel = await http.request(
        "GET", f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(target)}"
    )
    assert status == 200, rel
    ids = {e["event_id"] for e in rel["chunk"]}
    assert {reaction["event_id"], edit} <= ids, rel
    status, rel = await http.request(
        "GET", f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(target)}/m.annotation"
    )
    assert status == 200 and [e["event_id"] for e in rel["chunk"]] == [reaction["event_id"]], rel


async def test_room_context(new_client):
    alice = await new_client("ctxa")
    bob = await new_client("ctxb")
    room_id = await shared_room(alice, bob)
    before = [await send_text(alice, room_id, f"b{i}") for i in range(3)]
    target = await send_text(alice, room_id, "the middle")
    after = [await send_text(alice, room_id, f"a{i}") for i in range(3)]
    http = Http(bob)
    status, ctx = await http.request(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/context/{q(target)}?limit=20"
    )
    assert status == 200, ctx
    assert ctx["event"]["event_id"] == target
    before_ids = [e["event_id"] for e in ctx["events_before"]]
    after_ids = [e["event_id"] for e in ctx["events_after"]]
    # events_before is newest first; events_after oldest first. (How a server splits the
    # limit between the two is unspecified, so the limit leaves room for all of them.)
    assert before_ids[:3] == list(reversed(before)), before_ids
    assert after_ids == after, after_ids
    assert ctx.get("start") and ctx.get("end")
    assert any(e["type"] == "m.room.member" for e in ctx["state"]), "no member state in /context"


async def test_search(new_client):
    alice = await new_client("srcha")
    bob = await new_client("srchb")
    room_id = await shared_room(alice, bob)
    word = f"needle{secrets.token_hex(4)}"
    event_id = await send_text(alice, room_id, f"a {word} in a haystack")

    status, body = await Http(bob).request(
        "POST", "/_matrix/client/v3/search",
        {"search_categories": {"room_events": {"search_term": word}}},
    )
    assert status == 200, body
    results = body["search_categories"]["room_events"]["results"]
    assert [r["result"]["event_id"] for r in results] == [event_id], results


async def test_user_directory(new_client):
    alice = await new_client("uda")
    bob = await new_client("udb")
    await shared_room(alice, bob)
    localpart = alice.user_id[1:].split(":", 1)[0]
    status, body = await Http(bob).request(
        "POST", "/_matrix/client/v3/user_directory/search", {"search_term": localpart, "limit": 10}
    )
    assert status == 200, body
    assert alice.user_id in [u["user_id"] for u in body["results"]], body


async def test_members_endpoint(new_client):
    alice = await new_client("mema")
    bob = await new_client("memb")
    carol = await new_client("memc")
    room_id = await shared_room(alice, bob)
    r = await alice.room_invite(room_id, carol.user_id)
    assert isinstance(r, RoomInviteResponse), r
    await bob.room_leave(room_id)

    http = Http(alice)
    base = f"/_matrix/client/v3/rooms/{q(room_id)}/members"

    async def members(query=""):
        status, body = await http.request("GET", base + query)
        assert status == 200, body
        return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}

    assert await members() == {alice.user_id: "join", bob.user_id: "leave", carol.user_id: "invite"}
    assert await members("?membership=join") == {alice.user_id: "join"}
    assert await members("?not_membership=leave") == {alice.user_id: "join", carol.user_id: "invite"}
    # A user who is not in the room cannot read its member list.
    status, body = await Http(carol).request("GET", base)
    assert status == 403, (status, body)


async def test_device_deletion_and_password_change_use_uia(new_client):
    alice = await new_client("uia")
    http = Http(alice)

    second = AsyncClient(HS_URL, alice.user_id)
    third = AsyncClient(HS_URL, alice.user_id)
    try:
        assert isinstance(await second.login(PASSWORD, device_name="second"), LoginResponse)
        assert isinstance(await third.login(PASSWORD, device_name="third"), LoginResponse)

        # Rename a device.
        status, body = await http.request(
            "PUT", f"/_matrix/client/v3/devices/{q(second.device_id)}", {"display_name": "renamed"}
        )
        assert status == 200, body
        status, dev = await http.request("GET", f"/_matrix/client/v3/devices/{q(second.device_id)}")
        assert status == 200 and dev["display_name"] == "renamed", dev

        # Deleting a device needs user-interactive auth: first 401 with flows and a session.
        path = f"/_matrix/client/v3/devices/{q(second.device_id)}"
        status, uia = await http.request("DELETE", path, {})
        assert status == 401, (status, uia)
        assert uia.get("session"), uia
        assert any(f["stages"] == ["m.login.password"] for f in uia["flows"]), uia
        # A wrong password is refused and the device stays.
        status, body = await http.request("DELETE", path, {"auth": {
            "type": "m.login.password", "session": uia["session"],
            "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": "wrong",
        }})
        assert status in (401, 403), (status, body)
        status, body = await http.request("DELETE", path, {"auth": {
            "type": "m.login.password", "session": uia["session"],
            "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PASSWORD,
        }})
        assert status == 200, (status, body)
        status, _ = await Http(second).request("GET", "/_matrix/client/v3/account/whoami")
        assert status == 401, "the deleted device's token still works"
        status, devs = await http.request("GET", "/_matrix/client/v3/devices")
        assert second.device_id not in {d["device_id"] for d in devs["devices"]}

        # Password change: UIA again; other devices are logged out, this one stays.
        new_password = PASSWORD + "-new"
        status, uia = await http.request(
            "POST", "/_matrix/client/v3/account/password", {"new_password": new_password}
        )
        assert status == 401 and uia.get("session"), (status, uia)
        status, body = await http.request("POST", "/_matrix/client/v3/account/password", {
            "new_password": new_password,
            "auth": {"type": "m.login.password", "session": uia["session"],
                     "identifier": {"type": "m.id.user", "user": alice.user_id},
                     "password": PASSWORD},
        })
        assert status == 200, (status, body)
        status, _ = await http.request("GET", "/_matrix/client/v3/account/whoami")
        assert status == 200, "the device that changed the password was logged out"
        status, _ = await Http(third).request("GET", "/_matrix/client/v3/account/whoami")
        assert status == 401, "other devices keep working after a password change"

        old = AsyncClient(HS_URL, alice.user_id)
        new = AsyncClient(HS_URL, alice.user_id)
        try:
            assert not isinstance(await old.login(PASSWORD), LoginResponse), "old password works"
            assert isinstance(await new.login(new_password), LoginResponse), "new password fails"
        finally:
            await old.close()
            await new.close()
    finally:
        await second.close()
        await third.close()


async def test_to_device_redelivered_until_acknowledged(new_client):
    """To-device messages are deleted only once the client syncs with a later token: a sync
    response that got lost (the client repeats the old `since`) must bring them again."""
    alice = await new_client("tdra")
    bob = await new_client("tdrb")
    t0 = (await sync_once(bob)).next_batch
    token = secrets.token_hex(6)
    status, body = await Http(alice).request(
        "PUT",
        f"/_matrix/client/v3/sendToDevice/org.conifer.test/{token}",
        {"messages": {bob.user_id: {bob.device_id: {"token": token}}}},
    )
    assert status == 200, body

    def mine(r):
        return [
            e for e in r.to_device_events
            if e.source.get("type") == "org.conifer.test"
            and e.source.get("content", {}).get("token") == token
        ]

    first = await bob.sync(timeout=5000, since=t0)
    assert mine(first), "to-device message not delivered"
    # The response is "lost": sync again from t0.
    again = await bob.sync(timeout=0, since=t0)
    assert mine(again), "to-device message not redelivered for a repeated since token"
    # Acknowledged by syncing from the newer token: gone.
    later = await bob.sync(timeout=0, since=again.next_batch)
    assert not mine(later), "to-device message delivered after it was acknowledged"


async def test_fallback_keys(new_client):
    """A claim takes one-time keys first, then the fallback key, which is reusable and reported
    as used in device_unused_fallback_key_types. (Key material is random: servers do not verify
    key signatures.)"""
    import base64

    alice = await new_client("fba")
    bob = await new_client("fbb")

    def fake_key(fallback=False):
        key = {
            "key": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="),
            "signatures": {bob.user_id: {f"ed25519:{bob.device_id}": "sig" + secrets.token_hex(8)}},
        }
        if fallback:
            key["fallback"] = True
        return key

    otk_id, fb_id = "signed_curve25519:AAAAAQ", "signed_curve25519:AAAAFB"
    status, body = await Http(bob).request("POST", "/_matrix/client/v3/keys/upload", {
        "one_time_keys": {otk_id: fake_key()},
        "fallback_keys": {fb_id: fake_key(fallback=True)},
    })
    assert status == 200, body
    assert body["one_time_key_counts"].get("signed_curve25519") == 1, body

    status, raw = await Http(bob).request("GET", "/_matrix/client/v3/sync?timeout=0")
    assert status == 200, raw
    assert raw.get("device_unused_fallback_key_types") == ["signed_curve25519"], raw.get(
        "device_unused_fallback_key_types", "missing"
    )

    claim = {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}}
    got = []
    for _ in range(3):
        status, body = await Http(alice).request("POST", "/_matrix/client/v3/keys/claim", claim)
        assert status == 200, body
        got.append(list(body["one_time_keys"][bob.user_id][bob.device_id]))
    assert got == [[otk_id], [fb_id], [fb_id]], got

    # Incremental sync (Synapse caches initial syncs briefly).
    status, raw = await Http(bob).request(
        "GET", f"/_matrix/client/v3/sync?timeout=0&since={q(raw['next_batch'])}"
    )
    assert status == 200, raw
    assert raw.get("device_unused_fallback_key_types") == [], raw.get("device_unused_fallback_key_types")
