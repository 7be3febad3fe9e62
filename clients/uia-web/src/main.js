// A small Matrix page on matrix-js-sdk: sign up through user-interactive auth (UIA), join a
// room, read its timeline, send, redact, and send and show typing notifications.
//
// Sign-up follows what Element and Cinny do: the first POST /register carries no `auth`; the
// server answers 401 with `flows` and a `session`. A 401 that carries an `errcode` is an error
// to show (e.g. M_USER_IN_USE), never a stage to complete; otherwise, when a flow consists of
// `m.login.dummy` stages only, the page completes them itself, with the session.
import { ClientEvent, createClient, MatrixError, RoomEvent, RoomMemberEvent } from "matrix-js-sdk";

const $ = (id) => document.getElementById(id);
const state = { client: null, roomId: null, typing: false };
window.conifer = state; // for the test: the page's session, read-only use

function status(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
}

function logStep(text) {
    const li = document.createElement("li");
    li.textContent = text;
    $("uia-log").append(li);
}

/** Registers through UIA; resolves to the /register response (user_id, access_token, device_id). */
async function signUp(baseUrl, username, password) {
    const client = createClient({ baseUrl });
    const params = { username, password, initial_device_display_name: "conifer uia-web page" };
    let auth;
    for (let round = 0; round < 5; round++) {
        try {
            logStep(auth ? `POST /register with auth ${auth.type}` : "POST /register without auth");
            const res = await client.registerRequest(params);
            logStep(`registered ${res.user_id}`);
            return res;
        } catch (e) {
            if (!(e instanceof MatrixError) || e.httpStatus !== 401 || !Array.isArray(e.data?.flows)) throw e;
            const uia = e.data;
            const flows = uia.flows.map((f) => f.stages.join(" → ")).join(" | ");
            logStep(`401: flows [${flows}], session ${uia.session ? "present" : "missing"}, completed [${(uia.completed || []).join(", ")}], errcode ${uia.errcode || "none"}`);
            if (uia.errcode) throw new Error(`${uia.errcode}: ${uia.error || "sign-up refused"}`);
            const flow = uia.flows.find((f) => f.stages.length > 0 && f.stages.every((s) => s === "m.login.dummy"));
            if (!flow) throw new Error(`no flow this page can complete: ${flows}`);
            auth = { type: "m.login.dummy", session: uia.session };
            params.auth = auth;
        }
    }
    throw new Error("user-interactive auth did not finish");
}

function renderTimeline() {
    const room = state.client.getRoom(state.roomId);
    if (!room) return;
    $("room-name").textContent = room.name;
    const ul = $("timeline");
    ul.replaceChildren();
    for (const ev of room.getLiveTimeline().getEvents()) {
        if (ev.getType() !== "m.room.message") continue;
        const li = document.createElement("li");
        li.dataset.eventId = ev.getId() || "";
        li.dataset.sender = ev.getSender();
        li.dataset.status = ev.status || "sent";
        const sender = document.createElement("span");
        sender.className = "sender";
        sender.textContent = room.getMember(ev.getSender())?.name || ev.getSender();
        const body = document.createElement("span");
        body.className = "body";
        if (ev.isRedacted()) {
            li.classList.add("redacted");
            body.textContent = "Message deleted";
        } else {
            body.textContent = ev.getContent().body;
        }
        li.append(sender, body);
        if (!ev.isRedacted() && ev.getSender() === state.client.getUserId() && !ev.status) {
            const button = document.createElement("button");
            button.className = "redact";
            button.textContent = "Redact";
            button.addEventListener("click", () => {
                button.disabled = true;
                state.client.redactEvent(state.roomId, ev.getId(), undefined, { reason: "redacted from the test page" })
                    .catch((err) => status(`redaction failed: ${err.message}`, true));
            });
            li.append(button);
        }
        ul.append(li);
    }
}

function renderTyping() {
    const room = state.client.getRoom(state.roomId);
    if (!room) return;
    const others = room.getJoinedMembers().filter((m) => m.typing && m.userId !== state.client.getUserId());
    $("typing").textContent = others.length ? `${others.map((m) => m.name).join(", ")} is typing…` : "";
}

async function startSession(baseUrl, creds) {
    const client = createClient({ baseUrl, userId: creds.user_id, accessToken: creds.access_token, deviceId: creds.device_id });
    state.client = client;
    client.on(RoomEvent.Timeline, (_ev, room) => room?.roomId === state.roomId && renderTimeline());
    client.on(RoomEvent.Redaction, (_ev, room) => room?.roomId === state.roomId && renderTimeline());
    client.on(RoomEvent.LocalEchoUpdated, (_ev, room) => room?.roomId === state.roomId && renderTimeline());
    client.on(RoomMemberEvent.Typing, (_ev, member) => member.roomId === state.roomId && renderTyping());
    // A joined room's first events can come with the sync that follows the join, before the
    // page has switched to it: redraw after every sync too.
    client.on(ClientEvent.Sync, () => {
        if (state.roomId) {
            renderTimeline();
            renderTyping();
        }
    });
    const ready = new Promise((resolve) => {
        const onSync = (s) => {
            if (s === "PREPARED") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20 });
    await ready;
    $("whoami").textContent = `Signed in as ${creds.user_id}`;
    $("session").hidden = false;
}

$("signup").addEventListener("submit", async (e) => {
    e.preventDefault();
    const baseUrl = $("hs").value.trim().replace(/\/+$/, "");
    $("signup-button").disabled = true;
    status("Signing up…");
    try {
        const creds = await signUp(baseUrl, $("username").value.trim(), $("password").value);
        await startSession(baseUrl, creds);
        status(`Signed up as ${creds.user_id}`);
    } catch (err) {
        status(`Sign-up failed: ${err.errcode ? `${err.errcode}: ` : ""}${err.message}`, true);
        $("signup-button").disabled = false;
    }
});

$("join").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
        const room = await state.client.joinRoom($("join-room").value.trim());
        state.roomId = room.roomId;
        $("room").hidden = false;
        renderTimeline();
        renderTyping();
        status(`Joined ${room.roomId}`);
    } catch (err) {
        status(`Join failed: ${err.message}`, true);
    }
});

// Typing notifications as Element sends them: start on input (with a timeout), stop on send or
// when the composer is emptied.
$("composer").addEventListener("input", () => {
    const typing = $("composer").value.length > 0;
    if (typing !== state.typing) {
        state.typing = typing;
        state.client.sendTyping(state.roomId, typing, typing ? 30000 : undefined).catch(() => {});
    }
});

$("send").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = $("composer").value;
    if (!body) return;
    $("composer").value = "";
    if (state.typing) {
        state.typing = false;
        state.client.sendTyping(state.roomId, false).catch(() => {});
    }
    try {
        await state.client.sendTextMessage(state.roomId, body);
    } catch (err) {
        status(`Send failed: ${err.message}`, true);
    }
});
