"""The lab server with a class: thirty students starting their labs within a second, and the server
killed with SIGKILL mid-class and started again. Real Docker labs, real kernel TCP, the real server."""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from .conftest import EX2_FAST, REPO, invoke, invoke_argv, pid_alive
from .serving import free_port, start, write_class

FAST = {k: int(v) for k, v in (s.split("=") for s in EX2_FAST)}


def lab_containers(prefix: str = "tcplab-sv") -> list[str]:
    return [c.name for c in docker.from_env().containers.list(all=True) if c.name.startswith(prefix)]


def test_thirty_students_start_at_once_and_all_pass(tmp_path: Path):
    students = [f"s{i:02d}" for i in range(30)]
    served = start(tmp_path, "--class", str(write_class(tmp_path / "class.yml", students)), "--backend", "docker")
    try:
        def post(student: str):
            return served.request("POST", "/api/labs", served.tokens[student], {"exercise": "exercise2", "mode": "auto", "set": FAST})

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            replies = list(pool.map(post, students))
        posted_in = time.monotonic() - t0
        assert posted_in < 5, f"30 POSTs took {posted_in:.1f} s: a POST must queue the lab, not wait for it"
        assert [r.status for r in replies] == [201] * 30, [r.body for r in replies if r.status != 201]
        labs = [r.json() for r in replies]
        # Queued (or starting already, where a start was free); each waiting student sees a place in the queue.
        assert all(lab["state"] in ("queued", "starting") for lab in labs)
        assert max(lab["queue_position"] or 0 for lab in labs) >= 20
        done = [served.wait(served.tokens[s], lab["id"], timeout=300) for s, lab in zip(students, labs)]
        failed = [(lab["student"], lab["state"], lab["error"], [c["name"] for c in (lab["verdict"] or {}).get("checks", []) if not c["passed"]])
                  for lab in done if lab["state"] != "done" or not lab["verdict"]["passed"]]
        assert failed == [], failed
        took = max(lab["ended"] for lab in done) - min(lab["created"] for lab in done)
        print(f"30 labs: every verdict {took:.1f} s after the first POST")
        # A student sees their own lab only; the instructor sees all thirty.
        assert [lab["id"] for lab in served.request("GET", "/api/labs", served.tokens["s07"]).json()] == [labs[7]["id"]]
        assert len(served.request("GET", "/api/labs", served.tokens["instructor"]).json()) == 30
    finally:
        assert served.stop() == 0, served.log_text()[-2000:]
    assert lab_containers() == []


def _running(served, token: str, lab_id: str, timeout: float = 120) -> dict:
    lab = served.wait(token, lab_id, states=("running", "done", "failed"), timeout=timeout)
    assert lab["state"] == "running", lab
    return lab


def test_sigkill_of_the_server_then_serve_again(tmp_path: Path):
    cls = write_class(tmp_path / "class.yml", ["ann", "ben", "cat", "dan"])
    served = start(tmp_path, "--class", str(cls), "--backend", "docker")
    tok = served.tokens
    # A verdict given before the kill.
    first = served.request("POST", "/api/labs", tok["ann"], {"exercise": "exercise2", "set": FAST}).json()
    first = served.wait(tok["ann"], first["id"])
    assert first["state"] == "done" and first["verdict"]["passed"]
    # A hands-on lab, an automated one still running (long timers) and one whose worker will die with the server.
    hands = served.request("POST", "/api/labs", tok["ben"], {"exercise": "exercise2", "mode": "hands-on", "set": FAST}).json()
    slow = served.request("POST", "/api/labs", tok["cat"], {"exercise": "exercise2", "set": {**FAST, "keepidle": 4}}).json()
    doomed = served.request("POST", "/api/labs", tok["dan"], {"exercise": "exercise2", "set": {**FAST, "keepidle": 20, "user_timeout": 30000}}).json()
    _running(served, tok["ben"], hands["id"])
    _running(served, tok["cat"], slow["id"])
    _running(served, tok["dan"], doomed["id"])
    db = served.data / "serve.db"
    workers = {row["id"]: row["worker_pid"] for row in _rows(db)}
    served.proc.kill()
    served.proc.wait(10)
    # The server is gone; the labs' workers live on (each in a session of its own). Two of them die too: an
    # automated lab's (its lab goes with it) and the hands-on lab's (its keeper, which owns the lab, lives on).
    assert all(pid_alive(workers[i]) for i in (hands["id"], slow["id"], doomed["id"]))
    os.kill(workers[doomed["id"]], signal.SIGKILL)
    os.kill(workers[hands["id"]], signal.SIGKILL)
    time.sleep(0.5)
    assert any(c.startswith(f"tcplab-sv{doomed['id']}-") for c in lab_containers()), "the doomed lab's containers should still be there"

    again = start(tmp_path, "--class", str(cls), "--backend", "docker", data=served.data)
    try:
        assert again.tokens == tok, "the personal links stay good across a restart"
        # The verdict given before is there.
        assert again.lab(tok["ann"], first["id"])["verdict"] == first["verdict"]
        # The lab whose worker died is torn down and failed, with the reason.
        lost = again.wait(tok["dan"], doomed["id"], timeout=30)
        assert lost["state"] == "failed" and "server stopped" in lost["error"], lost
        # The automated run whose worker lived on is watched to its verdict.
        finished = again.wait(tok["cat"], slow["id"])
        assert finished["state"] == "done" and finished["verdict"]["passed"], finished
        # The hands-on lab is re-attached through its keeper: still running, and finished and judged on request.
        reattached = again.lab(tok["ben"], hands["id"])
        assert reattached["state"] == "running" and any("re-attached" in e["text"] for e in reattached["events"]), reattached
        r = again.request("POST", f"/api/labs/{hands['id']}/finish", tok["ben"])
        assert r.status == 202, r.body
        judged = again.wait(tok["ben"], hands["id"])
        assert judged["state"] == "done" and judged["verdict"] is not None and "report.json" in judged["files"]
        deadline = time.monotonic() + 30
        while any(c.startswith(f"tcplab-sv{doomed['id']}-") for c in lab_containers()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not any(c.startswith(f"tcplab-sv{doomed['id']}-") for c in lab_containers())
    finally:
        assert again.stop() == 0
    assert lab_containers() == []
    # `invoke down --all` finds nothing more to remove.
    r = invoke("down", "--all")
    assert r.returncode == 0 and "removed" not in r.stdout, r.stdout


def _rows(db: Path) -> list[dict]:
    import sqlite3

    con = sqlite3.connect(str(db))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM labs")]
    finally:
        con.close()


def test_an_idle_hands_on_lab_is_finished_and_judged_and_a_stopped_one_started_again(tmp_path: Path):
    served = start(tmp_path, "--backend", "netns", "--idle-minutes", "0.1")
    tok = served.tokens["instructor"]
    try:
        lab = served.request("POST", "/api/labs", tok, {"exercise": "exercise2", "mode": "hands-on", "set": FAST}).json()
        _running(served, tok, lab["id"])
        t0 = time.monotonic()
        judged = served.wait(tok, lab["id"], timeout=60)
        waited = time.monotonic() - t0
        assert judged["state"] == "done" and judged["verdict"] is not None, judged
        assert not judged["verdict"]["passed"]  # nobody did anything: judged all the same, and kept
        assert 4 < waited < 30, waited
        assert any("no keystroke and no packet" in e["text"] for e in judged["events"]), judged["events"]
        assert "report.json" in judged["files"]
        assert (served.data / "results" / "instructor" / f"exercise2-{lab['id']}" / "report.json").exists()
        # A lab that ended without a verdict (stopped here) is one click from a new start with the same values.
        auto = served.request("POST", "/api/labs", tok, {"exercise": "exercise2", "set": {**FAST, "keepidle": 5}}).json()
        _running(served, tok, auto["id"])
        assert served.request("POST", f"/api/labs/{auto['id']}/stop", tok).status == 202
        stopped = served.wait(tok, auto["id"])
        assert stopped["state"] == "failed" and stopped["error"] == "stopped by the instructor", stopped
        r = served.request("POST", f"/api/labs/{auto['id']}/retry", tok)
        assert r.status == 201 and r.json()["retry_of"] == auto["id"] and r.json()["set"]["keepidle"] == 5, r.body
        again = served.wait(tok, r.json()["id"])
        assert again["state"] == "done" and again["verdict"]["passed"], again
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize("args, said", [
    (["--backend", "netns", "--class", "CLASS"], "--backend netns gives every shell root on this machine"),
    (["--class", "BADCLASS"], "students[1]: 'Bob'"),
    (["--class", "BADVARIANT"], "exercises.exercise2.variants.keepidle: [9, 3]"),
    (["--listen", "somewhere"], "--listen somewhere: write ADDRESS:PORT"),
    (["--max-labs", "0"], "--max-labs and --max-starting take 1 or more"),
])
def test_bad_serve_input_is_one_line_and_nothing_starts(tmp_path: Path, args: list[str], said: str):
    good = write_class(tmp_path / "class.yml", ["ann"])
    bad = tmp_path / "bad.yml"
    bad.write_text("class: x\nstudents: [ann, Bob]\n")
    badvar = tmp_path / "badvar.yml"
    badvar.write_text("class: x\nstudents: [ann]\nexercises:\n  exercise2:\n    variants: {keepidle: [9, 3]}\n")
    args = [{"CLASS": str(good), "BADCLASS": str(bad), "BADVARIANT": str(badvar)}.get(a, a) for a in args]
    listen = [] if "--listen" in args else ["--listen", "127.0.0.1:1"]
    r = invoke("serve", "--data", str(tmp_path / "data"), *listen, *args, timeout=60)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and said in lines[0] and "Traceback" not in r.stderr, (r.returncode, lines)


def test_tls_with_a_certificate_of_ones_own(tmp_path: Path):
    import ssl
    import urllib.request

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(invoke_argv("serve", "--backend", "netns", "--listen", f"127.0.0.1:{port}", "--data", str(data),
                                        "--certfile", str(cert), "--keyfile", str(key)),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 60
        while True:
            try:
                token = json.loads((data / "tokens.json").read_text())["instructor"]
                req = urllib.request.Request(f"https://127.0.0.1:{port}/api/me", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(req, context=context, timeout=5) as r:
                    assert json.loads(r.read())["role"] == "instructor"
                break
            except (OSError, ValueError, KeyError):
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "no answer"
                time.sleep(0.3)
        # Plain HTTP on the TLS port is no way in.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/me", timeout=5)
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert f"https://127.0.0.1:{port}/join/" in out and "without TLS" not in out
