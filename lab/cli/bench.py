"""Benchmarks: figures to print, not pass/fail. `invoke bench` runs them, each beside what a user
would use instead:

- analyzer: `invoke analyze FILE --labels OUT` on a bulk-transfer capture the bench makes itself
  (namespaces, real kernel TCP), beside tshark's TCP analysis of the same file with the same output
  (each TCP frame's flags), whole process against whole process: frames per second and peak memory;
  then the capture repeated ten times over, whose peak memory should be the same;
- docker: up+down of the three-host Docker lab, beside the docker CLI starting and removing three containers;
- overhead: `invoke up exercise1` with 1 s timers, its wall time minus the time the protocol itself
  takes (the client's connect to its ETIMEDOUT), beside scripts/raw-exercise1 (the same by hand with iproute2);
- parallel: twenty `invoke up exercise2 --backend docker` started at once, how many pass and how long, beside one alone;
- serve: the lab server's ready shell and a class of labs at once (lab/cli/benchserve.py).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from .. import ui
from ..analysis.capture import scan
from ..backends.labstate import LabState
from ..backends.netns import NetnsBackend
from ..backends.preflight import require_root
from ..errors import LabError
from ..spec.exercise import EXERCISE_DIR
from ..spec.steps.captures import tcpdump_argv
from ..spec.topology import load as load_topology

BENCH_LAB = "bench"
PORT = 5001
PARTS = ("analyzer", "docker", "overhead", "parallel", "serve", "swarm")
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
    return scan(out, keep_all=False).frames


# Runs one command and writes its peak memory and exit status. A process started from this one would
# count this one's memory as its own (Linux keeps the peak of the memory a process had before exec, and a
# forked or vforked child's is its parent's): so a small interpreter (-S, no site) starts it instead, and
# reports what wait4 says of it.
PEAK_HELPER = """
import os, sys
out, err, report, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
actions = [(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
           (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measured(argv: Sequence[str], stdout: Optional[Path] = None) -> tuple[float, int]:
    """A whole process: (wall seconds, its peak resident memory in bytes), interpreter start-up and all."""
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        err, report = Path(tmp) / "err", Path(tmp) / "report"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", PEAK_HELPER, str(stdout or os.devnull), str(err), str(report), *argv], check=True)
        elapsed = time.perf_counter() - start
        peak_kib, status = map(int, report.read_text().split())
        if status != 0:
            raise LabError(f"`{' '.join(argv[:4])} ...` failed: {err.read_text(errors='replace').strip()[-300:]}")
    return elapsed, peak_kib * 1024


def analyzer_run(path: Path, labels: Path) -> tuple[float, int]:
    """`invoke analyze FILE --labels OUT`: a label per TCP frame, written to a file (best of 3)."""
    argv = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "analyze", str(path), "--labels", str(labels)]
    return min(measured(argv) for _ in range(3))


def tshark_run(path: Path, labels: Path) -> tuple[float, int]:
    """tshark's TCP analysis of the same file with the same output: each TCP frame's number and every flag."""
    if shutil.which("tshark") is None:
        raise LabError("tshark is missing: install it with `sudo apt-get install -y tshark` or run ./bootstrap")
    fields = [a for name in tcpscan_flags() for a in ("-e", "tcp.flags.reset" if name == "reset" else f"tcp.analysis.{name}")]
    argv = ["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f",
            "-e", "frame.number", *fields]
    return measured(argv, stdout=labels)


def tcpscan_flags() -> list[str]:
    from ..analysis.capture import WS_FLAGS

    return list(WS_FLAGS)


def lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def agreement(ours: Path, theirs: Path) -> tuple[int, int]:
    """Frames whose flags are the same in both outputs, of all the frames either lists (joined on the
    frame number: a frame one side lists and the other does not is a disagreement, and nothing shifts)."""
    names = tcpscan_flags()

    def ours_of(line: str) -> tuple[int, frozenset]:
        frame, _, flags = line.rstrip("\n").partition("\t")
        return int(frame), frozenset(filter(None, flags.split(",")))

    def theirs_of(line: str) -> tuple[int, frozenset]:
        cols = line.rstrip("\n").split("\t")
        return int(cols[0]), frozenset(n for n, v in zip(names, cols[1:]) if v and v not in ("0", "False"))

    with open(ours) as a, open(theirs) as b:
        mine = dict(ours_of(line) for line in a if line.strip())
        same = total = 0
        for line in b:
            if not line.strip():
                continue
            frame, flags = theirs_of(line)
            total += 1
            same += mine.pop(frame, None) == flags
    return same, total + len(mine)


def repeated(path: Path, out: Path, times: int) -> int:
    """`path` (classic pcap) written `times` over into `out`, each copy later than the one before, as one
    long capture of the same connection; returns out's size."""
    import numpy as np

    data = path.read_bytes()
    if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        raise LabError(f"{path}: the tenfold figure needs a classic pcap (tcpdump -w): give --capture one, or let the bench capture")
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records = np.frombuffer(data, dtype=np.uint8, offset=24)
    starts, off, head = [], 0, struct.Struct(endian + "I")
    while off + 16 <= len(records):
        starts.append(off)
        off += 16 + head.unpack_from(data, 24 + off + 8)[0]
    at = np.array(starts, dtype=np.int64)[:, None] + np.arange(4)  # the seconds field of every record
    secs = records[at].copy().view(endian + "u4").ravel().astype(np.int64)
    span = int(secs[-1] - secs[0]) + 1
    with open(out, "wb") as f:
        f.write(data[:24])
        for k in range(times):
            copy = records[:off].copy()
            copy[at] = (secs + k * span).astype(endian + "u4").view(np.uint8).reshape(-1, 4)
            f.write(copy.tobytes())
    return out.stat().st_size


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


def run(seconds: float, capture: Optional[str], parts: str = ",".join(PARTS), repeat: int = 5, labs: int = 20) -> int:
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise LabError(f"--parts {parts!r}: parts are {', '.join(PARTS)} (a comma list)")
    if chosen != ["analyzer"] or not capture or not Path(capture).exists():
        require_root("bench")
    if "analyzer" in chosen:
        _analyzer(seconds, capture)
    if "docker" in chosen:
        _docker()
    if "overhead" in chosen:
        _overhead(repeat)
    if "parallel" in chosen:
        _parallel(labs)
    if "serve" in chosen:
        from . import benchserve

        benchserve.run(30 if labs == 20 else labs)
    if "swarm" in chosen:
        from . import benchserve

        benchserve.swarm(40 if labs == 20 else labs)
    return 0


def _analyzer(seconds: float, capture: Optional[str]) -> None:
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
        ours_out, theirs_out = Path(tmp) / "ours.txt", Path(tmp) / "tshark.txt"
        ui.step("tcplab: `invoke analyze FILE --labels OUT`, whole process, best of 3")
        ours_s, ours_mem = analyzer_run(path, ours_out)
        n = lines(ours_out)
        ui.step("tshark: the same file, the same output (each TCP frame's number and flags), whole process")
        theirs_s, theirs_mem = tshark_run(path, theirs_out)
        m = lines(theirs_out)
        same, total = agreement(ours_out, theirs_out)
        ui.step("tenfold: the capture repeated ten times over, one long connection, for memory that does not grow")
        big = Path(tmp) / "tenfold.pcap"
        size = repeated(path, big, 10)
        big_s, big_mem = analyzer_run(big, Path(tmp) / "tenfold.txt")
        big_n = lines(Path(tmp) / "tenfold.txt")
        big.unlink()
        row = "{:<26} {:>11,} {:>9.2f} {:>14,.0f} {:>10.0f} {:>10.0f}"
        ui.console.print(f"{'whole process, whole file':<26} {'TCP frames':>11} {'seconds':>9} {'frames/s':>14} {'peak MB':>10} {'B/frame':>10}")
        ui.console.print(row.format("tcplab analyze --labels", n, ours_s, n / ours_s, ours_mem / 1e6, ours_mem / max(n, 1)))
        ui.console.print(row.format("tshark -T fields", m, theirs_s, m / theirs_s, theirs_mem / 1e6, theirs_mem / max(m, 1)))
        ui.console.print(row.format(f"tcplab, tenfold ({size / 1e9:.1f} GB)", big_n, big_s, big_n / big_s, big_mem / 1e6, big_mem / max(big_n, 1)))
        ui.console.print(f"tcplab is {(n / ours_s) / (m / theirs_s):.0f} times tshark's rate in {ours_mem / theirs_mem:.0%} of its memory; "
                         f"on a file ten times as long its peak memory is {big_mem / ours_mem:.2f} times as much")
        ui.console.print(f"labels: the same as tshark's on {same:,} of {total:,} frames")


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
