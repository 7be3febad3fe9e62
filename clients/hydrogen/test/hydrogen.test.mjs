// Drives the real Hydrogen web client (built into dist/) in headless Chromium against a
// homeserver.
//
// Test 1, plain room:
//   1. two users are registered over the Client-Server API (m.login.dummy) with plain fetch;
//   2. the helper user creates a room, invites the Hydrogen user, who joins (both over HTTP),
//      and posts a first message;
//   3. Hydrogen logs in through its login form, shows the room in its room list, opens it and
//      shows the first message;
//   4. a message typed into Hydrogen's composer is sent and reaches the server (checked over
//      HTTP by the helper user), and Hydrogen's tile gets the server's event ID;
//   5. the helper user's reply appears in Hydrogen's timeline;
//   6. a screenshot is saved to target/clients/hydrogen.png.
//
// Test 2, encrypted room, two Hydrogen sessions (separate browser contexts): each logs in
// (device keys and one-time keys upload), one sends in an m.room.encryption room (key query,
// one-time key claim, room key over to-device), the other decrypts and shows the plaintext, and
// the reply goes back the same way. The server only ever holds m.room.encrypted events.
// Screenshot: target/clients/hydrogen-e2ee.png.
//
// Test 3, rooms from the UI: Hydrogen creates a public room with a name, topic and alias through
// its Create Room view (checked over HTTP: alias resolves, state is right), the helper joins by
// alias and writes, Hydrogen shows it; Hydrogen joins the helper's public room by alias through
// its Join Room view and shows the history from before it joined. Screenshot:
// target/clients/hydrogen-rooms.png.
//
// Environment: CONIFER_HS_URL (required), HYDROGEN_APP_URL (default: serve dist/ on a free
// loopback port), CHROMIUM_PATH (default /usr/bin/chromium), HYDROGEN_HEADFUL=1 to watch,
// HYDROGEN_STEP_TIMEOUT_MS (default 60000).
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { Matrix } from "./matrix.mjs";
import { serveStatic } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
const outDir = process.env.CONIFER_CLIENTS_OUT || join(repoRoot, "target/clients");
const HS = (process.env.CONIFER_HS_URL || "").replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_TIMEOUT = Number(process.env.HYDROGEN_STEP_TIMEOUT_MS || 60000);
const PASSWORD = "conifer-test-password-1";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
function isLoopback(url) {
    try {
        const host = new URL(url).hostname;
        return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
    } catch {
        return false;
    }
}

function step(name) {
    console.log(`# step: ${name}`);
}

function newTag() {
    return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

// Shared across tests: the static server, the browser, and what every page asked the server.
let server = null;
let appUrl = null;
let browser = null;
const requests = [];
const blocked = [];
const mx = new Matrix(HS || "http://127.0.0.1:1");

before(async () => {
    assert.ok(HS, "set CONIFER_HS_URL, e.g. http://127.0.0.1:8008");
    assert.ok(isLoopback(HS), `CONIFER_HS_URL must be a loopback address: ${HS}`);
    await mkdir(outDir, { recursive: true });
    appUrl = process.env.HYDROGEN_APP_URL;
    if (!appUrl) {
        ({ server, url: appUrl } = await serveStatic(join(here, "../dist")));
    }
    assert.ok(isLoopback(appUrl), `app URL must be loopback: ${appUrl}`);
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: process.env.HYDROGEN_HEADFUL !== "1",
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-domain-reliability",
            "--no-pings",
            // Nothing may leave loopback: every non-loopback request goes to a proxy address
            // where nothing listens (loopback itself bypasses proxies), and no host name or
            // address other than localhost and 127.0.0.1 resolves. Request interception
            // (page.route) is deliberately not used: with it, Playwright answers CORS
            // preflights itself, and a server without CORS support would pass.
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        ],
    });
});

after(async () => {
    const unique = [...new Set(requests)].sort();
    await writeFile(join(outDir, "hydrogen-requests.txt"), unique.join("\n") + "\n").catch(() => {});
    console.log(`# ${unique.length} distinct homeserver requests from Hydrogen, listed in ${join(outDir, "hydrogen-requests.txt")}`);
    if (blocked.length) console.log(`# non-loopback requests (blocked): ${blocked.join(", ")}`);
    if (browser) await browser.close();
    if (server) server.close();
});

function normalise(path) {
    return path
        .replace(/\/(![^/]+|%21[^/]+)/g, "/{roomId}")
        .replace(/\/(@[^/]+|%40[^/]+)/g, "/{userId}")
        .replace(/\/(\$[^/]+|%24[^/]+)/g, "/{eventId}")
        .replace(/\/(#[^/]+|%23[^/]+)/g, "/{roomAlias}")
        .replace(/\/(send|sendToDevice)\/([^/]+)\/[^/]+$/, "/$1/$2/{txnId}");
}

/** A fresh browser context (own IndexedDB/localStorage) with one page on the app. */
async function openApp(label) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.consoleErrors = [];
    page.label = label;
    page.on("request", (req) => {
        const url = req.url();
        if (!url.startsWith("data:") && !url.startsWith("blob:") && !isLoopback(url)) {
            blocked.push(url);
        }
        if (url.startsWith(HS)) {
            requests.push(`${req.method()} ${normalise(url.slice(HS.length).split("?")[0])}`);
        }
    });
    page.on("console", (msg) => {
        if (msg.type() === "error") page.consoleErrors.push(msg.text());
    });
    page.on("pageerror", (err) => page.consoleErrors.push(`pageerror: ${err.message}`));
    step(`[${label}] open the app at ${appUrl}`);
    await page.goto(appUrl);
    return page;
}

async function login(page, localpart) {
    step(`[${page.label}] log in as ${localpart} through Hydrogen's login form`);
    const hsField = page.locator("#homeserver");
    await hsField.waitFor();
    await hsField.fill(HS);
    await hsField.blur();
    await page.locator("#username").waitFor();
    await page.locator("#username").fill(localpart);
    await page.locator("#password").fill(PASSWORD);
    await page.getByRole("button", { name: "Log In" }).click();
    await page.getByText("Choose a room on the left side").waitFor();
}

async function openRoom(page, roomName) {
    step(`[${page.label}] open "${roomName}" from the room list`);
    const tile = page.locator(".RoomList li", { hasText: roomName });
    await tile.waitFor();
    await tile.locator("a").click();
    await page.locator(".MessageComposer textarea").waitFor();
}

async function compose(page, text) {
    step(`[${page.label}] send "${text}" from the composer`);
    const composer = page.locator(".MessageComposer textarea");
    await composer.click();
    await composer.fill(text);
    await composer.press("Enter");
}

function messageBody(page, text) {
    return page.locator(".Timeline_messageBody", { hasText: text }).first();
}

async function waitForServerMessage(token, roomId, predicate, what) {
    const deadline = Date.now() + STEP_TIMEOUT;
    while (Date.now() < deadline) {
        const msgs = await mx.messages(token, roomId);
        const found = msgs.find(predicate);
        if (found) return found;
        await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`timed out waiting on the server for ${what}`);
}

async function onFailure(pages, name, err) {
    for (const page of pages) {
        if (!page) continue;
        const file = join(outDir, `${name}-failure-${page.label}.png`);
        await page.screenshot({ path: file }).catch(() => {});
        console.log(`# failure screenshot: ${file}`);
        if (page.consoleErrors.length) {
            console.log(`# [${page.label}] browser console errors:\n${page.consoleErrors.join("\n")}`);
        }
    }
    throw err;
}

test("Hydrogen logs in, opens a prepared room, sends and receives messages", { timeout: 300000 }, async () => {
    const tag = newTag();
    step("register users over the Client-Server API");
    const hydroLocalpart = `hydro_${tag}`;
    const hydro = await mx.register(hydroLocalpart, PASSWORD);
    const helper = await mx.register(`helper_${tag}`, PASSWORD);

    step("helper creates a room, invites the Hydrogen user, who joins");
    const roomName = `Hydrogen test ${tag}`;
    const { room_id: roomId } = await mx.createRoom(helper.access_token, {
        name: roomName,
        preset: "private_chat",
        invite: [hydro.user_id],
    });
    await mx.join(hydro.access_token, roomId);
    const welcome = `welcome to the room ${tag}`;
    await mx.sendText(helper.access_token, roomId, welcome);

    let page;
    try {
        page = await openApp("hydrogen");
        await login(page, hydroLocalpart);
        await openRoom(page, roomName);

        step("the helper's first message is in the timeline");
        await messageBody(page, welcome).waitFor();

        const mine = `hello from hydrogen ${tag}`;
        await compose(page, mine);
        await messageBody(page, mine).waitFor();

        step("the server has the message, sent by the Hydrogen user");
        const found = await waitForServerMessage(
            helper.access_token, roomId, (e) => e.content && e.content.body === mine, "Hydrogen's message",
        );
        assert.equal(found.sender, hydro.user_id);
        assert.equal(found.content.msgtype, "m.text");
        // The local echo became the remote echo from /sync: Hydrogen's tile for our message
        // carries the event ID the server assigned, and is no longer marked unsent.
        await page
            .locator(`.Timeline_message.own:not(.unsent)[data-event-id="${found.event_id}"]`, { hasText: mine })
            .waitFor();

        step("the helper's reply (sent over HTTP) appears in Hydrogen's timeline");
        const reply = `reply from the helper ${tag}`;
        await mx.sendText(helper.access_token, roomId, reply);
        await messageBody(page, reply).waitFor();

        // Order in the timeline: welcome, mine, reply.
        const texts = await page.locator(".Timeline_messageBody").allInnerTexts();
        const idx = (s) => texts.findIndex((t) => t.includes(s));
        assert.ok(idx(welcome) >= 0 && idx(welcome) < idx(mine) && idx(mine) < idx(reply), texts.join(" | "));

        await page.screenshot({ path: join(outDir, "hydrogen.png") });
        console.log(`# screenshot: ${join(outDir, "hydrogen.png")}`);
        assert.deepEqual(blocked, [], `Hydrogen tried to reach non-loopback addresses: ${blocked}`);
    } catch (err) {
        await onFailure([page], "hydrogen", err);
    } finally {
        if (page) await page.context().close();
    }
});

test("two Hydrogen sessions exchange end-to-end encrypted messages", { timeout: 300000 }, async () => {
    const tag = newTag();
    step("register two users over the Client-Server API");
    const aliceLocal = `ehydro_a_${tag}`;
    const bobLocal = `ehydro_b_${tag}`;
    const alice = await mx.register(aliceLocal, PASSWORD);
    const bob = await mx.register(bobLocal, PASSWORD);

    step("alice creates an encrypted room over HTTP, invites bob, bob joins");
    const roomName = `Encrypted ${tag}`;
    const { room_id: roomId } = await mx.createRoom(alice.access_token, {
        name: roomName,
        preset: "private_chat",
        invite: [bob.user_id],
        initial_state: [
            { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        ],
    });
    await mx.join(bob.access_token, roomId);

    let pa;
    let pb;
    try {
        // bob first, so his Hydrogen device and its keys exist before alice encrypts.
        pb = await openApp("bob");
        await login(pb, bobLocal);
        await openRoom(pb, roomName);
        pa = await openApp("alice");
        await login(pa, aliceLocal);
        await openRoom(pa, roomName);

        step("both composers say the room is encrypted");
        await pa.locator('.MessageComposer textarea[placeholder^="Send an encrypted message"]').waitFor();
        await pb.locator('.MessageComposer textarea[placeholder^="Send an encrypted message"]').waitFor();

        const secret = `encrypted hello ${tag}`;
        await compose(pa, secret);
        await messageBody(pa, secret).waitFor();

        step("the server holds only ciphertext");
        let json = null;
        let encrypted = [];
        const deadline = Date.now() + STEP_TIMEOUT;
        while (!encrypted.length && Date.now() < deadline) {
            const res = await mx.request(
                "GET",
                `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`,
                { token: bob.access_token },
            );
            assert.equal(res.status, 200, JSON.stringify(res.json));
            json = res.json;
            encrypted = json.chunk.filter((e) => e.type === "m.room.encrypted" && e.sender === alice.user_id);
            if (!encrypted.length) await new Promise((r) => setTimeout(r, 500));
        }
        assert.ok(encrypted.length >= 1, `no m.room.encrypted event from alice: ${JSON.stringify(json.chunk.map((e) => e.type))}`);
        assert.ok(
            !json.chunk.some((e) => e.type === "m.room.message" && e.sender === alice.user_id),
            "a plaintext m.room.message from alice in an encrypted room",
        );
        assert.equal(encrypted[0].content.algorithm, "m.megolm.v1.aes-sha2");
        assert.ok(!JSON.stringify(json).includes(secret), "plaintext visible on the server");

        step("bob's Hydrogen decrypts alice's message");
        await messageBody(pb, secret).waitFor();

        const reply = `encrypted reply ${tag}`;
        await compose(pb, reply);
        step("alice's Hydrogen decrypts bob's reply");
        await messageBody(pa, reply).waitFor();

        await pb.screenshot({ path: join(outDir, "hydrogen-e2ee.png") });
        console.log(`# screenshot: ${join(outDir, "hydrogen-e2ee.png")}`);
        assert.deepEqual(blocked, [], `Hydrogen tried to reach non-loopback addresses: ${blocked}`);
    } catch (err) {
        await onFailure([pa, pb], "hydrogen-e2ee", err);
    } finally {
        if (pa) await pa.context().close();
        if (pb) await pb.context().close();
    }
});

test("Hydrogen creates a public room with an alias and joins a room by alias", { timeout: 300000 }, async () => {
    const tag = newTag();
    step("register users over the Client-Server API");
    const hydroLocalpart = `hydroc_${tag}`;
    const hydro = await mx.register(hydroLocalpart, PASSWORD);
    const helper = await mx.register(`helperc_${tag}`, PASSWORD);
    const serverName = hydro.user_id.slice(hydro.user_id.indexOf(":") + 1);

    step("helper creates a public room with an alias over HTTP and posts in it");
    const helperAliasLocal = `helper-room-${tag}`;
    const helperRoomName = `Helper's public room ${tag}`;
    const { room_id: helperRoomId } = await mx.createRoom(helper.access_token, {
        name: helperRoomName,
        preset: "public_chat",
        room_alias_name: helperAliasLocal,
    });
    const early = `posted before you joined ${tag}`;
    await mx.sendText(helper.access_token, helperRoomId, early);

    let page;
    try {
        page = await openApp("hydrogen-c");
        await login(page, hydroLocalpart);

        step("create a public room with an alias through the Create Room view");
        const roomName = `Made in Hydrogen ${tag}`;
        const aliasLocal = `made-in-hydrogen-${tag}`;
        await page.getByRole("button", { name: "Create room" }).click();
        await page.getByText("Create Room", { exact: true }).click();
        await page.locator("#name").fill(roomName);
        await page.locator("#topic").fill("created from the UI");
        await page.locator("#isPublic").check();
        await page.locator("#roomAlias").fill(aliasLocal);
        await page.locator(".CreateRoomView button[type=submit]").click();
        await openRoom(page, roomName);

        step("the alias resolves over HTTP; the room is public with the name and topic");
        const alias = `#${aliasLocal}:${serverName}`;
        const resolved = await mx.ok("GET", `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, {
            token: helper.access_token,
        });
        const roomId = resolved.room_id;
        const state = await mx.ok("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, {
            token: hydro.access_token,
        });
        const st = (type) => state.find((e) => e.type === type && e.state_key === "");
        assert.equal(st("m.room.name")?.content.name, roomName);
        assert.equal(st("m.room.topic")?.content.topic, "created from the UI");
        assert.equal(st("m.room.join_rules")?.content.join_rule, "public");
        assert.equal(st("m.room.create")?.sender, hydro.user_id);

        step("the helper joins by alias and writes; Hydrogen shows both");
        await mx.ok("POST", `/_matrix/client/v3/join/${encodeURIComponent(alias)}`, {
            token: helper.access_token,
            body: {},
        });
        const hello = `helper says hi ${tag}`;
        await mx.sendText(helper.access_token, roomId, hello);
        await messageBody(page, hello).waitFor();
        await page.locator(".Timeline", { hasText: "joined the room" }).first().waitFor();

        step("join the helper's room by alias through the Join Room view");
        await page.getByRole("button", { name: "Create room" }).click();
        await page.getByText("Join Room", { exact: true }).click();
        await page.locator("#id").fill(`#${helperAliasLocal}:${serverName}`);
        await page.locator(".JoinRoomView button[type=submit]").click();
        const tile = page.locator(".RoomList li", { hasText: helperRoomName });
        await tile.waitFor();
        await tile.locator("a").click();
        await messageBody(page, early).waitFor();
        const members = await mx.ok(
            "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(helperRoomId)}/joined_members`,
            { token: helper.access_token },
        );
        assert.ok(hydro.user_id in members.joined, JSON.stringify(members));

        await page.screenshot({ path: join(outDir, "hydrogen-rooms.png") });
        console.log(`# screenshot: ${join(outDir, "hydrogen-rooms.png")}`);
        assert.deepEqual(blocked, [], `Hydrogen tried to reach non-loopback addresses: ${blocked}`);
    } catch (err) {
        await onFailure([page], "hydrogen-rooms", err);
    } finally {
        if (page) await page.context().close();
    }
});
