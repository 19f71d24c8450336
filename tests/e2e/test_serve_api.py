"""The lab server's API on loopback, as a script or a page calls it: a real `invoke serve`, real labs
in containers (a class file, the Docker backend) and, for the instructor alone, in namespaces.

Who may see what (401 without a token, 404 for whatever is not the caller's, never 403), the cookie
from a personal link and its CSRF token, files looked up by name (no traversal, no symlink), terminals
only on the caller's own hosts and from the server's own pages, limits and validation, a lab run
through the API whose capture tshark reads, per-student variants that survive a restart, the class's
CSV and JUnit XML, and nothing left once the server has been stopped with Ctrl-C."""
from __future__ import annotations

import csv
import hashlib
import hmac
import http.client
import io
import json
import os
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from xml.etree import ElementTree as ET

import docker
import pytest
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from lab.backends.docker import images

from . import serving
from .conftest import EX2_FAST, STATE_ROOT, invoke, namespaces

pytestmark = pytest.mark.e2e

STUDENTS = ["alice", "bob", "carol"]  # carol never starts a lab: her test suite in the JUnit XML is empty
SECRET = "a secret of the api tests"  # with it alice's keepidle is 2 and bob's 3 (asserted below)
VARIANTS = {"exercise2": {"variants": {"keepidle": [2, 3]}}, "persist-timer": {}}
FAST = dict(s.split("=") for s in EX2_FAST)  # keepidle=1 keepintvl=1 keepcnt=5 user_timeout=2500
CHECKS = {"connection_established", "keepalive_probes", "keepalive_abort", "user_timeout_decides"}
LABEL = "tcplab.lab"


def own_keepidle(student: str) -> int:
    """A student's keepidle as docs/lab-server.md defines it, computed here without the server's code."""
    digest = hmac.new(SECRET.encode(), f"{student}/exercise2/keepidle".encode(), hashlib.sha256).digest()
    return 2 + int.from_bytes(digest[:8], "big") % 2


def two_probes(keepidle: int, keepcnt: int = 5) -> dict[str, int]:
    """exercise2's fast values around a student's own keepidle T: U = T + 1.5 s allows 2 probes (at T and T+1, the abort
    at T+2), and KEEPCNT 5 would give 5; with keepcnt=2 both give 2, and user_timeout_decides fails (the packets cannot
    show which decided)."""
    return {"keepintvl": int(FAST["keepintvl"]), "keepcnt": keepcnt, "user_timeout": keepidle * 1000 + 1500}


def one_line_naming(reply: serving.Reply, field: str) -> str:
    assert reply.status == 400, (field, reply.status, reply.body)
    message = reply.json()["error"]
    assert "\n" not in message and field in message, (field, message)
    return message


def hdr(reply: serving.Reply, name: str) -> str:
    return {k.lower(): v for k, v in reply.headers.items()}.get(name.lower(), "")


def lab_name(lab_id: str) -> str:
    return f"sv{lab_id}"


def results_folder(served: serving.Served, lab: dict[str, Any]) -> Path:
    return served.data / "results" / lab["student"] / f"{lab['exercise']}-{lab['id']}"


def raw_get(served: serving.Served, path: str, headers: dict[str, str], timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One GET that follows no redirect and reads a stream only up to its first event."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.status == 200 and hdrs.get("content-type", "").startswith("text/event-stream"):
            body = b""
            while not body.endswith(b"\n\n"):
                line = r.readline()
                assert line, "the event stream ended before its first event"
                body += line
            return r.status, hdrs, body
        return r.status, hdrs, r.read()
    finally:
        conn.close()


def sse_first(served: serving.Served, path: str, token: str) -> tuple[int, Any]:
    status, _, body = raw_get(served, path, {"Authorization": f"Bearer {token}"})
    if status != 200:
        return status, body
    assert body.startswith(b"data: "), body[:200]
    return status, json.loads(body[len(b"data: "):])


def ws_url(served: serving.Served, lab_id: str, host: str) -> str:
    return f"ws://127.0.0.1:{served.port}/ws/labs/{lab_id}/terminal/{host}"


def ws_refused(url: str, headers: dict[str, str]) -> int:
    """The HTTP status with which the server refused the websocket's handshake."""
    try:
        with connect(url, additional_headers=headers, open_timeout=10):
            pass
    except InvalidStatus as e:
        return e.response.status_code
    raise AssertionError(f"{url} opened with {sorted(headers)}")


def read_until(ws, needle: bytes | re.Pattern, timeout: float = 20) -> bytes:
    """The terminal's output until it holds `needle` (bytes, or a compiled pattern)."""
    def found(out: bytes) -> bool:
        return needle.search(out) is not None if isinstance(needle, re.Pattern) else needle in out

    out = b""
    deadline = time.monotonic() + timeout
    while not found(out):
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in the terminal: {out[-800:]!r}"
        try:
            m = ws.recv(timeout=left)
        except TimeoutError:
            continue
        out += m if isinstance(m, bytes) else m.encode()
    return out


def terminal_size(ws, want: str = "40 120", timeout: float = 10) -> str:
    """`stty size` in the shell, asked again until it says `want` (the resize reaches a shell in a container through
    `docker exec`, a moment later) or the time is up; the last answer."""
    deadline = time.monotonic() + timeout
    n, size = 0, ""
    while size != want and time.monotonic() < deadline:
        n += 1
        ws.send(json.dumps({"type": "input", "data": f"echo size-{n}: $(stty size)\r"}))
        answer = re.compile(rf"size-{n}: (\d+ \d+)".encode())  # the output; the line's echo reads size-N: $(stty size)
        size = answer.search(read_until(ws, answer)).group(1).decode()
        if size != want:
            time.sleep(0.2)
    return size


def leftovers(data: Path, labs: list[str]) -> list[str]:
    """Whatever these labs or this server's workers left: containers, namespaces, state folders, processes."""
    # The low-level list: no inspection of each container, which a container being removed meanwhile would fail.
    left = [f"container {c['Names']}" for c in docker.from_env().api.containers(all=True, filters={"label": LABEL})
            if (c.get("Labels") or {}).get(LABEL) in labs]
    for lab in labs:
        left += [f"namespace {n}" for n in namespaces(lab)]
        if (STATE_ROOT / lab).exists():
            left.append(f"state folder {STATE_ROOT / lab}")
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(str(data) in a or any(lab in a for lab in labs) for a in argv):
            left.append(f"process {proc.name}: {' '.join(argv)[:200]}")
    return left


def db_labs(data: Path) -> dict[str, dict[str, Any]]:
    """The server's own record of its labs, read from its database once it has stopped."""
    db = sqlite3.connect(str(data / "serve.db"))
    db.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in db.execute("SELECT id, state, error, verdict FROM labs")}
    finally:
        db.close()


# --- the class's server -----------------------------------------------------------------------------


@dataclass
class Box:
    """The module's server, replaced when a test restarts it."""
    tmp: Path
    class_file: Path
    s: serving.Served

    def tok(self, name: str) -> str:
        return self.s.tokens[name]

    def all_lab_names(self) -> list[str]:
        r = self.s.request("GET", "/api/labs", self.tok("instructor"))
        return [lab_name(lab["id"]) for lab in r.json()] if r.status == 200 else []


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    client = docker.from_env()
    client.ping()  # the suite's bootstrap starts a daemon; without one this fails, never skips
    images.ensure(client)  # built once here rather than inside the first lab's bring-up
    tmp = tmp_path_factory.mktemp("serve-api")
    class_file = serving.write_class(tmp / "class.yml", STUDENTS, VARIANTS, secret=SECRET)
    b = Box(tmp, class_file, serving.start(tmp, "--class", str(class_file), "--backend", "docker"))
    yield b
    if b.s.proc.poll() is None:  # the last test stops it and looks; this is for a run that did not get there
        labs = b.all_lab_names()
        b.s.stop()
        left = leftovers(b.s.data, labs)
        assert not left, left


@dataclass
class Run:
    created: serving.Reply
    seconds: float  # how long the POST took
    lab: dict[str, Any]  # as it ended


@pytest.fixture(scope="module")
def runs(box) -> dict[str, Run]:
    """alice's and bob's automated exercise2 labs, started at once through the API (Bearer, no CSRF token) and run
    to their end: alice's passes; bob's sets keepcnt to what the user timeout gives, so user_timeout_decides fails."""
    s = box.s
    started = {}
    for student, keepcnt in (("alice", 5), ("bob", 2)):
        t = time.monotonic()
        r = s.request("POST", "/api/labs", box.tok(student),
                      body={"exercise": "exercise2", "mode": "auto", "set": two_probes(own_keepidle(student), keepcnt)})
        started[student] = (r, time.monotonic() - t)
    out = {}
    for student, (r, seconds) in started.items():
        assert r.status == 201, (student, r.status, r.body)
        out[student] = Run(r, seconds, s.wait(box.tok(student), r.json()["id"], timeout=180))
    return out


def test_openapi_describes_the_labs(box):
    r = box.s.request("GET", "/openapi.json")
    assert r.status == 200
    spec = r.json()
    assert {"get", "post"} <= set(spec["paths"]["/api/labs"]), spec["paths"].get("/api/labs")
    assert "/api/labs/{id}/files/{name}" in spec["paths"]


def test_no_token_or_a_wrong_one_is_401_a_good_one_200(box):
    s = box.s
    assert s.request("GET", "/api/me").status == 401
    for header in (f"Bearer {box.tok('alice')}x", "Bearer ", f"Basic {box.tok('alice')}", "Bearer " + "a" * 500):
        r = s.request("GET", "/api/me", headers={"Authorization": header})
        assert r.status == 401, (header[:20], r.status)
        assert "error" in r.json()
    assert s.request("GET", "/api/labs", headers={"Cookie": "tcplab=not-a-token"}).status == 401
    r = s.request("GET", "/api/me", box.tok("alice"))
    assert r.status == 200
    assert r.json()["name"] == "alice" and r.json()["role"] == "student"
    assert s.request("GET", "/api/me", box.tok("instructor")).json()["role"] == "instructor"


def test_a_personal_link_sets_a_strict_httponly_cookie_and_moves_on_to_the_exercises(box):
    status, headers, body = raw_get(box.s, f"/join/{box.tok('alice')}", {})
    # A page that moves on by itself (a redirect after a cross-site click would lose the SameSite=Strict cookie).
    assert status == 200 and "url=/'" in body.decode() and "location" not in headers, (status, headers)
    cookie = headers["set-cookie"]
    assert cookie.split(";")[0].strip() == f"tcplab={box.tok('alice')}", cookie
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs, cookie
    status, headers, _ = raw_get(box.s, f"/join/{box.tok('alice')}x", {})
    assert status == 401 and "set-cookie" not in headers
    # The cookie alone is enough to read.
    r = box.s.request("GET", "/api/me", headers={"Cookie": f"tcplab={box.tok('alice')}"})
    assert r.status == 200 and r.json()["name"] == "alice"


def test_a_cookie_post_needs_the_csrf_token_a_bearer_one_does_not(box):
    s = box.s
    cookie = {"Cookie": f"tcplab={box.tok('alice')}"}
    csrf = s.request("GET", "/api/me", headers=cookie).json()["csrf"]
    bobs = s.request("GET", "/api/me", box.tok("bob")).json()["csrf"]
    assert csrf and csrf != bobs
    before = len(s.request("GET", "/api/labs", box.tok("alice")).json())
    body = {"exercise": "exercise2", "set": two_probes(own_keepidle("alice"))}
    for headers in (cookie, {**cookie, "X-CSRF-Token": "0" * len(csrf)}, {**cookie, "X-CSRF-Token": bobs}):
        r = s.request("POST", "/api/labs", body=body, headers=headers)
        assert r.status == 403, (r.status, r.body)
        assert "X-CSRF-Token" in r.json()["error"]
    assert len(s.request("GET", "/api/labs", box.tok("alice")).json()) == before, "a refused POST made a lab"
    r = s.request("POST", "/api/labs", body=body, headers={**cookie, "X-CSRF-Token": csrf})
    assert r.status == 201, r.body
    lab = r.json()
    assert lab["student"] == "alice"
    # A DELETE by cookie needs it too; this lab is not wanted beyond this test.
    assert s.request("DELETE", f"/api/labs/{lab['id']}", headers=cookie).status == 403
    assert s.request("GET", f"/api/labs/{lab['id']}", box.tok("alice")).status == 200
    assert s.request("DELETE", f"/api/labs/{lab['id']}", headers={**cookie, "X-CSRF-Token": csrf}).status == 200
    assert s.request("GET", f"/api/labs/{lab['id']}", box.tok("alice")).status == 404  # gone from her view
    gone = s.wait(box.tok("instructor"), lab["id"], timeout=60)  # the instructor still sees it, ended
    assert gone["state"] == "failed" and gone["deleted"] and gone["verdict"] is None, gone
    # With a Bearer header no CSRF token is needed (the labs of `runs` are made so): a bad body is then judged for what
    # it says (400), where by cookie alone it is refused at the door (403); a Bearer header beside the cookie governs.
    bad = {"exercise": "nope"}
    assert s.request("POST", "/api/labs", body=bad, headers=cookie).status == 403
    assert s.request("POST", "/api/labs", box.tok("alice"), body=bad).status == 400
    assert s.request("POST", "/api/labs", box.tok("alice"), body=bad, headers=cookie).status == 400


def test_bad_requests_are_400_with_one_line_naming_the_field(box):
    s = box.s
    alice, teacher = box.tok("alice"), box.tok("instructor")
    before = len(s.request("GET", "/api/labs", teacher).json())
    ok = two_probes(own_keepidle("alice"))
    ex2 = {"exercise": "exercise2"}
    cases = [  # (who, body, the field its message names)
        (alice, {"exercise": "exercise9"}, "exercise"),
        (alice, {"exercise": ["exercise2"]}, "exercise"),
        (alice, {**ex2, "mode": "watch"}, "mode"),
        (alice, {**ex2, "colour": "red"}, "colour"),
        (alice, {**ex2, "set": [1, 2]}, "set"),
        (alice, {**ex2, "set": {**ok, "bogus": 1}}, "bogus"),
        (alice, {**ex2, "set": {**ok, "keepintvl": 0}}, "keepintvl"),  # below its minimum
        (teacher, {**ex2, "set": {**FAST, "keepidle": 0}}, "keepidle"),  # the instructor has no variant to keep
        (alice, {**ex2, "set": {**ok, "keepcnt": 128}}, "keepcnt"),  # above its maximum
        (alice, {**ex2, "set": {**ok, "keepintvl": [1, 2]}}, "keepintvl"),
        (alice, {**ex2, "set": {**ok, "keepintvl": {"a": 1}}}, "keepintvl"),
        (alice, {**ex2, "set": {**ok, "keepintvl": True}}, "keepintvl"),
        (alice, {**ex2, "set": {**ok, "keepintvl": "abc"}}, "keepintvl"),
        (teacher, {"exercise": "persist-timer", "set": {"duration": "nan"}}, "duration"),  # no bound holds for NaN
        (teacher, {"exercise": "persist-timer", "set": {"duration": "inf"}}, "duration"),
    ]
    for who, body, field in cases:
        one_line_naming(s.request("POST", "/api/labs", who, body=body), field)
    sweep = one_line_naming(s.request("POST", "/api/labs", alice, body={**ex2, "set": {**ok, "keepintvl": "1,2"}}), "keepintvl")
    assert "one value" in sweep, sweep
    # keepidle is alice's own value in this class: she cannot set it, even to what it is.
    mine = one_line_naming(s.request("POST", "/api/labs", alice, body={**ex2, "set": {**ok, "keepidle": own_keepidle("alice")}}),
                           "keepidle")
    assert "your own value" in mine, mine
    for raw in (b"not json", b"[1, 2]", b'"exercise2"', b'{"exercise": "persist-timer", "set": {"duration": NaN}}'):
        r = s.request("POST", "/api/labs", alice, raw=raw)
        assert r.status == 400 and "\n" not in r.json()["error"], (raw, r.status, r.body)
    assert len(s.request("GET", "/api/labs", teacher).json()) == before, "a refused request made a lab"


def test_a_body_over_16_kib_is_413(box):
    s = box.s
    big = json.dumps({"exercise": "exercise2", "set": {"keepintvl": "1" * (17 * 1024)}}).encode()
    r = s.request("POST", "/api/labs", box.tok("alice"), raw=big)
    assert r.status == 413, (r.status, r.body[:200])
    # The same without a Content-Length (chunked): counted as it comes.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        conn.request("POST", "/api/labs", body=iter([big[:8000], big[8000:]]), encode_chunked=True,
                     headers={"Authorization": f"Bearer {box.tok('alice')}", "Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 413, (reply.status, reply.read()[:200])
    finally:
        conn.close()
    # Just under the limit is read (and refused for what it says, not for its size).
    padded = json.dumps({"exercise": "exercise2", "pad": " " * (15 * 1024)}).encode()
    one_line_naming(s.request("POST", "/api/labs", box.tok("alice"), raw=padded), "pad")


@pytest.fixture
def handson(box):
    """alice's hands-on exercise2 lab, running (its hosts in containers of hers)."""
    r = box.s.request("POST", "/api/labs", box.tok("alice"), body={"exercise": "exercise2", "mode": "hands-on",
                                                                  "set": two_probes(own_keepidle("alice"))})
    assert r.status == 201, r.body
    lab = box.s.wait(box.tok("alice"), r.json()["id"], states=("running", "done", "failed"), timeout=180)
    assert lab["state"] == "running", (lab["state"], lab["error"])
    yield lab
    # Ended by the test (the instructor's stop); ended here in case it failed first.
    if box.s.lab(box.tok("instructor"), lab["id"])["state"] == "running":
        box.s.request("DELETE", f"/api/labs/{lab['id']}", box.tok("instructor"))


def test_terminals_open_only_on_the_callers_own_hosts_and_from_the_servers_pages(box, handson):
    s, lab = box.s, handson
    assert {"source", "dest"} <= set(lab["hosts"]), lab["hosts"]
    url = ws_url(s, lab["id"], "source")
    alice = {"Authorization": f"Bearer {box.tok('alice')}"}
    assert ws_refused(url, {"Authorization": f"Bearer {box.tok('bob')}"}) == 404
    assert ws_refused(url, {}) == 401
    assert ws_refused(url, {"Authorization": f"Bearer {box.tok('alice')}x"}) == 401
    assert ws_refused(url, {**alice, "Origin": "http://evil.example"}) == 403
    assert ws_refused(url, {**alice, "Origin": f"http://127.0.0.1:{s.port}.evil.example"}) == 403
    assert ws_refused(url, {"Cookie": f"tcplab={box.tok('alice')}", "Origin": "https://evil.example"}) == 403
    assert ws_refused(ws_url(s, lab["id"], "nohost"), alice) == 404
    assert ws_refused(ws_url(s, "000000", "source"), alice) == 404
    # The owner's, from the server's own page (its Origin), is a shell on source.
    with connect(url, additional_headers={**alice, "Origin": f"http://127.0.0.1:{s.port}"}, open_timeout=10) as owner:
        owner.send(json.dumps({"type": "input", "data": "echo hi-$((6*7))\r"}))
        read_until(owner, b"hi-42")  # the shell ran it (the echo of the line typed reads hi-$((6*7)))
        owner.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        assert terminal_size(owner) == "40 120"  # as the page asked (the shell's own terminal is resized as it comes)
        # The instructor watches: the screen so far, then what alice types; what the instructor types goes nowhere.
        with connect(url, additional_headers={"Authorization": f"Bearer {box.tok('instructor')}"}, open_timeout=10) as watcher:
            read_until(watcher, b"hi-42", timeout=10)
            watcher.send(json.dumps({"type": "input", "data": "echo watcher-$((5*5))\r"}))
            time.sleep(0.5)
            owner.send(json.dumps({"type": "input", "data": "echo owner-$((4*4))\r"}))
            seen = read_until(owner, b"owner-16")
            assert b"owner-16" in read_until(watcher, b"owner-16")
            assert b"watcher" not in seen, seen[-400:]
    assert s.lab(box.tok("instructor"), lab["id"])["last_input"], "a keystroke was not noted"
    # `exit` ends the shell (the server closes the socket, 1000); the next connection is a new shell on the same host.
    with connect(url, additional_headers=alice, open_timeout=10) as owner:
        owner.send(json.dumps({"type": "input", "data": "exit\r"}))
        with pytest.raises(ConnectionClosedOK):
            read_until(owner, b"never printed", timeout=10)
    with connect(url, additional_headers=alice, open_timeout=10) as owner:
        owner.send(json.dumps({"type": "input", "data": "echo new-$((3*3)) $$\r"}))
        read_until(owner, b"new-9")
    # The instructor stops it: a hands-on lab is finished and judged (its end, meanwhile, is awaited by the CSV test).
    r = s.request("POST", f"/api/labs/{lab['id']}/stop", box.tok("instructor"))
    assert r.status == 202, r.body


def test_a_lab_through_the_api_passes_and_its_capture_opens_in_tshark(box, runs, tmp_path):
    s, run = box.s, runs["alice"]
    assert run.created.status == 201  # by Bearer, without a CSRF token
    created = run.created.json()
    # Not awaited: queued, or just handed to its worker when a start was free (the supervisor launches at once then).
    assert created["state"] in ("queued", "starting") and created["student"] == "alice" and created["mode"] == "auto", created
    assert created["verdict"] is None and created["ended"] is None
    assert run.seconds < 3, f"POST /api/labs took {run.seconds:.1f} s: it must queue the lab, not wait for it"
    lab = run.lab
    assert lab["state"] == "done", (lab["state"], lab["error"], lab["events"][-5:])
    assert lab["verdict"]["passed"] is True, lab["verdict"]
    assert {c["name"] for c in lab["verdict"]["checks"]} == CHECKS and all(c["passed"] for c in lab["verdict"]["checks"])
    assert "observer.pcap" in lab["files"] and "report.json" in lab["files"], lab["files"]
    assert "keep_alive" in lab["filters"]["observer.pcap"]

    r = s.request("GET", f"/api/labs/{lab['id']}/files/observer.pcap", box.tok("alice"))
    assert r.status == 200 and hdr(r, "content-type") == "application/vnd.tcpdump.pcap", (r.status, r.headers)
    assert "attachment" in hdr(r, "content-disposition")
    assert int(hdr(r, "content-length")) == len(r.body) == (results_folder(s, lab) / "observer.pcap").stat().st_size
    pcap = tmp_path / "observer.pcap"
    pcap.write_bytes(r.body)
    shark = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp.analysis.keep_alive", "-T", "fields",
                            "-e", "frame.time_relative", "-e", "tcp.dstport"], capture_output=True, text=True, timeout=60)
    assert shark.returncode == 0, shark.stderr
    probes = [line.split("\t") for line in shark.stdout.splitlines() if line.strip()]
    # U = T + 1.5 s: probes at T and T+1, then the abort; every probe goes from the client to the server's port.
    assert len(probes) == 2, shark.stdout
    assert all(port == "8990" for _, port in probes), shark.stdout
    gap = float(probes[1][0]) - float(probes[0][0])
    assert 0.8 < gap < 1.3, f"probes {gap:.3f} s apart, KEEPINTVL is 1 s"

    r = s.request("GET", f"/api/labs/{lab['id']}/files/report.json", box.tok("alice"))
    assert r.status == 200 and hdr(r, "content-type").startswith("application/json")
    report = r.json()
    assert report["checks"] == lab["verdict"]["checks"] and report["passed"] is lab["verdict"]["passed"]


def test_variants_are_each_students_own_and_the_lab_runs_with_them(box, runs):
    s = box.s
    assert own_keepidle("alice") != own_keepidle("bob"), "the test's secret must give them different values"
    for student in ("alice", "bob"):
        seen = []
        for _ in range(3):
            r = s.request("GET", "/api/exercises", box.tok(student))
            assert r.status == 200
            (ex,) = [e for e in r.json() if e["name"] == "exercise2"]
            seen.append(ex["variant"])
        assert seen == [{"keepidle": own_keepidle(student)}] * 3, (student, seen)
        assert "<h1" in ex["readme_html"] and ex["parameters"]["keepidle"]["min"] == 1
        lab = runs[student].lab
        assert lab["variant"] == {"keepidle": own_keepidle(student)}
        assert lab["set"]["keepidle"] == own_keepidle(student) and lab["set"]["user_timeout"] == own_keepidle(student) * 1000 + 1500
        manifest = s.request("GET", f"/api/labs/{lab['id']}/files/manifest.json", box.tok(student)).json()
        assert manifest["parameters"]["keepidle"] == own_keepidle(student), manifest["parameters"]
    teacher = s.request("GET", "/api/exercises", box.tok("instructor")).json()
    assert [e["variant"] for e in teacher if e["name"] == "exercise2"] == [{}]
    # bob's lab ran with his numbers: keepcnt equal to what his user timeout gives, so the check cannot tell which decided.
    bobs = runs["bob"].lab
    assert bobs["state"] == "done" and bobs["verdict"]["passed"] is False, (bobs["state"], bobs["error"], bobs["verdict"])
    failed = [c["name"] for c in bobs["verdict"]["checks"] if not c["passed"]]
    assert failed == ["user_timeout_decides"], bobs["verdict"]


def test_another_students_lab_is_404_and_the_instructor_sees_every_lab(box, runs):
    s = box.s
    alices, bobs = runs["alice"].lab, runs["bob"].lab
    bob = box.tok("bob")
    missing = s.request("GET", "/api/labs/000000", bob)
    assert missing.status == 404
    for method, path in (("GET", f"/api/labs/{alices['id']}"), ("GET", f"/api/labs/{alices['id']}/files/report.json"),
                         ("GET", f"/api/labs/{alices['id']}/files/observer.pcap"), ("DELETE", f"/api/labs/{alices['id']}"),
                         ("POST", f"/api/labs/{alices['id']}/retry"), ("POST", f"/api/labs/{alices['id']}/finish")):
        r = s.request(method, path, bob)
        assert r.status == 404, (method, path, r.status, r.body[:200])
        assert set(r.json()) == {"error"}
    # Told apart from a lab that does not exist by nothing but the id it names.
    assert s.request("GET", f"/api/labs/{alices['id']}", bob).json()["error"].replace(alices["id"], "X") == \
        missing.json()["error"].replace("000000", "X")
    assert sse_first(s, f"/api/labs/{alices['id']}/stream", bob)[0] == 404
    status, event = sse_first(s, f"/api/labs/{alices['id']}/stream", box.tok("alice"))
    assert status == 200 and event["id"] == alices["id"] and event["state"] == "done"
    # bob's DELETE left it alone.
    still = s.lab(box.tok("alice"), alices["id"])
    assert not still["deleted"] and still["state"] == "done"

    assert {l["id"] for l in s.request("GET", "/api/labs", bob).json()} == {bobs["id"]}
    assert alices["id"] not in {l["id"] for l in s.request("GET", "/api/labs", bob).json()}
    every = s.request("GET", "/api/labs", box.tok("instructor")).json()
    assert {alices["id"], bobs["id"]} <= {l["id"] for l in every} and {"alice", "bob"} <= {l["student"] for l in every}
    for lab in (alices, bobs):
        assert s.request("GET", f"/api/labs/{lab['id']}", box.tok("instructor")).status == 200
        assert s.request("GET", f"/api/labs/{lab['id']}/files/report.json", box.tok("instructor")).status == 200
    status, event = sse_first(s, "/api/class/stream", box.tok("instructor"))
    assert status == 200 and {alices["id"], bobs["id"]} <= {l["id"] for l in event}


def test_a_student_gets_404_from_the_instructors_routes(box, runs):
    s, alice = box.s, box.tok("alice")
    own = runs["alice"].lab["id"]
    for method, path in (("GET", "/api/class.csv"), ("GET", "/api/class.xml"), ("POST", f"/api/labs/{own}/stop"),
                         ("POST", f"/api/labs/{runs['bob'].lab['id']}/stop")):
        r = s.request(method, path, alice)
        assert r.status == 404, (method, path, r.status)
    assert sse_first(s, "/api/class/stream", alice)[0] == 404
    assert s.request("GET", "/api/class.csv", box.tok("instructor")).status == 200


def test_files_are_looked_up_by_name_no_traversal_no_symlink(box, runs):
    s, alice = box.s, box.tok("alice")
    lab = runs["alice"].lab
    folder = results_folder(s, lab)
    assert (folder / "report.json").is_file(), f"not the lab's results folder: {folder}"
    # Bait for a path join: a file where ../manifest.json would land, a symlink out and one within.
    (folder.parent / "manifest.json").write_text('{"planted": "PLANTED-BY-THE-TEST"}')
    (folder / "evil").symlink_to("/etc/passwd")
    (folder / "alias.json").symlink_to(folder / "report.json")
    base = f"/api/labs/{lab['id']}/files/"
    attempts = ["../manifest.json", "..%2fmanifest.json", "%2e%2e%2fmanifest.json", "%2E%2E%2Fmanifest.json",
                "..%2f..%2fetc%2fpasswd", "..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "%2fetc%2fpasswd", "/etc/passwd",
                "..", "%2e%2e", ".", "..%5cmanifest.json", "report.json%00", "evil", "alias.json",
                "%2e%2e%2f" + lab["exercise"] + "-" + lab["id"] + "%2freport.json"]
    for name in attempts:
        for who in (alice, box.tok("instructor")):
            r = s.request("GET", base + name, who)
            assert r.status == 404, (name, r.status, r.body[:200])
            assert b"root:" not in r.body and b"PLANTED" not in r.body
    assert s.request("GET", base + "report.json", alice).status == 200
    listed = s.lab(alice, lab["id"])["files"]
    assert "evil" not in listed and "alias.json" not in listed and "report.json" in listed


def test_the_class_results_as_csv_and_junit_xml(box, runs):
    s, teacher = box.s, box.tok("instructor")
    deadline = time.monotonic() + 120
    while any(l["state"] not in ("done", "failed") for l in s.request("GET", "/api/labs", teacher).json()):
        assert time.monotonic() < deadline, s.request("GET", "/api/labs", teacher).json()
        time.sleep(0.3)
    labs = {l["id"]: l for l in s.request("GET", "/api/labs", teacher).json()}
    alices, bobs = runs["alice"].lab, runs["bob"].lab

    r = s.request("GET", "/api/class.csv", teacher)
    assert r.status == 200 and hdr(r, "content-type").startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert sorted(row["lab"] for row in rows) == sorted(labs), rows
    by_lab = {row["lab"]: row for row in rows}
    assert by_lab[alices["id"]]["passed"] == "yes" and by_lab[alices["id"]]["checks_passed"] == "4" and by_lab[alices["id"]]["checks"] == "4"
    assert by_lab[bobs["id"]]["passed"] == "no" and by_lab[bobs["id"]]["checks_passed"] == "3"
    for lab_id, row in by_lab.items():
        assert row["student"] == labs[lab_id]["student"] and row["state"] == labs[lab_id]["state"]
        verdict = labs[lab_id]["verdict"]
        assert row["passed"] == ("" if verdict is None else "yes" if verdict["passed"] else "no"), (row, verdict)

    r = s.request("GET", "/api/class.xml", teacher)
    assert r.status == 200
    root = ET.fromstring(r.body)
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert sorted(suites) == sorted(STUDENTS), sorted(suites)
    assert suites["carol"].findall("testcase") == []
    for student, lab, failing in (("alice", alices, set()), ("bob", bobs, {"user_timeout_decides"})):
        cases = [c for c in suites[student].findall("testcase") if c.get("classname", "").endswith(lab["id"])]
        assert sorted(c.get("name") for c in cases) == sorted(CHECKS), [c.get("name") for c in cases]
        assert {c.get("name") for c in cases if c.find("failure") is not None} == failing
    for suite in suites.values():
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)


def test_variants_tokens_and_verdicts_survive_a_restart(box, runs):
    s = box.s
    before = {name: s.request("GET", "/api/exercises", box.tok(name)).json() for name in ("alice", "bob")}
    labs_before = s.request("GET", "/api/labs", box.tok("instructor")).json()
    tokens = dict(s.tokens)
    assert s.stop() == 0, s.log_text()[-2000:]
    assert "served for" in s.log_text()
    box.s = serving.start(box.tmp, "--class", str(box.class_file), "--backend", "docker", data=s.data)
    s = box.s
    assert s.tokens == tokens, "the personal links changed with a restart"
    for name in ("alice", "bob"):
        after = s.request("GET", "/api/exercises", box.tok(name)).json()
        assert after == before[name]
        assert [e["variant"] for e in after if e["name"] == "exercise2"] == [{"keepidle": own_keepidle(name)}]
    labs_after = {l["id"]: l for l in s.request("GET", "/api/labs", box.tok("instructor")).json()}
    for lab in labs_before:
        assert labs_after[lab["id"]]["state"] == lab["state"] and labs_after[lab["id"]]["verdict"] == lab["verdict"]
    assert s.lab(box.tok("alice"), runs["alice"].lab["id"])["verdict"]["passed"] is True


def test_ctrl_c_ends_every_lab_and_leaves_nothing(box):
    """The last test of the class's server: a lab still starting when Ctrl-C comes is ended, and nothing is left."""
    s = box.s
    r = s.request("POST", "/api/labs", box.tok("carol"), body={"exercise": "exercise2", "set": two_probes(own_keepidle("carol"))})
    assert r.status == 201
    lab_id = r.json()["id"]
    s.wait(box.tok("carol"), lab_id, states=("starting", "running", "done", "failed"), timeout=30)
    labs = box.all_lab_names()
    assert s.stop() == 0, s.log_text()[-2000:]
    left = leftovers(s.data, labs)
    assert not left, left
    ended = db_labs(s.data)
    assert all(l["state"] in ("done", "failed") for l in ended.values()), ended
    assert ended[lab_id]["state"] in ("done", "failed")


# --- the instructor alone, on namespaces, with --max-labs 2 --------------------------------------------


def test_max_labs_refuses_a_third_lab_with_a_clear_message(tmp_path):
    s = serving.start(tmp_path, "--backend", "netns", "--max-labs", "2")
    labs: list[str] = []
    try:
        teacher = s.tokens["instructor"]
        assert set(s.tokens) == {"instructor"}
        me = s.request("GET", "/api/me", teacher).json()
        assert me["name"] == "instructor" and me["role"] == "instructor"
        offered = s.request("GET", "/api/exercises", teacher).json()
        assert "exercise2" in [e["name"] for e in offered] and all(e["variant"] == {} for e in offered)
        body = {"exercise": "exercise2", "mode": "auto", "set": FAST}
        first, second = (s.request("POST", "/api/labs", teacher, body=body) for _ in range(2))
        assert first.status == 201 and second.status == 201, (first.body, second.body)
        labs += [lab_name(first.json()["id"]), lab_name(second.json()["id"])]
        third = s.request("POST", "/api/labs", teacher, body=body)
        assert third.status == 503, (third.status, third.body)
        message = third.json()["error"]
        assert "full" in message and "--max-labs 2" in message and "\n" not in message, message
        # Once one has ended, there is room again.
        done = s.wait(teacher, first.json()["id"])
        assert done["state"] == "done" and done["verdict"]["passed"] is True, (done["error"], done["verdict"])
        assert {c["name"] for c in done["verdict"]["checks"]} == CHECKS
        s.wait(teacher, second.json()["id"])
        again = s.request("POST", "/api/labs", teacher, body=body)
        assert again.status == 201, again.body
        labs.append(lab_name(again.json()["id"]))
    finally:
        if s.proc.poll() is None:
            labs += [lab_name(l["id"]) for l in s.request("GET", "/api/labs", s.tokens["instructor"]).json()]
        rc = s.stop()
    assert rc == 0, s.log_text()[-2000:]
    labs = sorted(set(labs))
    left = leftovers(s.data, labs)
    assert not left, left
    assert all(l["state"] in ("done", "failed") for l in db_labs(s.data).values())


def test_netns_with_a_class_is_refused_with_the_reason(tmp_path):
    class_file = serving.write_class(tmp_path / "class.yml", ["alice"])
    r = invoke("serve", "--listen", f"127.0.0.1:{serving.free_port()}", "--class", str(class_file), "--backend", "netns",
               "--data", str(tmp_path / "data"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "netns" in r.stderr and "--class" in r.stderr and "docker" in r.stderr, r.stderr
    assert not (tmp_path / "data" / "tokens.json").exists()
