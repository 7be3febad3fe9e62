// Shared helpers for the matrix-js-sdk suite: the homeserver URL (loopback only), account
// registration with plain fetch (m.login.dummy), and matrix-js-sdk clients with the Rust crypto
// stack (in-memory stores: Node has no IndexedDB, and each test device lives for one test).
import "./quiet.mjs";
import assert from "node:assert/strict";
import { createClient, ClientEvent, MatrixEventEvent } from "matrix-js-sdk";

export const PASSWORD = "conifer-js-sdk-password-1";
export const STEP_TIMEOUT = Number(process.env.JS_SDK_STEP_TIMEOUT_MS || 30000);

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
export function isLoopback(url) {
    try {
        const host = new URL(url).hostname;
        return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
    } catch {
        return false;
    }
}

/** The homeserver under test, from CONIFER_HS_URL; refuses anything but loopback. */
export function homeserver(variable = "CONIFER_HS_URL") {
    const url = (process.env[variable] || "").replace(/\/+$/, "");
    assert.ok(url, `set ${variable}, e.g. http://127.0.0.1:8008`);
    assert.ok(isLoopback(url), `${variable} must be a loopback address: ${url}`);
    return url;
}

let counter = 0;
const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`;
/** A fresh, unique localpart, so the suite can run any number of times against one server. */
export function localpart(prefix) {
    counter += 1;
    return `jssdk_${prefix}_${RUN}${counter}`;
}

/** Plain Client-Server API request; returns {status, json}. */
export async function request(hs, method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(hs + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
        json = text ? JSON.parse(text) : {};
    } catch {
        json = { raw: text };
    }
    return { status: res.status, json };
}

export async function ok(hs, method, path, opts) {
    const { status, json } = await request(hs, method, path, opts);
    if (status !== 200) throw new Error(`${method} ${path} -> ${status} ${JSON.stringify(json)}`);
    return json;
}

/** Registers a new account (m.login.dummy); returns {user_id, access_token, device_id}. */
export async function register(hs, prefix) {
    const body = { username: localpart(prefix), password: PASSWORD, auth: { type: "m.login.dummy" } };
    let { status, json } = await request(hs, "POST", "/_matrix/client/v3/register", { body });
    if (status === 401 && json.session) {
        body.auth.session = json.session;
        ({ status, json } = await request(hs, "POST", "/_matrix/client/v3/register", { body }));
    }
    if (status !== 200) throw new Error(`register -> ${status} ${JSON.stringify(json)}`);
    return json;
}

/** Password login of an existing account on a new device. */
export async function login(hs, userId) {
    return ok(hs, "POST", "/_matrix/client/v3/login", {
        body: {
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password: PASSWORD,
            initial_device_display_name: "js-sdk test device",
        },
    });
}

/**
 * A started matrix-js-sdk client for an account ({user_id, access_token, device_id}), with the
 * Rust crypto stack when `crypto` is set. Resolves once the first sync has been processed.
 */
export async function startClient(hs, account, { crypto = true, cryptoCallbacks, clientOpts = {}, startOpts = {} } = {}) {
    const client = createClient({
        baseUrl: hs,
        userId: account.user_id,
        accessToken: account.access_token,
        deviceId: account.device_id,
        cryptoCallbacks,
        ...clientOpts,
    });
    if (crypto) await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(ClientEvent.Sync, onSync);
                reject(new Error(`first sync failed: ${data?.error}`));
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20, ...startOpts });
    await withTimeout(prepared, STEP_TIMEOUT, "first sync");
    return client;
}

export function stopAll(...clients) {
    for (const c of clients) {
        try {
            c?.stopClient();
        } catch {
            // already stopped
        }
    }
}

export async function withTimeout(promise, ms, label) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(timer);
    }
}

/** Polls `fn` (sync or async) until it returns a truthy value; returns that value. */
export async function waitFor(fn, label, ms = STEP_TIMEOUT) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${ms} ms waiting for ${label}${last ? `: ${last.message}` : ""}`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
}

/** Waits until the client has the room (joined, per its sync). */
export function waitForRoom(client, roomId) {
    return waitFor(() => {
        const room = client.getRoom(roomId);
        return room && room.getMyMembership() === "join" ? room : null;
    }, `room ${roomId} in ${client.getUserId()}'s sync`);
}

/** Waits until the client has the invite to the room. */
export function waitForInvite(client, roomId) {
    return waitFor(() => client.getRoom(roomId)?.getMyMembership() === "invite", `invite to ${roomId}`);
}

/**
 * Waits for the event with that ID in the client's live timeline of the room and for its
 * decryption (when it is encrypted) to finish; returns the MatrixEvent.
 */
export async function waitForEvent(client, roomId, eventId) {
    const ev = await waitFor(() => client.getRoom(roomId)?.findEventById(eventId), `event ${eventId} at ${client.getUserId()}`);
    if (ev.isBeingDecrypted()) {
        await withTimeout(new Promise((r) => ev.once(MatrixEventEvent.Decrypted, r)), STEP_TIMEOUT, `decryption of ${eventId}`);
    }
    return ev;
}

/** Waits until the event decrypts (retrying while the room key is still on its way). */
export async function waitForDecrypted(client, roomId, eventId) {
    const ev = await waitForEvent(client, roomId, eventId);
    await waitFor(async () => {
        if (ev.isDecryptionFailure()) await client.decryptEventIfNeeded(ev, { isRetry: true });
        return !ev.isBeingDecrypted() && !ev.isDecryptionFailure() && ev.getType() !== "m.room.encrypted";
    }, `decryption of ${eventId} at ${client.getUserId()}`);
    return ev;
}

/** Raw events of a room, oldest first, read with /messages by the given account. */
export async function rawMessages(hs, token, roomId, limit = 100) {
    const json = await ok(hs, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=${limit}`, { token });
    return json.chunk.reverse();
}
