// Two matrix-js-sdk users with the Rust crypto stack talk in an encrypted room; a third user who
// joins later, under `joined` history visibility, sees nothing from before the join (also when
// scrolling back to the start of the room) and decrypts what is sent after it.
import test from "node:test";
import assert from "node:assert/strict";
import { EventType, Preset } from "matrix-js-sdk";
import {
    homeserver, register, startClient, stopAll, waitForRoom, waitForInvite, waitForDecrypted,
    rawMessages, request, ok, waitFor,
} from "./lib.mjs";

const HS = homeserver();

test("encrypted room: messages both ways, a later joiner sees no `joined`-visibility history", async (t) => {
    const [a, b, c] = await Promise.all([register(HS, "alice"), register(HS, "bob"), register(HS, "carol")]);
    const alice = await startClient(HS, a);
    const bob = await startClient(HS, b);
    t.after(() => stopAll(alice, bob, carol));
    let carol;

    const { room_id: roomId } = await alice.createRoom({
        preset: Preset.PrivateChat,
        name: "js-sdk e2ee",
        invite: [b.user_id],
        initial_state: [
            { type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            { type: EventType.RoomHistoryVisibility, state_key: "", content: { history_visibility: "joined" } },
        ],
    });
    await waitForInvite(bob, roomId);
    await bob.joinRoom(roomId);
    const aliceRoom = await waitForRoom(alice, roomId);
    await waitFor(() => aliceRoom.getMember(b.user_id)?.membership === "join", "bob's join at alice");
    assert.equal(await alice.getCrypto().isEncryptionEnabledInRoom(roomId), true);

    // alice -> bob, bob -> alice, alice -> bob again (the Megolm session is reused).
    const before = [];
    const exchange = [
        [alice, bob, "hello bob, this is encrypted"],
        [bob, alice, "hi alice, decrypted and answered"],
        [alice, bob, "second message on the same session"],
    ];
    for (const [from, to, body] of exchange) {
        const { event_id } = await from.sendTextMessage(roomId, body);
        before.push(event_id);
        const ev = await waitForDecrypted(to, roomId, event_id);
        assert.equal(ev.getType(), "m.room.message");
        assert.equal(ev.getContent().body, body);
        assert.equal(ev.getSender(), from.getUserId());
        assert.equal(ev.isEncrypted(), true);
    }

    // The server holds only ciphertext.
    const raw = await rawMessages(HS, a.access_token, roomId);
    const mine = raw.filter((e) => before.includes(e.event_id));
    assert.equal(mine.length, before.length);
    for (const e of mine) {
        assert.equal(e.type, "m.room.encrypted");
        assert.equal(e.content.algorithm, "m.megolm.v1.aes-sha2");
        for (const [, , body] of exchange) assert.ok(!JSON.stringify(e).includes(body), "plaintext on the server");
    }

    // An edit in the encrypted room: bob's SDK decrypts it and shows the new text on the
    // original; the server bundles the (still encrypted) replacement with the original.
    const { event_id: editId } = await alice.sendMessage(roomId, {
        msgtype: "m.text",
        body: "* hello bob, this is edited",
        "m.new_content": { msgtype: "m.text", body: "hello bob, this is edited" },
        "m.relates_to": { rel_type: "m.replace", event_id: before[0] },
    });
    const edited = await waitForDecrypted(bob, roomId, before[0]);
    await waitFor(() => edited.replacingEventId() === editId, "the edit applied at bob");
    await waitFor(() => !edited.replacingEvent()?.isBeingDecrypted() && edited.getContent().body === "hello bob, this is edited", "the decrypted edit at bob");
    const bundled = await ok(HS, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(before[0])}`, { token: b.access_token });
    const replace = bundled.unsigned?.["m.relations"]?.["m.replace"];
    assert.equal(replace?.event_id, editId, `bundled m.replace: ${JSON.stringify(bundled.unsigned)}`);
    assert.equal(replace.type, "m.room.encrypted");
    before.push(editId);

    // carol is invited and joins after those messages.
    carol = await startClient(HS, c);
    await alice.invite(roomId, c.user_id);
    await waitForInvite(carol, roomId);
    await carol.joinRoom(roomId);
    const carolRoom = await waitForRoom(carol, roomId);
    await waitFor(() => aliceRoom.getMember(c.user_id)?.membership === "join", "carol's join at alice");

    // Sent after her join: carol decrypts it (alice shares the room key with her new device).
    const afterBody = "welcome carol, you can read this one";
    const { event_id: afterId } = await alice.sendTextMessage(roomId, afterBody);
    const afterEv = await waitForDecrypted(carol, roomId, afterId);
    assert.equal(afterEv.getContent().body, afterBody);
    const bobAfter = await waitForDecrypted(bob, roomId, afterId);
    assert.equal(bobAfter.getContent().body, afterBody);

    // carol scrolls back to the start of the room: none of the earlier messages appears.
    for (let i = 0; i < 20 && carolRoom.getLiveTimeline().getPaginationToken("b") !== null; i++) {
        await carol.scrollback(carolRoom, 30);
    }
    assert.equal(carolRoom.getLiveTimeline().getPaginationToken("b"), null, "scrollback reached the start");
    const seen = carolRoom.getLiveTimeline().getEvents().map((e) => e.getId());
    for (const id of before) assert.ok(!seen.includes(id), `carol sees ${id}, sent before she joined`);
    assert.ok(seen.includes(afterId));
    const ownJoin = carolRoom.getLiveTimeline().getEvents()
        .find((e) => e.getType() === "m.room.member" && e.getStateKey() === c.user_id && e.getContent().membership === "join");
    assert.ok(ownJoin, "carol sees her own join");

    // The same over plain /messages, and GET /event answers 404 for an event she may not see.
    const carolRaw = await rawMessages(HS, c.access_token, roomId);
    for (const id of before) assert.ok(!carolRaw.some((e) => e.event_id === id), `/messages gives carol ${id}`);
    assert.ok(carolRaw.some((e) => e.event_id === afterId));
    const hidden = await request(HS, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(before[0])}`, { token: c.access_token });
    assert.equal(hidden.status, 404, `GET /event of a pre-join event: ${JSON.stringify(hidden.json)}`);
});
