// Scroll-back after a remote join, driven by clients/federation/test_js_sdk_scrollback.py: a
// room on Synapse already holds many messages; a Conifer user joins it through matrix-js-sdk
// (Conifer joins over federation), then scrolls back with the SDK's default page size until the
// start of the room. Every message must come back, once each and in order, and the room's
// creation event must be reached: Conifer has to backfill the history from Synapse.
//
// Input: CONIFER_HS_URL (the Conifer client API) and SCROLLBACK_SPEC, a JSON file:
// {"user": {user_id, access_token, device_id}, "room_id", "via", "create_event_id",
//  "messages": [{"event_id", "body"}, ...] (oldest first)}.
import "../test/quiet.mjs";
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { homeserver, startClient, stopAll, waitForRoom } from "../test/lib.mjs";

const HS = homeserver();
const spec = JSON.parse(readFileSync(process.env.SCROLLBACK_SPEC, "utf8"));

test("js-sdk scroll-back after a remote join returns every message and reaches m.room.create", async (t) => {
    const client = await startClient(HS, spec.user, { crypto: false });
    t.after(() => stopAll(client));
    await client.joinRoom(spec.room_id, { viaServers: [spec.via] });
    const room = await waitForRoom(client, spec.room_id);
    const timeline = room.getLiveTimeline();

    let pages = 0;
    while (timeline.getPaginationToken("b") !== null && pages < 50) {
        await client.scrollback(room); // the SDK's default page size (30)
        pages += 1;
    }
    const events = timeline.getEvents();
    assert.equal(timeline.getPaginationToken("b"), null, `still more history after ${pages} pages`);
    assert.equal(events[0].getType(), "m.room.create", "the first event of the timeline is the creation");
    assert.equal(events[0].getId(), spec.create_event_id);

    const ids = events.map((e) => e.getId());
    assert.equal(new Set(ids).size, ids.length, "no event twice");
    const wanted = new Set(spec.messages.map((m) => m.event_id));
    const got = events.filter((e) => wanted.has(e.getId())).map((e) => ({ event_id: e.getId(), body: e.getContent().body }));
    assert.deepEqual(got, spec.messages, "every message, in order");
    console.error(`# ${spec.messages.length} messages and the creation event in ${pages} scroll-back pages`);
});
