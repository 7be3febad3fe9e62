"""Fixtures for the federation suite: a Synapse (started by .ci/federation.sh, reached through
SYNAPSE_URL / SYNAPSE_NAME) and a Conifer this suite starts itself, so that a test can kill and
restart it. Both federate over TLS on loopback."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from matrix import User

SYNAPSE_URL = os.environ.get("SYNAPSE_URL", "http://127.0.0.1:18018")
SYNAPSE_NAME = os.environ.get("SYNAPSE_NAME", "127.0.0.1:18448")
CONIFER_BIN = os.environ.get("CONIFER_BIN", "target/debug/conifer")
CONIFER_FED_PORT = int(os.environ.get("CONIFER_FED_PORT", "18449"))
CONIFER_CLIENT_PORT = int(os.environ.get("CONIFER_CLIENT_PORT", "18019"))
TAG = secrets.token_hex(3)
_n = [0]


def localpart(prefix: str) -> str:
    _n[0] += 1
    return f"{prefix}{TAG}{_n[0]}"


class Conifer:
    """`conifer run` as a classic server named 127.0.0.1:PORT with a TLS federation listener."""

    def __init__(self, data: Path):
        self.data = data
        self.name = f"127.0.0.1:{CONIFER_FED_PORT}"
        self.url = f"http://127.0.0.1:{CONIFER_CLIENT_PORT}"
        self.config = data / "conifer.toml"
        self.config.write_text(
            "[federation]\n"
            f'insecure_skip_verify = ["{SYNAPSE_NAME}"]\n'
            'ip_range_allow = ["127.0.0.0/8", "::1/128"]\n'
            f'allowed_servers = ["{SYNAPSE_NAME}"]\n'
        )
        self.log = open(data / "conifer.log", "ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, CONIFER_RATE_LIMITS="false", RUST_LOG="info,ruma_state_res=warn")
        self.proc = subprocess.Popen(
            [CONIFER_BIN, "run", "--config", str(self.config), "--server-name", self.name,
             "--federation-addr", self.name, "--client-addr", f"127.0.0.1:{CONIFER_CLIENT_PORT}",
             "--data-dir", str(self.data / "data")],
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, "conifer run exited during start-up"
            try:
                urllib.request.urlopen(self.url + "/_matrix/client/versions", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("conifer run did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture(scope="session")
def conifer():
    """Its data and log go to CONIFER_TEST_DIR if set (kept for reading), else a temporary dir."""
    keep = os.environ.get("CONIFER_TEST_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        c = Conifer(d)
        c.start()
        yield c
        c.stop()


@pytest.fixture
def pair(conifer):
    """A fresh user on each server: (conifer_user, synapse_user)."""
    return (User.register(conifer.url, localpart("carol")),
            User.register(SYNAPSE_URL, localpart("sam")))
