// Drives the vite + matrix-js-sdk page (src/main.js, built into dist/) in headless Chromium
// against a homeserver:
//
// 1. sign-up through user-interactive auth: the first POST /register (no `auth`) must answer
//    401 with flows, a session and no errcode; the page then completes the m.login.dummy stage
//    with that session and is signed in (checked over HTTP: the password logs in as that user);
// 2. the page joins a room prepared by a helper user and shows its message; typing in the
//    composer reaches the helper as m.typing, and the helper's typing shows in the page; Enter
//    sends the message (the helper reads it back and sees the typing stop); the page's Redact
//    button redacts it (the helper gets the redacted event with `redacted_because`), and the page
//    shows it deleted;
// 3. signing up with a taken name shows M_USER_IN_USE and registers nothing.
//
// Screenshots in target/clients/screenshots/: uia-web-signup.png, uia-web-room.png,
// uia-web-redacted.png, uia-web-taken.png (and uia-web-failure-*.png on failure).
//
// Environment: CONIFER_HS_URL (required, loopback), CHROMIUM_PATH (default /usr/bin/chromium),
// UIA_WEB_HEADFUL=1 to watch, UIA_WEB_STEP_TIMEOUT_MS (default 30000).
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { serveStatic } from "../../hydrogen/test/serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
const outDir = join(repoRoot, "target/clients");
const shotDir = join(outDir, "screenshots");
const HS = (process.env.CONIFER_HS_URL || "").replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_TIMEOUT = Number(process.env.UIA_WEB_STEP_TIMEOUT_MS || 30000);
const PASSWORD = "conifer-uia-web-password-1";
const TAG = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`;

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
function isLoopback(url) {
    try {
        const host = new URL(url).hostname;
        return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
    } catch {
        return false;
    }
}

async function call(method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(HS + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : {} };
}

async function ok(method, path, opts) {
    const { status, json } = await call(method, path, opts);
    if (status !== 200) throw new Error(`${method} ${path} -> ${status} ${JSON.stringify(json)}`);
    return json;
}

async function registerHelper(name) {
    const body = { username: name, password: PASSWORD, auth: { type: "m.login.dummy" } };
    let r = await call("POST", "/_matrix/client/v3/register", { body });
    if (r.status === 401 && r.json.session) {
        body.auth.session = r.json.session;
        r = await call("POST", "/_matrix/client/v3/register", { body });
    }
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json;
}

async function until(fn, what) {
    const deadline = Date.now() + STEP_TIMEOUT;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
    }
}

/** A helper's incremental sync, to watch typing notifications. */
class Watcher {
    constructor(token) {
        this.token = token;
        this.since = null;
    }

    async typingIn(roomId) {
        const q = `?timeout=1000${this.since ? `&since=${encodeURIComponent(this.since)}` : ""}`;
        const s = await ok("GET", `/_matrix/client/v3/sync${q}`, { token: this.token });
        this.since = s.next_batch;
        const ev = s.rooms?.join?.[roomId]?.ephemeral?.events?.find((e) => e.type === "m.typing");
        return ev ? ev.content.user_ids : null;
    }

    /** Syncs until an m.typing event for the room satisfies `pred(user_ids)`. */
    async waitTyping(roomId, pred, what) {
        return until(async () => {
            const ids = await this.typingIn(roomId);
            return ids && pred(ids) ? ids : null;
        }, what);
    }
}

let server;
let appUrl;
let browser;
const blocked = [];
const requests = new Set();

before(async () => {
    assert.ok(HS, "set CONIFER_HS_URL, e.g. http://127.0.0.1:8008");
    assert.ok(isLoopback(HS), `CONIFER_HS_URL must be a loopback address: ${HS}`);
    await mkdir(shotDir, { recursive: true });
    ({ server, url: appUrl } = await serveStatic(join(here, "../dist")));
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: process.env.UIA_WEB_HEADFUL !== "1",
        args: [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-domain-reliability", "--no-pings",
            // Nothing leaves loopback (as in the Hydrogen suite): other hosts go to a proxy where
            // nothing listens, and no name but localhost resolves.
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        ],
    });
});

after(async () => {
    await writeFile(join(outDir, "uia-web-requests.txt"), [...requests].sort().join("\n") + "\n").catch(() => {});
    if (browser) await browser.close();
    if (server) server.close();
    assert.deepEqual(blocked, [], "the page requested non-loopback URLs");
});

async function openPage(label) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.label = label;
    page.errors = [];
    page.on("request", (req) => {
        const url = req.url();
        if (!url.startsWith("data:") && !url.startsWith("blob:") && !isLoopback(url)) blocked.push(url);
        if (url.startsWith(HS)) {
            const path = url.slice(HS.length).split("?")[0]
                .replace(/\/(![^/]+|%21[^/]+)/g, "/{roomId}").replace(/\/(@[^/]+|%40[^/]+)/g, "/{userId}")
                .replace(/\/(\$[^/]+|%24[^/]+)/g, "/{eventId}").replace(/\/(send|redact)\/([^/]+)\/[^/]+$/, "/$1/$2/{txnId}");
            requests.add(`${req.method()} ${path}`);
        }
    });
    page.on("console", (msg) => msg.type() === "error" && page.errors.push(msg.text()));
    page.on("pageerror", (err) => page.errors.push(`pageerror: ${err.message}`));
    await page.goto(appUrl);
    return page;
}

async function onFailure(page, err) {
    if (page) {
        await page.screenshot({ path: join(shotDir, `uia-web-failure-${page.label}.png`) }).catch(() => {});
        if (page.errors.length) console.log(`# browser errors:\n${page.errors.join("\n")}`);
    }
    throw err;
}

async function signUp(page, username) {
    await page.locator("#hs").fill(HS);
    await page.locator("#username").fill(username);
    await page.locator("#password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign up" }).click();
}

test("sign up through user-interactive auth, join, type, send and redact", { timeout: 180000 }, async () => {
    let page;
    try {
        const helper = await registerHelper(`uiaweb_helper_${TAG}`);
        const { room_id: roomId } = await ok("POST", "/_matrix/client/v3/createRoom", {
            token: helper.access_token,
            body: { preset: "public_chat", name: `UIA web ${TAG}` },
        });
        await ok("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/h1`, {
            token: helper.access_token, body: { msgtype: "m.text", body: "hello from the helper" },
        });
        const watcher = new Watcher(helper.access_token);
        await watcher.typingIn(roomId);

        page = await openPage("signup");
        const username = `uiaweb_${TAG}`;
        await signUp(page, username);
        await page.locator("#whoami", { hasText: "Signed in as @" }).waitFor();
        const steps = await page.locator("#uia-log li").allTextContents();
        assert.equal(steps[0], "POST /register without auth");
        assert.match(steps[1], /^401: flows \[.*\bm\.login\.dummy\b.*\], session present, completed \[\], errcode none$/);
        assert.equal(steps[2], "POST /register with auth m.login.dummy");
        assert.match(steps[3], new RegExp(`^registered @${username}:`));
        assert.equal(steps.length, 4, JSON.stringify(steps));
        const userId = await page.evaluate(() => window.conifer.client.getUserId());
        await page.screenshot({ path: join(shotDir, "uia-web-signup.png") });

        // The account exists with that password.
        const login = await ok("POST", "/_matrix/client/v3/login", {
            body: { type: "m.login.password", identifier: { type: "m.id.user", user: username }, password: PASSWORD },
        });
        assert.equal(login.user_id, userId);

        // Join the helper's room; its message shows.
        await page.locator("#join-room").fill(roomId);
        await page.getByRole("button", { name: "Join" }).click();
        await page.locator("#timeline li", { hasText: "hello from the helper" }).waitFor();

        // Typing in the composer reaches the helper.
        const text = `hello from the browser ${TAG}`;
        await page.locator("#composer").click();
        await page.locator("#composer").pressSequentially(text.slice(0, 10));
        await watcher.waitTyping(roomId, (ids) => ids.includes(userId), "the page's typing at the helper");
        // The helper's typing shows in the page.
        await ok("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(helper.user_id)}`, {
            token: helper.access_token, body: { typing: true, timeout: 30000 },
        });
        await page.locator("#typing", { hasText: "is typing" }).waitFor();
        await page.locator("#composer").pressSequentially(text.slice(10));
        await page.screenshot({ path: join(shotDir, "uia-web-room.png") });

        // Enter sends; the typing stops.
        await page.locator("#composer").press("Enter");
        const sent = await until(async () => {
            const m = await ok("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, { token: helper.access_token });
            return m.chunk.find((e) => e.type === "m.room.message" && e.sender === userId && e.content.body === text);
        }, "the page's message on the server");
        await watcher.waitTyping(roomId, (ids) => !ids.includes(userId), "the page's typing to stop");
        const tile = page.locator(`#timeline li[data-event-id="${sent.event_id}"]`);
        await tile.locator(".body", { hasText: text }).waitFor();
        await page.locator(`#timeline li[data-event-id="${sent.event_id}"][data-status="sent"]`).waitFor();

        // Redact it from the page.
        await tile.getByRole("button", { name: "Redact" }).click();
        const redacted = await until(async () => {
            const ev = await ok("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`, { token: helper.access_token });
            return ev.unsigned?.redacted_because ? ev : null;
        }, "the redaction on the server");
        assert.deepEqual(redacted.content, {}, "a redacted message keeps no content");
        assert.equal(redacted.unsigned.redacted_because.type, "m.room.redaction");
        assert.equal(redacted.unsigned.redacted_because.sender, userId);
        assert.equal(redacted.unsigned.redacted_because.content.reason, "redacted from the test page");
        await page.locator(`#timeline li.redacted[data-event-id="${sent.event_id}"]`, { hasText: "Message deleted" }).waitFor();
        await page.screenshot({ path: join(shotDir, "uia-web-redacted.png") });
        assert.deepEqual(page.errors.filter((e) => e.startsWith("pageerror")), []);
    } catch (err) {
        await onFailure(page, err);
    }
});

test("signing up with a taken name shows M_USER_IN_USE and registers nothing", { timeout: 120000 }, async () => {
    let page;
    try {
        const taken = `uiaweb_taken_${TAG}`;
        await registerHelper(taken);
        page = await openPage("taken");
        await signUp(page, taken);
        await page.locator("#status.error", { hasText: "M_USER_IN_USE" }).waitFor();
        const steps = await page.locator("#uia-log li").allTextContents();
        assert.ok(!steps.some((s) => s.startsWith("registered")), JSON.stringify(steps));
        assert.equal(await page.locator("#session").isHidden(), true);
        await page.screenshot({ path: join(shotDir, "uia-web-taken.png") });
    } catch (err) {
        await onFailure(page, err);
    }
});
