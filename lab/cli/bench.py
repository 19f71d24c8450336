"""Benchmarks: figures to print, not pass/fail. `invoke bench` runs them, each beside what a user
would use instead:

- analyzer: the packets per second of the analyzer on a bulk-transfer capture the bench makes itself
  (namespaces, real kernel TCP), beside tshark's on the same file;
- docker: up+down of the three-host Docker lab, beside the docker CLI starting and removing three containers;
- overhead: `invoke up exercise1` with 1 s timers, its wall time minus the time the protocol itself
  takes (the client's connect to its ETIMEDOUT), beside scripts/raw-exercise1 (the same by hand with iproute2);
- parallel: twenty `invoke up exercise2 --backend docker` started at once, how many pass and how long, beside one alone;
- serve: the lab server's ready shell and a class of labs at once (lab/cli/benchserve.py).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from .. import ui
from ..analysis import tcpflow
from ..analysis.pcap import read_table
from ..backends.labstate import LabState
from ..backends.netns import NetnsBackend
from ..backends.preflight import require_root
from ..errors import LabError
from ..spec.exercise import EXERCISE_DIR
from ..spec.steps.captures import tcpdump_argv
from ..spec.topology import load as load_topology

BENCH_LAB = "bench"
PORT = 5001
PARTS = ("analyzer", "docker", "overhead", "parallel", "serve")
REPO = EXERCISE_DIR.parent
FAST = {"keepidle": 1, "keepintvl": 1, "keepcnt": 1}  # exercise1: the abort 2 s after the last received segment
PARALLEL_SETS = ["keepidle=1", "keepintvl=1", "keepcnt=5", "user_timeout=2500"]


def bulk_capture(out: Path, seconds: float) -> int:
    """Captures `seconds` of a full-speed transfer from source to dest; returns the packet count."""
    backend = NetnsBackend(BENCH_LAB)
    state = LabState.owned(BENCH_LAB, "netns", "bench")
    try:
        backend.create(load_topology("default"), state)
        pcap = backend.work_path("source", "bulk.pcap")
        cap = backend.spawn("source", "tcpdump", tcpdump_argv("eth0", pcap, 96, f"tcp port {PORT}", buffer_kib=65536), state)
        _wait(lambda: "listening on" in Path(cap.stderr).read_text(errors="replace"), 10, "tcpdump to start")
        programs = EXERCISE_DIR / "persist-timer"
        big = str(4 << 20)
        sink = backend.spawn("dest", "sink", backend.python("dest", programs / "server.py") +
                             ["--port", str(PORT), "--recv-buf", big, "--initial-reads", "0", "--stall", "0"], state)
        _wait(lambda: "listening" in Path(sink.stdout).read_text(errors="replace"), 10, "the sink to listen")
        sender = backend.spawn("source", "sender", backend.python("source", programs / "client.py") +
                               ["--host", "10.0.1.2", "--port", str(PORT), "--send-buf", big, "--block-size", "65536",
                                "--duration", str(seconds)], state)
        _wait(lambda: sender.poll() is not None, seconds + 60, "the transfer to end")
        _wait(lambda: sink.poll() is not None, 30, "the sink to drain")
        cap.signal(2)
        _wait(lambda: cap.poll() is not None, 10, "tcpdump to stop")
        shutil.copyfile(pcap, out)
    finally:
        backend.destroy(state)
        state.remove()
    return len(read_table(out))


def analyzer_rate(path: Path, repeat: int = 3) -> tuple[int, float]:
    best = float("inf")
    packets = 0
    for _ in range(repeat):
        start = time.perf_counter()
        flows = tcpflow.analyze_file(path)
        best = min(best, time.perf_counter() - start)
        packets = sum(len(f) for f in flows)
    return packets, packets / best


def tshark_rate(path: Path, packets: Optional[int]) -> tuple[int, float]:
    """tshark's rate with its TCP analysis on (it reads about 8,000 packets a second here, so a prefix is enough)."""
    if shutil.which("tshark") is None:
        raise LabError("tshark is missing: install it with `sudo apt-get install -y tshark` or run ./bootstrap")
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.analysis.flags"]
    if packets:
        argv += ["-c", str(packets)]
    start = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise LabError(f"tshark failed: {r.stderr.strip()[-200:]}")
    n = r.stdout.count("\n")
    return n, n / elapsed


def docker_lab_times(repeat: int = 3) -> tuple[float, float]:
    """Best time of our up+down of the three-host lab (wired, empty), and of the plain docker CLI
    starting and removing three containers one by one (unwired: the least a user would do)."""
    from ..backends.docker import DockerBackend, client
    from ..backends.docker.images import ensure

    image = ensure(client())
    topo = load_topology("default")
    ours, plain = float("inf"), float("inf")
    for i in range(repeat):
        backend = DockerBackend(f"{BENCH_LAB}{i}")
        state = LabState.owned(backend.lab, "docker", "bench")
        start = time.perf_counter()
        try:
            backend.create(topo, state)
        finally:
            backend.destroy(state)
            state.remove()
        ours = min(ours, time.perf_counter() - start)
        names = [f"tcplab-{BENCH_LAB}cli{i}-{n}" for n in topo.nodes]
        start = time.perf_counter()
        try:
            for n in names:
                subprocess.run(["docker", "run", "-d", "--name", n, "--label", f"tcplab.lab={BENCH_LAB}cli{i}", "--network", "none",
                                "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", image, "sleep", "infinity"],
                               check=True, capture_output=True)
        finally:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        plain = min(plain, time.perf_counter() - start)
    return ours, plain


def run(seconds: float, tshark_packets: int, capture: Optional[str], parts: str = ",".join(PARTS), repeat: int = 5, labs: int = 20) -> int:
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise LabError(f"--parts {parts!r}: parts are {', '.join(PARTS)} (a comma list)")
    if chosen != ["analyzer"] or not capture or not Path(capture).exists():
        require_root("bench")
    if "analyzer" in chosen:
        _analyzer(seconds, tshark_packets, capture)
    if "docker" in chosen:
        _docker()
    if "overhead" in chosen:
        _overhead(repeat)
    if "parallel" in chosen:
        _parallel(labs)
    if "serve" in chosen:
        from . import benchserve

        benchserve.run(30 if labs == 20 else labs)
    return 0


def _analyzer(seconds: float, tshark_packets: int, capture: Optional[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        path = Path(capture) if capture else Path(tmp) / "bulk.pcap"
        if capture and path.exists():
            ui.step(f"using the capture {path}")
        else:
            ui.step(f"capturing {seconds:g} s of a bulk transfer between two namespaces")
            n = bulk_capture(path, seconds)
            ui.step(f"{n} packets, {path.stat().st_size / 1e6:.0f} MB")
            if n < 1_000_000:
                ui.warn("under a million packets: raise --seconds for a capture of the size the target speaks of")
        ui.step("analyzer: reading and labelling the whole capture, best of 3")
        n, ours = analyzer_rate(path)
        ui.step(f"tshark: TCP analysis of the first {tshark_packets} packets")
        m, theirs = tshark_rate(path, tshark_packets)
        ui.console.print(f"analyzer  {n:>9} packets  {ours:>12,.0f} packets/s")
        ui.console.print(f"tshark    {m:>9} packets  {theirs:>12,.0f} packets/s")
        ui.console.print(f"the analyzer is {ours / theirs:.0f} times tshark's rate")


def _docker() -> None:
    ui.step("Docker: up+down of the three-host lab, best of 3")
    try:
        lab_time, cli_time = docker_lab_times()
    except LabError as e:
        ui.warn(f"Docker part skipped: {e}")
        return
    ui.console.print(f"tcplab docker up+down (3 containers, wired)   {lab_time:6.2f} s")
    ui.console.print(f"docker CLI run+rm (3 containers, unwired)     {cli_time:6.2f} s")


def _invoke(args: Sequence[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - start, r


def protocol_seconds(folder: Path) -> float:
    """From the client's connect to its ETIMEDOUT: the time the exercise's TCP itself takes."""
    events = {e["event"]: e for e in map(json.loads, (folder / "client.log").read_text().splitlines()) if "event" in e}
    if "connected" not in events or "error" not in events:
        raise LabError(f"bench: {folder}/client.log lacks the connect or the error: the run did not go as exercise1 does")
    return events["error"]["wall"] - events["connected"]["wall"]


def _overhead(repeat: int) -> None:
    sets = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    ui.step(f"overhead: `invoke up exercise1 {' '.join(sets)}`, and scripts/raw-exercise1 the same by hand, {repeat} times each")
    ours, raw = [], []
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        for i in range(repeat):
            folder = Path(tmp) / f"up{i}"
            wall, r = _invoke(["up", "exercise1", "--lab", f"{BENCH_LAB}up", "--results", str(folder), *sets], 120)
            if r.returncode != 0:
                raise LabError(f"bench: `invoke up exercise1` failed: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
            ours.append((wall, protocol_seconds(folder)))
            folder = Path(tmp) / f"raw{i}"
            start = time.perf_counter()
            r = subprocess.run([str(REPO / "scripts" / "raw-exercise1"), str(folder), *map(str, FAST.values())], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise LabError(f"bench: scripts/raw-exercise1 failed: {r.stderr.strip()[-200:]}")
            raw.append((time.perf_counter() - start, protocol_seconds(folder)))
    ui.console.print(f"{'medians of ' + str(repeat):<40} {'wall':>7} {'protocol':>9} {'overhead':>9}")
    for name, runs in (("tcplab up exercise1 (captures, checks)", ours), ("raw iproute2 script (one capture)", raw)):
        wall = statistics.median(w for w, _ in runs)
        protocol = statistics.median(p for _, p in runs)
        overhead = statistics.median(w - p for w, p in runs)
        ui.console.print(f"{name:<40} {wall:6.2f}s {protocol:8.2f}s {overhead:8.2f}s")


def _parallel(labs: int) -> None:
    sets = [a for s in PARALLEL_SETS for a in ("--set", s)]
    ui.step(f"parallel: {labs} `invoke up exercise2 --backend docker` started at once")
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        alone, r = _invoke(["up", "exercise2", "--backend", "docker", "--lab", f"{BENCH_LAB}p0", "--results", f"{tmp}/alone", *sets], 300)
        if r.returncode != 0:
            ui.warn(f"parallel part skipped: one lab alone failed: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
            return
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "invoke", "up", "exercise2", "--backend", "docker", "--lab", f"{BENCH_LAB}p{i + 1}",
                                   "--results", f"{tmp}/p{i + 1}", *sets], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(labs)]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        wall = time.perf_counter() - start
    passed = sum(p.returncode == 0 for p in procs)
    tracebacks = sum("Traceback" in e for e in errors)
    ui.console.print(f"{labs} Docker labs at once: {passed}/{labs} passed, {tracebacks} tracebacks, {wall:6.2f} s in all")
    ui.console.print(f"one Docker lab alone: {alone:6.2f} s")


def _wait(done, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise LabError(f"bench: timed out waiting for {what}")
        time.sleep(0.05)
