"""Benchmarks: figures to print, not pass/fail. `invoke bench` runs them.

The analyzer's rate is measured on a bulk-transfer capture the bench makes itself, on a lab of its
own (namespaces, real kernel TCP), and set beside tshark's rate on the same file.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

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


def run(seconds: float, tshark_packets: int, capture: Optional[str]) -> int:
    if not capture or not Path(capture).exists():
        require_root("bench")
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
    ui.step("Docker: up+down of the three-host lab, best of 3")
    try:
        lab_time, cli_time = docker_lab_times()
    except LabError as e:
        ui.warn(f"Docker part skipped: {e}")
        return 0
    ui.console.print(f"tcplab docker up+down (3 containers, wired)   {lab_time:6.2f} s")
    ui.console.print(f"docker CLI run+rm (3 containers, unwired)     {cli_time:6.2f} s")
    return 0


def _wait(done, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise LabError(f"bench: timed out waiting for {what}")
        time.sleep(0.05)
