"""A real lab server for the tests: `invoke serve` started as a user starts it, on a free loopback
port with a data folder of the test's own, and a small client for its API (Bearer tokens from
tokens.json, or a browser-like session with the cookie and the CSRF token)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .conftest import REPO, invoke_argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    proc: subprocess.Popen
    data: Path
    port: int
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, token: Optional[str] = None, body: Any = None, headers: Optional[dict] = None,
                raw: Optional[bytes] = None, timeout: float = 30) -> Reply:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, r.read(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), dict(e.headers))

    def as_user(self, name: str):
        return lambda method, path, **kw: self.request(method, path, token=self.tokens[name], **kw)

    def lab(self, token: str, lab_id: str) -> dict[str, Any]:
        r = self.request("GET", f"/api/labs/{lab_id}", token)
        assert r.status == 200, (r.status, r.body)
        return r.json()

    def wait(self, token: str, lab_id: str, states=("done", "failed"), timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            lab = self.lab(token, lab_id)
            if lab["state"] in states:
                return lab
            if time.monotonic() > deadline:
                raise AssertionError(f"lab {lab_id} still {lab['state']} after {timeout} s: {lab.get('stage')}; log: {self.log_text()[-2000:]}")
            assert self.proc.poll() is None, f"the server died: {self.log_text()[-3000:]}"
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def write_class(path: Path, students: list[str], exercises: Optional[dict] = None, secret: str = "a-test-secret-of-the-class") -> Path:
    body: dict[str, Any] = {"class": "testclass", "secret": secret, "students": students}
    if exercises is not None:
        body["exercises"] = exercises
    path.write_text(yaml.safe_dump(body))
    return path


def start(tmp: Path, *args: str, data: Optional[Path] = None, port: Optional[int] = None, ready: float = 60) -> Served:
    """`invoke serve` with these arguments; returns once its API answers."""
    data = data or tmp / "data"
    port = port or free_port()
    log = tmp / f"serve-{port}.log"
    out = open(log, "ab")
    proc = subprocess.Popen(invoke_argv("serve", "--listen", f"127.0.0.1:{port}", "--data", str(data), *args), cwd=REPO,
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    served = Served(proc, data, port, log)
    deadline = time.monotonic() + ready
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"invoke serve exited with {proc.returncode}: {served.log_text()}")
        try:
            served.tokens = json.loads((data / "tokens.json").read_text())
            if served.request("GET", "/api/me", served.tokens["instructor"], timeout=2).status == 200:
                return served
        except (OSError, ValueError, KeyError, urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"invoke serve did not answer within {ready} s: {served.log_text()}")
