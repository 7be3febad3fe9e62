// matrix-js-sdk's SlidingSync client (simplified sliding sync, MSC4186:
// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync) as Element Web sets it up:
// a room list sorted by recency with a small timeline and a few state events, then a room
// subscription with the full state. The client runs on it instead of /sync, with the Rust
// crypto stack fed by the e2ee and to-device extensions; the other user uses classic /sync.
import test from "node:test";
import assert from "node:assert/strict";
import { createClient, EventType, Preset } from "matrix-js-sdk";
import {
    MSC3575_STATE_KEY_ME, MSC3575_WILDCARD, SlidingSync, SlidingSyncEvent, SlidingSyncState,
} from "matrix-js-sdk/lib/sliding-sync.js";
import { homeserver, register, startClient, stopAll, waitFor, waitForRoom, waitForDecrypted } from "./lib.mjs";

const HS = homeserver();
const text = (body) => ({ msgtype: "m.text", body });

/** Element's list: every room, by recency, with the state a room list shows. */
const LIST = {
    ranges: [[0, 19]],
    timeline_limit: 3,
    required_state: [
        [EventType.RoomCreate, ""],
        [EventType.RoomName, ""],
        [EventType.RoomEncryption, ""],
        [EventType.RoomMember, MSC3575_STATE_KEY_ME],
    ],
};

test("SlidingSync: room list by recency, live updates, room subscription, E2EE through the extensions", { timeout: 180000 }, async (t) => {
    const [a, b] = await Promise.all([register(HS, "alice"), register(HS, "bob")]);
    const bob = await startClient(HS, b);
    let alice;
    t.after(() => stopAll(alice, bob));

    // Rooms made before alice's sliding sync starts, oldest first; bob is in all of them.
    const rooms = [];
    for (const name of ["first room", "second room", "third room"]) {
        const { room_id } = await bob.createRoom({
            preset: Preset.PrivateChat, name, topic: `topic of ${name}`, invite: [a.user_id],
        });
        await bob.sendMessage(room_id, text(`hello in ${name}`));
        rooms.push(room_id);
    }
    const { room_id: encrypted } = await bob.createRoom({
        preset: Preset.PrivateChat, name: "encrypted room", invite: [a.user_id],
        initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    rooms.push(encrypted);
    // alice joins over HTTP first (an invite is a list entry too; joined rooms are simpler).
    for (const room of rooms) {
        const r = await fetch(`${HS}/_matrix/client/v3/join/${encodeURIComponent(room)}`, {
            method: "POST", headers: { Authorization: `Bearer ${a.access_token}`, "Content-Type": "application/json" }, body: "{}",
        });
        assert.equal(r.status, 200, await r.text());
    }
    // Activity order: the second room gets the latest message.
    await bob.sendMessage(rooms[1], text("latest activity is here"));

    // alice's client on sliding sync.
    alice = createClient({ baseUrl: HS, userId: a.user_id, accessToken: a.access_token, deviceId: a.device_id });
    await alice.initRustCrypto({ useIndexedDB: false });
    const ss = new SlidingSync(HS, new Map([["all", LIST]]), { timeline_limit: 20, required_state: [[MSC3575_WILDCARD, MSC3575_WILDCARD]] }, alice, 5000);
    // The SDK keeps no list order for MSC4186 (clients sort by the rooms' bump_stamp): keep the
    // latest bump_stamp of each room from the responses.
    const errors = [];
    const bump = new Map();
    ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (state === SlidingSyncState.Complete && err) errors.push(err);
        if (state === SlidingSyncState.RequestFinished && resp) {
            for (const [roomId, data] of Object.entries(resp.rooms || {})) {
                if (typeof data.bump_stamp === "number") bump.set(roomId, data.bump_stamp);
            }
        }
    });
    const top = () => [...bump.entries()].sort((x, y) => y[1] - x[1])[0]?.[0];
    await alice.startClient({ slidingSync: ss });

    // The list: all four rooms, the most recently active first.
    await waitFor(() => ss.getListData("all")?.joinedCount === 4, "the room list's count");
    await waitFor(() => rooms.every((r) => bump.has(r)), "all four rooms, with bump stamps");
    assert.equal(top(), rooms[1], "the room with the latest message has the highest bump_stamp");
    for (const [i, name] of ["first room", "second room", "third room"].entries()) {
        const room = await waitForRoom(alice, rooms[i]);
        assert.equal(room.name, name);
        const bodies = room.getLiveTimeline().getEvents().map((e) => e.getContent().body);
        assert.ok(bodies.includes(i === 1 ? "latest activity is here" : `hello in ${name}`), JSON.stringify(bodies));
    }
    // The list asked for no topics: the third room has none until it is subscribed to.
    assert.equal(alice.getRoom(rooms[2]).currentState.getStateEvents(EventType.RoomTopic, ""), null);

    // Live: a new message in the first room reaches alice's timeline and moves the room to the top.
    const { event_id: live } = await bob.sendMessage(rooms[0], text("live over sliding sync"));
    await waitFor(() => alice.getRoom(rooms[0]).findEventById(live), "the live message at alice");
    await waitFor(() => top() === rooms[0], "the first room at the top of the list");

    // A room subscription brings the full state (required_state ["*", "*"]).
    ss.modifyRoomSubscriptions(new Set([rooms[2]]));
    const topic = await waitFor(() => alice.getRoom(rooms[2]).currentState.getStateEvents(EventType.RoomTopic, ""), "the topic through the subscription");
    assert.equal(topic.getContent().topic, "topic of third room");

    // alice sends over HTTP through the SDK, and bob sees it.
    const { event_id: fromAlice } = await alice.sendMessage(rooms[2], text("alice on sliding sync writes"));
    await waitFor(() => bob.getRoom(rooms[2])?.findEventById(fromAlice), "alice's message at bob");

    // E2EE: bob's Megolm key reaches alice through the to_device extension, alice's device keys
    // reach bob (uploaded by the SDK; its one-time key counts come back in the e2ee extension).
    await waitForRoom(bob, encrypted);
    const { event_id: secret } = await bob.sendMessage(encrypted, text("encrypted to a sliding sync client"));
    const got = await waitForDecrypted(alice, encrypted, secret);
    assert.equal(got.getContent().body, "encrypted to a sliding sync client");
    // Replying, alice has the room open, as Element would: subscribed, so the full member list
    // (the list's required_state had only her own membership) tells the SDK whom to encrypt for.
    ss.modifyRoomSubscriptions(new Set([rooms[2], encrypted]));
    await waitFor(() => alice.getRoom(encrypted).getMember(b.user_id)?.membership === "join", "bob's membership at alice");
    const { event_id: reply } = await alice.sendMessage(encrypted, text("encrypted reply from sliding sync"));
    const back = await waitForDecrypted(bob, encrypted, reply);
    assert.equal(back.getContent().body, "encrypted reply from sliding sync");

    assert.deepEqual(errors.map((e) => e.message), [], "sliding sync requests failed");
});
