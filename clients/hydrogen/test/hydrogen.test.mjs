// Drives the real Hydrogen web client (built into dist/) in headless Chromium against a
// homeserver:
//   1. two users are registered over the Client-Server API (m.login.dummy) with plain fetch;
//   2. the helper user creates a room, invites the Hydrogen user, who joins (both over HTTP),
//      and posts a first message;
//   3. Hydrogen logs in through its login form, shows the room in its room list, opens it and
//      shows the first message;
//   4. a message typed into Hydrogen's composer is sent and reaches the server (checked over
//      HTTP by the helper user);
//   5. the helper user's reply appears in Hydrogen's timeline;
//   6. a screenshot is saved to target/clients/hydrogen.png.
//
// Environment: CONIFER_HS_URL (required), HYDROGEN_APP_URL (default: serve dist/ on a free
// loopback port), CHROMIUM_PATH (default /usr/bin/chromium), HYDROGEN_HEADFUL=1 to watch.
import test from "node:test";
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

test("Hydrogen logs in, opens a prepared room, sends and receives messages", { timeout: 300000 }, async () => {
    assert.ok(HS, "set CONIFER_HS_URL, e.g. http://127.0.0.1:8008");
    assert.ok(isLoopback(HS), `CONIFER_HS_URL must be a loopback address: ${HS}`);
    await mkdir(outDir, { recursive: true });

    const mx = new Matrix(HS);
    const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

    step("register users over the Client-Server API");
    const hydro = await mx.register(`hydro_${tag}`, PASSWORD);
    const helper = await mx.register(`helper_${tag}`, PASSWORD);
    const hydroLocalpart = `hydro_${tag}`;

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

    let server = null;
    let appUrl = process.env.HYDROGEN_APP_URL;
    if (!appUrl) {
        ({ server, url: appUrl } = await serveStatic(join(here, "../dist")));
    }
    assert.ok(isLoopback(appUrl), `app URL must be loopback: ${appUrl}`);

    const browser = await chromium.launch({
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
            // where nothing listens (loopback itself bypasses proxies), and no host name or address other
            // than localhost and 127.0.0.1 resolves. Request interception (page.route) is deliberately not
            // used: with it, Playwright answers CORS preflights itself and a server without
            // CORS support would pass.
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        ],
    });
    const requests = [];
    const blocked = [];
    const consoleErrors = [];
    let page;
    try {
        const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        page = await context.newPage();
        page.setDefaultTimeout(STEP_TIMEOUT);
        page.on("request", (req) => {
            const url = req.url();
            if (!url.startsWith("data:") && !url.startsWith("blob:") && !isLoopback(url)) {
                blocked.push(url);
            }
            if (url.startsWith(HS)) {
                requests.push(`${req.method()} ${req.url().slice(HS.length).split("?")[0]}`);
            }
        });
        page.on("console", (msg) => {
            if (msg.type() === "error") consoleErrors.push(msg.text());
        });
        page.on("pageerror", (err) => consoleErrors.push(`pageerror: ${err.message}`));

        step(`open the app at ${appUrl}`);
        await page.goto(appUrl);

        step("log in through Hydrogen's login form");
        const hsField = page.locator("#homeserver");
        await hsField.waitFor();
        await hsField.fill(HS);
        await hsField.blur();
        await page.locator("#username").waitFor();
        await page.locator("#username").fill(hydroLocalpart);
        await page.locator("#password").fill(PASSWORD);
        await page.getByRole("button", { name: "Log In" }).click();

        step("the logged-in session shows the prepared room in the room list");
        const roomTile = page.locator(".RoomList li", { hasText: roomName });
        await roomTile.waitFor();
        await page.getByText("Choose a room on the left side").waitFor();

        step("open the room; the helper's first message is in the timeline");
        await roomTile.locator("a").click();
        const timeline = page.locator(".Timeline_messageBody");
        await timeline.filter({ hasText: welcome }).first().waitFor();

        step("send a message from Hydrogen's composer");
        const mine = `hello from hydrogen ${tag}`;
        const composer = page.locator(".MessageComposer textarea");
        await composer.waitFor();
        await composer.click();
        await composer.fill(mine);
        await composer.press("Enter");
        await timeline.filter({ hasText: mine }).first().waitFor();

        step("the server has the message, sent by the Hydrogen user");
        let found = null;
        const deadline = Date.now() + STEP_TIMEOUT;
        while (!found && Date.now() < deadline) {
            const msgs = await mx.messages(helper.access_token, roomId);
            found = msgs.find((e) => e.content && e.content.body === mine);
            if (!found) await new Promise((r) => setTimeout(r, 500));
        }
        assert.ok(found, "Hydrogen's message never reached the server");
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
        await timeline.filter({ hasText: reply }).first().waitFor();

        // Order in the timeline: welcome, mine, reply.
        const texts = await timeline.allInnerTexts();
        const idx = (s) => texts.findIndex((t) => t.includes(s));
        assert.ok(idx(welcome) >= 0 && idx(welcome) < idx(mine) && idx(mine) < idx(reply), texts.join(" | "));

        step("screenshot");
        await page.screenshot({ path: join(outDir, "hydrogen.png") });
        console.log(`# screenshot: ${join(outDir, "hydrogen.png")}`);
        assert.deepEqual(blocked, [], `Hydrogen tried to reach non-loopback addresses (blocked): ${blocked}`);
    } catch (err) {
        if (page) {
            await page.screenshot({ path: join(outDir, "hydrogen-failure.png") }).catch(() => {});
            console.log(`# failure screenshot: ${join(outDir, "hydrogen-failure.png")}`);
        }
        if (consoleErrors.length) console.log(`# browser console errors:\n${consoleErrors.join("\n")}`);
        throw err;
    } finally {
        const unique = [...new Set(requests)].sort();
        await writeFile(join(outDir, "hydrogen-requests.txt"), unique.join("\n") + "\n");
        console.log(`# ${unique.length} distinct homeserver requests, listed in ${join(outDir, "hydrogen-requests.txt")}`);
        if (blocked.length) console.log(`# blocked non-loopback requests: ${blocked.join(", ")}`);
        await browser.close();
        if (server) server.close();
    }
});
