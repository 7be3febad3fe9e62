"""A tiny blocking Client-Server API client (urllib), enough to drive two homeservers
from the federation tests without an event loop. E2EE goes through matrix-nio instead."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable
from urllib.parse import quote

PASSWORD = "conifer-federation-1"


class MatrixError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def call(base: str, method: str, path: str, token: str | None = None, body: Any = None,
         timeout: float = 60) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        raise MatrixError(e.code, parsed) from None
    return json.loads(raw or b"{}")


class User:
    """A logged-in user on one homeserver, with its own incremental sync position."""

    def __init__(self, base: str, user_id: str, token: str, device_id: str):
        self.base, self.user_id, self.token, self.device_id = base, user_id, token, device_id
        self.since: str | None = None
        self._txn = 0

    @classmethod
    def register(cls, base: str, localpart: str) -> "User":
        body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        try:
            r = call(base, "POST", "/_matrix/client/v3/register", body=body)
        except MatrixError as e:
            if e.status != 401:
                raise
            body["auth"]["session"] = e.body.get("session")
            r = call(base, "POST", "/_matrix/client/v3/register", body=body)
        return cls(base, r["user_id"], r["access_token"], r["device_id"])

    def req(self, method: str, path: str, body: Any = None, timeout: float = 60) -> dict[str, Any]:
        return call(self.base, method, path, self.token, body, timeout)

    def upload(self, data: bytes, content_type: str) -> str:
        req = urllib.request.Request(self.base + "/_matrix/media/v3/upload", data=data, method="POST")
        req.add_header("Content-Type", content_type)
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["content_uri"]

    def download(self, mxc: str) -> tuple[str, bytes]:
        """Content type and bytes of `mxc://server/id` through this user's server."""
        server, media_id = mxc.removeprefix("mxc://").split("/", 1)
        req = urllib.request.Request(
            f"{self.base}/_matrix/client/v1/media/download/{quote(server)}/{quote(media_id)}")
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.headers.get("Content-Type", ""), r.read()

    def create_room(self, **options: Any) -> str:
        return self.req("POST", "/_matrix/client/v3/createRoom", options)["room_id"]

    def join(self, room: str, via: list[str] | None = None) -> str:
        q = "" if not via else "?" + "&".join(f"server_name={quote(s)}" for s in via)
        return self.req("POST", f"/_matrix/client/v3/join/{quote(room)}{q}", {})["room_id"]

    def send(self, room: str, body: str, event_type: str = "m.room.message") -> str:
        self._txn += 1
        txn = f"{int(time.time() * 1000)}-{self._txn}"
        content = {"msgtype": "m.text", "body": body}
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/{event_type}/{txn}"
        return self.req("PUT", path, content)["event_id"]

    def state(self, room: str, event_type: str, content: dict[str, Any], key: str = "") -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room)}/state/{event_type}/{quote(key)}"
        return self.req("PUT", path, content)["event_id"]

    def sync(self, timeout_ms: int = 1000) -> dict[str, Any]:
        q = f"?timeout={timeout_ms}" + (f"&since={self.since}" if self.since else "")
        r = self.req("GET", "/_matrix/client/v3/sync" + q, timeout=timeout_ms / 1000 + 30)
        self.since = r["next_batch"]
        return r

    def wait_for(self, what: str, found: Callable[[dict[str, Any]], Any], timeout: float = 60) -> Any:
        """Syncs until `found(sync_response)` returns something truthy; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            hit = found(self.sync())
            if hit:
                return hit
        raise AssertionError(f"{self.user_id} never saw {what} within {timeout:.0f} s")

    def wait_for_event(self, room: str, pred: Callable[[dict[str, Any]], bool],
                       what: str, section: str = "timeline", timeout: float = 60) -> dict[str, Any]:
        def found(s: dict[str, Any]) -> Any:
            r = s.get("rooms", {}).get("join", {}).get(room, {})
            events = r.get(section, {}).get("events", [])
            return next((e for e in events if pred(e)), None)
        return self.wait_for(what, found, timeout)

    def wait_for_message(self, room: str, body: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_for_event(
            room, lambda e: e.get("type") == "m.room.message" and e["content"].get("body") == body,
            f"message {body!r} in {room}", timeout=timeout)
