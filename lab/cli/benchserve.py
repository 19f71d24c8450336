"""`invoke bench --parts serve`: the lab server's figures, from the outside, as a class meets it: the
server started as `invoke serve` in a process of its own and reached over its HTTP API and a
terminal websocket on loopback (the bench imports none of it, as a user would not).

- a ready shell: from the POST that starts a hands-on lab to the first output of a command typed in
  its browser terminal, on netns and on docker, beside `docker run` of three containers of the same
  image (which gives three containers with no network, no lab, no shell attached);
- a class at once: N automated exercise2 labs POSTed within a second, the time until every verdict,
  how many passed, the API's latency (p50, p99 of GET /api/labs) while they run, the server's memory.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import yaml

from .. import ui
from ..errors import LabError
from ..spec.exercise import EXERCISE_DIR

REPO = EXERCISE_DIR.parent
FAST = {"keepidle": 1, "keepintvl": 1, "keepcnt": 5, "user_timeout": 2500}


class Served:
    def __init__(self, tmp: Path, backend: str, students: int, extra: tuple[str, ...] = (), env: Optional[dict[str, str]] = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = ["serve", "--listen", f"127.0.0.1:{self.port}", "--data", str(tmp / "data"), "--backend", backend, *extra]
        if students:
            klass = tmp / "class.yml"
            klass.write_text(yaml.safe_dump({"class": "bench", "students": [f"s{i:02d}" for i in range(students)]}))
            args += ["--class", str(klass), "--max-labs", str(students + 5)]
        self.log = open(tmp / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 600  # the first serve on docker may build the host image
        while True:
            try:
                self.tokens = json.loads((tmp / "data" / "tokens.json").read_text())
                self.call("GET", "/api/me", "instructor")
                return
            except (OSError, ValueError, KeyError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise LabError(f"bench: `invoke serve` did not come up (its log: {tmp / 'serve.log'})") from None
                time.sleep(0.2)

    def call(self, method: str, path: str, user: str, body: Any = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.tokens[user]}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def wait(self, user: str, lab_id: str, states: tuple[str, ...], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            lab = self.call("GET", f"/api/labs/{lab_id}", user)
            if lab["state"] in states or time.monotonic() > deadline:
                return lab
            time.sleep(0.02)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def _first_output(port: int, token: str, lab_id: str, host: str) -> None:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/labs/{lab_id}/terminal/{host}",
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "input", "data": "echo READY-$((6*7))\r"}))
        seen = b""
        while b"READY-42" not in seen:
            seen += await asyncio.wait_for(ws.recv(), 30)


def ready_shell(backend: str) -> float:
    """Seconds from the POST of a hands-on exercise2 to a command's output in its terminal."""
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        served = Served(Path(tmp), backend, 1 if backend == "docker" else 0)
        user = "s00" if backend == "docker" else "instructor"
        try:
            t0 = time.perf_counter()
            lab = served.call("POST", "/api/labs", user, {"exercise": "exercise2", "mode": "hands-on", "set": FAST})
            lab = served.wait(user, lab["id"], ("running", "done", "failed"))
            if lab["state"] != "running":
                raise LabError(f"bench: the hands-on lab did not come up: {lab.get('error')}")
            asyncio.run(_first_output(served.port, served.tokens[user], lab["id"], "source"))
            return time.perf_counter() - t0
        finally:
            served.stop()


def docker_run_three() -> float:
    """`docker run -d` of three containers of the host image (no network), then their removal: the first part timed."""
    from ..backends.docker import images
    from ..backends.docker.backend import client

    image = images.ensure(client())
    names = [f"tcplab-benchrun-{i}" for i in range(3)]
    t0 = time.perf_counter()
    for n in names:
        subprocess.run(["docker", "run", "-d", "--name", n, "--network", "none", "--label", "tcplab.bench=1", image, "sleep", "600"],
                       check=True, capture_output=True)
    took = time.perf_counter() - t0
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    return took


def class_at_once(labs: int, extra: tuple[str, ...] = (), env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        served = Served(Path(tmp), "docker", labs, extra, env)
        try:
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(labs) as pool:
                made = list(pool.map(lambda i: served.call("POST", "/api/labs", f"s{i:02d}", {"exercise": "exercise2", "set": FAST}), range(labs)))
            latencies, peak = [], 0.0
            while True:
                t = time.perf_counter()
                listed = served.call("GET", "/api/labs", "instructor")
                latencies.append(time.perf_counter() - t)
                peak = max(peak, served.rss_mb())
                if all(lab["state"] in ("done", "failed") for lab in listed) or time.perf_counter() - t0 > 900:
                    break
                if extra:
                    time.sleep(0.4)  # on the Swarm, the figure is the labs', not the API's: poll it gently
                time.sleep(0.1)
            wall = time.perf_counter() - t0
            passed = sum(1 for lab in listed if lab["state"] == "done" and (lab["verdict"] or {}).get("passed"))
            q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [latencies[0]] * 99
            return {"labs": len(made), "passed": passed, "wall": wall, "p50": q[49] * 1000, "p99": q[98] * 1000, "rss": peak,
                    "samples": len(latencies)}
        finally:
            served.stop()


def run(labs: int) -> None:
    ui.step("serve: a ready shell from the start of a hands-on lab, on netns and docker, beside `docker run` of three containers")
    netns = ready_shell("netns")
    docker = ready_shell("docker")
    plain = docker_run_three()
    ui.console.print(f"start to a ready shell: netns {netns:5.2f} s, docker {docker:5.2f} s (targets: 1 s, 2 s)")
    ui.console.print(f"`docker run -d` of three containers of the same image: {plain:5.2f} s (no network, no lab, no shell)")
    ui.step(f"serve: {labs} automated exercise2 labs started through the API within a second")
    r = class_at_once(labs)
    ui.console.print(f"{r['labs']} labs at once: {r['passed']}/{r['labs']} passed, every verdict after {r['wall']:.1f} s; "
                     f"GET /api/labs meanwhile p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({r['samples']} requests, target p99 < 200 ms); "
                     f"the server's memory at most {r['rss']:.0f} MB")


def swarm(labs: int = 40) -> None:
    """The same class on a Swarm sandbox of one node, then of two (`invoke swarm up`), through `serve --engine swarm`."""
    from ..swarm import sandbox

    rows = []
    for nodes in (1, 2):
        name = f"bench{nodes}"
        ui.step(f"swarm: a sandbox of {nodes} node(s), then {labs} automated exercise2 labs through `serve --engine swarm`")
        made = subprocess.run([sys.executable, "-m", "invoke", "swarm", "up", "--name", name, "--nodes", str(nodes)], cwd=REPO,
                              capture_output=True, text=True)
        try:
            if made.returncode != 0:
                raise LabError(f"bench: `invoke swarm up` failed: {(made.stdout + made.stderr).strip().splitlines()[-1:]}")
            r = class_at_once(labs, ("--engine", "swarm"), {"DOCKER_HOST": sandbox.load(name)[0].url})
            rows.append((nodes, r))
        finally:
            subprocess.run([sys.executable, "-m", "invoke", "swarm", "down", "--name", name], cwd=REPO, capture_output=True)
    for nodes, r in rows:
        ui.console.print(f"{labs} labs on a Swarm of {nodes} node(s): {r['passed']}/{r['labs']} passed, every verdict after "
                         f"{r['wall']:.1f} s, {r['labs'] / r['wall'] * 60:.0f} labs per minute")
    ui.console.print("(both sandboxes share this machine's cores: a second node adds a scheduler's choice here, not CPU)")
