// Plain-fetch Client-Server API helpers used to prepare users and rooms for the Hydrogen test.

export class Matrix {
    constructor(hsUrl) {
        this.hs = hsUrl.replace(/\/+$/, "");
    }

    async request(method, path, { token, body } = {}) {
        const headers = {};
        if (token) headers.Authorization = `Bearer ${token}`;
        if (body !== undefined) headers["Content-Type"] = "application/json";
        const res = await fetch(this.hs + path, {
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

    async ok(method, path, opts) {
        const { status, json } = await this.request(method, path, opts);
        if (status !== 200) {
            throw new Error(`${method} ${path} -> ${status} ${JSON.stringify(json)}`);
        }
        return json;
    }

    /** Registers with m.login.dummy; returns {user_id, access_token, device_id}. */
    async register(username, password) {
        const body = {
            username,
            password,
            auth: { type: "m.login.dummy" },
            initial_device_display_name: "hydrogen-test setup",
        };
        let { status, json } = await this.request("POST", "/_matrix/client/v3/register", { body });
        if (status === 401 && json.session) {
            // Servers that insist on a UIA session first: repeat with it.
            body.auth.session = json.session;
            ({ status, json } = await this.request("POST", "/_matrix/client/v3/register", { body }));
        }
        if (status !== 200) {
            throw new Error(`register ${username} -> ${status} ${JSON.stringify(json)}`);
        }
        return json;
    }

    createRoom(token, body) {
        return this.ok("POST", "/_matrix/client/v3/createRoom", { token, body });
    }

    join(token, roomId) {
        return this.ok("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { token, body: {} });
    }

    sendText(token, roomId, text) {
        const txn = `hydrogen-test-${Date.now()}-${Math.random().toString(36).slice(2)}`;
        return this.ok(
            "PUT",
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
            { token, body: { msgtype: "m.text", body: text } },
        );
    }

    /** Text messages in the room, oldest first (last `limit` events). */
    async messages(token, roomId, limit = 50) {
        const json = await this.ok(
            "GET",
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=${limit}`,
            { token },
        );
        return json.chunk
            .filter((e) => e.type === "m.room.message")
            .reverse();
    }
}
