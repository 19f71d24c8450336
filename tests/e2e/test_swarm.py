"""Labs on a real Docker Swarm of two nodes on this machine (`invoke swarm up`: two Docker daemons of
tcplab's own, each in namespaces of its own, joined as manager and worker; the machine's own daemon is
never put in Swarm mode): `up --engine swarm`, a class of forty through the lab server spread over
both nodes, `down` after a SIGKILL, and a worker stopped mid-lab."""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time
from pathlib import Path

import docker
import pytest

from lab.swarm import sandbox

from .conftest import EX2_FAST, REPO, invoke, invoke_argv
from .serving import start, write_class

NAME = "e2e"
FAST = {k: int(v) for k, v in (s.split("=") for s in EX2_FAST)}


@pytest.fixture(scope="module")
def swarm():
    r = invoke("swarm", "up", "--name", NAME, "--nodes", "2", timeout=900)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        nodes = sandbox.load(NAME)
        host = nodes[0].url
        assert f"export DOCKER_HOST={host}" in " ".join(r.stdout.split()).replace("DOCKER_HOST= ", "DOCKER_HOST=")
        yield {"env": {**os.environ, "DOCKER_HOST": host}, "nodes": nodes, "client": docker.DockerClient(base_url=host)}
    finally:
        gone = invoke("swarm", "down", "--name", NAME, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not (sandbox.RUN_ROOT / NAME).exists() and not (sandbox.DATA_ROOT / NAME).exists()
        # No daemon, containerd or shim of it left, the stopped worker's included.
        assert sandbox.naming_processes(sandbox.RUN_ROOT / NAME) == []
        assert not [n for n in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split() if n.startswith(f"tcplabsw-{NAME}-")]
        assert "no labs on this machine" in invoke("status").stdout  # a sandbox is not a lab, up or gone
        # The machine's own daemon was never part of it.
        assert docker.DockerClient(base_url=sandbox.OWN_DOCKER).info()["Swarm"]["LocalNodeState"] == "inactive"


def hostnames(swarm) -> set[str]:
    return {n.hostname for n in swarm["nodes"]}


def leftovers(swarm) -> list[str]:
    """tcplab's services on the Swarm, and lab containers on any node whose daemon still runs."""
    found = [s.name for s in swarm["client"].services.list(filters={"label": "tcplab.lab"})]
    for n in swarm["nodes"]:
        if sandbox.running(n):
            found += [c.name for c in docker.DockerClient(base_url=n.url).containers.list(all=True, filters={"label": "tcplab.job"})]
    return found


def wait_no_leftovers(swarm, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while leftovers(swarm) and time.monotonic() < deadline:
        time.sleep(1)  # a removed service's containers go a moment later
    assert leftovers(swarm) == []


def up_swarm(swarm, lab: str, folder: Path, *sets: str, timeout: float = 300) -> subprocess.CompletedProcess:
    args = ["up", "exercise2", "--engine", "swarm", "--lab", lab, "--results", str(folder)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(invoke_argv(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=swarm["env"])


def test_up_on_the_swarm_passes_and_its_folder_says_where_it_ran(swarm, tmp_path):
    r = up_swarm(swarm, "e2esw", tmp_path / "r", *EX2_FAST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED 4/4 checks" in r.stdout and "placing lab e2esw on the Swarm" in " ".join(r.stdout.split())
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["engine"]["name"] == "swarm" and m["engine"]["node_hostname"] in hostnames(swarm)
    assert m["engine"]["node_id"] in {n.id for n in swarm["client"].nodes.list()}
    assert invoke("check", str(tmp_path / "r")).returncode == 0  # an ordinary results folder, judged again here
    wait_no_leftovers(swarm)


def test_bad_input_is_one_line_before_anything_is_placed(swarm, tmp_path):
    r = up_swarm(swarm, "e2eswbad", tmp_path / "r", "keepidle=-3")
    assert r.returncode == 2 and "keepidle" in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "r").exists() and leftovers(swarm) == []
    plain = invoke("up", "exercise2", "--engine", "swarm", env={**os.environ, "DOCKER_HOST": sandbox.OWN_DOCKER})
    assert plain.returncode == 2 and "not part of a Swarm" in plain.stderr and "invoke swarm up" in plain.stderr


def test_down_removes_a_labs_job_after_up_was_killed(swarm, tmp_path):
    lab = "e2eswk"
    p = subprocess.Popen(invoke_argv("up", "exercise2", "--engine", "swarm", "--lab", lab, "--results", str(tmp_path / "r")),
                         cwd=REPO, env=swarm["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not swarm["client"].services.list(filters={"label": f"tcplab.lab={lab}"}):
        assert time.monotonic() < deadline and p.poll() is None, "the lab was never placed"
        time.sleep(0.2)
    p.kill()
    p.wait()
    assert swarm["client"].services.list(filters={"label": f"tcplab.lab={lab}"})  # left behind by the killed `up`
    r = subprocess.run(invoke_argv("down", "--lab", lab), cwd=REPO, env=swarm["env"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"Swarm service tcplab-{lab}" in " ".join(r.stdout.split()), r.stdout + r.stderr
    wait_no_leftovers(swarm)


def test_a_class_of_forty_through_the_server_lands_on_both_nodes_and_passes(swarm, tmp_path, monkeypatch):
    students = [f"s{i:02d}" for i in range(40)]
    monkeypatch.setenv("DOCKER_HOST", swarm["env"]["DOCKER_HOST"])
    served = start(tmp_path, "--class", str(write_class(tmp_path / "class.yml", students)), "--engine", "swarm", ready=300)
    try:
        def post(student: str):
            return served.request("POST", "/api/labs", served.tokens[student], {"exercise": "exercise2", "mode": "auto", "set": FAST})

        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(post, students))
        assert [r.status for r in replies] == [201] * 40, [r.body for r in replies if r.status != 201]
        labs = [r.json() for r in replies]
        done = [served.wait(served.tokens[s], lab["id"], timeout=600) for s, lab in zip(students, labs)]
        failed = [(lab["student"], lab["state"], lab["error"]) for lab in done if lab["state"] != "done" or not lab["verdict"]["passed"]]
        assert failed == [], failed
        took = max(lab["ended"] for lab in done) - min(lab["created"] for lab in done)
        where = [served.request("GET", f"/api/labs/{lab['id']}/files/manifest.json", served.tokens["instructor"]).json()["engine"]
                 for lab in done]  # each lab's results folder, back on the server's machine
        per_node = {h: sum(1 for e in where if e["node_hostname"] == h) for h in hostnames(swarm)}
        print(f"40 labs on the Swarm: every verdict {took:.1f} s after the first POST; per node {per_node}")
        assert {e["name"] for e in where} == {"swarm"} and all(per_node.values()), per_node  # both nodes took labs
    finally:
        assert served.stop() == 0, served.log_text()[-2000:]
    wait_no_leftovers(swarm)


def test_by_hand_through_the_server_the_shells_reach_the_lab_on_its_node(swarm, tmp_path, monkeypatch):
    """A hands-on lab on the Swarm: steps and terminals as on one machine, the shells through the node's API."""
    from websockets.sync.client import connect

    from .test_serve_api import read_until, ws_url

    monkeypatch.setenv("DOCKER_HOST", swarm["env"]["DOCKER_HOST"])
    served = start(tmp_path, "--class", str(write_class(tmp_path / "class.yml", ["ann"])), "--engine", "swarm", ready=300)
    try:
        tok = served.tokens["ann"]
        r = served.request("POST", "/api/labs", tok, {"exercise": "exercise2", "mode": "hands-on", "set": FAST})
        assert r.status == 201, r.body
        lab = served.wait(tok, r.json()["id"], states=("running", "done", "failed"), timeout=180)
        assert lab["state"] == "running", (lab["state"], lab["error"])
        steps = [s["run"] for s in lab["steps"]]
        origin = {"Authorization": f"Bearer {tok}", "Origin": served.base}
        shells = {}
        try:
            # One shell per host, as the lab's page has: the capture and the server go to the background.
            for host in ("source", "dest"):
                shells[host] = connect(ws_url(served, lab["id"], host), additional_headers=origin, open_timeout=30)
                read_until(shells[host], f" {host}]".encode(), timeout=30)
            for host, command, seen in (("source", steps[0] + " >/dev/null 2>&1 &", None), ("dest", steps[1] + " &", b"listening"),
                                        ("source", steps[2], b"blocked in recv()"), ("dest", steps[3], None)):
                shells[host].send(json.dumps({"type": "input", "data": command + "\r"}))
                if seen:
                    read_until(shells[host], seen, timeout=30)
                else:
                    time.sleep(1)
            read_until(shells["source"], b"ETIMEDOUT", timeout=30)
            deadline = time.monotonic() + 30
            while not all(s.get("done_at") for s in served.lab(tok, lab["id"])["steps"]):
                assert time.monotonic() < deadline, served.lab(tok, lab["id"])["steps"]
                time.sleep(0.5)
        finally:
            for ws in shells.values():
                ws.close()
        assert served.request("POST", f"/api/labs/{lab['id']}/finish", tok).status in (200, 202)
        done = served.wait(tok, lab["id"], timeout=180)
        assert done["state"] == "done" and done["verdict"]["passed"], (done["state"], done["error"], done.get("verdict"))
        m = served.request("GET", f"/api/labs/{lab['id']}/files/manifest.json", tok).json()
        assert m["mode"] == "hands-on" and m["engine"]["name"] == "swarm" and m["engine"]["node_hostname"] in hostnames(swarm)
    finally:
        assert served.stop() == 0, served.log_text()[-2000:]
    wait_no_leftovers(swarm)


def test_down_after_the_server_was_killed_removes_its_labs_jobs(swarm, tmp_path, monkeypatch):
    from .conftest import pid_alive
    from .test_serve_class import _rows

    monkeypatch.setenv("DOCKER_HOST", swarm["env"]["DOCKER_HOST"])
    served = start(tmp_path, "--class", str(write_class(tmp_path / "class.yml", ["ann", "ben"])), "--engine", "swarm", ready=300)
    slow = {**FAST, "keepidle": 20, "user_timeout": 30000}
    labs = [served.request("POST", "/api/labs", served.tokens[s], {"exercise": "exercise2", "mode": mode, "set": slow}).json()
            for s, mode in (("ann", "auto"), ("ben", "hands-on"))]
    for s, lab in zip(("ann", "ben"), labs):
        assert served.wait(served.tokens[s], lab["id"], states=("running",), timeout=180)["state"] == "running"
    workers = [row["worker_pid"] for row in _rows(served.data / "serve.db")]
    served.proc.kill()
    served.proc.wait()
    assert len(swarm["client"].services.list(filters={"label": "tcplab.lab"})) == 2  # the server's death left them
    r = subprocess.run(invoke_argv("down", "--all"), cwd=REPO, env=swarm["env"], capture_output=True, text=True, timeout=120)
    said = " ".join(r.stdout.split())
    assert r.returncode == 0 and all(f"lab sv{lab['id']}: removed Swarm service tcplab-sv{lab['id']}" in said for lab in labs), r.stdout + r.stderr
    wait_no_leftovers(swarm)
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in workers):  # each lab's worker, orphaned, sees its job gone and ends
        assert time.monotonic() < deadline, [pid for pid in workers if pid_alive(pid)]
        time.sleep(0.5)


def test_a_worker_stopped_mid_lab_fails_that_lab_with_the_reason(swarm, tmp_path):
    """Last: it stops the worker for good. Two labs at once are spread one per node; the worker goes."""
    procs = {lab: subprocess.Popen(invoke_argv("up", "exercise2", "--engine", "swarm", "--lab", lab, "--results", str(tmp_path / lab)),
                                   cwd=REPO, env=swarm["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for lab in ("e2eswa", "e2eswb")}
    worker = swarm["nodes"][1]
    deadline = time.monotonic() + 120
    on_worker = None
    while on_worker is None:
        assert time.monotonic() < deadline, "no lab was placed on the worker"
        for lab in procs:
            try:
                tasks = swarm["client"].api.tasks(filters={"service": f"tcplab-{lab}"})
            except docker.errors.NotFound:
                continue  # not placed yet
            if any(t.get("NodeID") and t["Status"]["State"] == "running" and
                   swarm["client"].nodes.get(t["NodeID"]).attrs["Description"]["Hostname"] == worker.hostname for t in tasks):
                on_worker = lab
        time.sleep(0.3)
    time.sleep(2)  # mid-lab: its client is waiting for the keepalive probes
    sandbox.stop_node(NAME, worker.name)
    outs = {lab: p.communicate(timeout=180)[0] for lab, p in procs.items()}
    other = next(lab for lab in procs if lab != on_worker)
    assert procs[on_worker].returncode == 2, outs[on_worker]
    assert f"node {worker.hostname} left the Swarm mid-lab" in " ".join(outs[on_worker].split())
    assert not (tmp_path / on_worker).exists()
    assert procs[other].returncode == 0 and "PASSED 4/4 checks" in outs[other], outs[other]
    wait_no_leftovers(swarm)
    # Started again, the lab goes where a node is up.
    again = up_swarm(swarm, on_worker, tmp_path / "again", *EX2_FAST)
    assert again.returncode == 0 and "PASSED 4/4 checks" in again.stdout, again.stdout + again.stderr
    m = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert m["engine"]["node_hostname"] == swarm["nodes"][0].hostname
    wait_no_leftovers(swarm)
