"""Runs an exercise's timeline on a brought-up lab and collects what it produced into the results folder."""
from __future__ import annotations

import json
import re
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import ui
from .backends.base import Backend, Process
from .errors import LabError
from .exercise import Exercise, Step
from .impair import Impairment, Impairments
from .labstate import LabState
from .naming import iptables_chain, nft_table

POLL = 0.02
# Bytes kept of each packet: every header the checks read, with room for options; 0 keeps whole packets.
DEFAULT_SNAPLEN = 256


class TimelineError(LabError):
    """A step did not happen as the exercise expects; the run stops, results are still collected and checked."""


@dataclass
class Capture:
    name: str
    host: str
    interface: str
    filter: str
    path: str  # on the host
    snaplen: int
    process: Process
    # Captures the exercise asked for on a host the backend lacks (no observer machine), which this one
    # stands for: checks that name them read this one instead.
    stands_for: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class Run:
    def __init__(self, exercise: Exercise, backend: Backend, state: LabState, folder: Path):
        self.ex, self.backend, self.state, self.folder = exercise, backend, state, folder
        self.programs: dict[str, Process] = {}
        self.captures: dict[str, Capture] = {}
        self.argv: dict[str, list[str]] = {}
        self.record: list[dict] = []
        self.collected = False
        self.impairments = Impairments(backend, exercise.topology, state)
        self.trace = backend.state_tracer(state)
        self.trace_info: dict = {}

    def execute(self) -> None:
        for spec in self.ex.topology.impairments:
            entry = {"step": "impair", **spec, "from_topology": True, "started": time.time()}
            self.record.append(entry)
            self._impair(Step("impair", spec, "topology impairments"), entry)
            entry["finished"] = time.time()
        for step in self.ex.steps:
            started = time.time()
            entry = {"step": step.kind, **step.args, "started": started}
            self.record.append(entry)
            getattr(self, f"_{step.kind}")(step, entry)
            entry["finished"] = time.time()

    def finish(self) -> None:
        """Stops whatever still runs and collects everything; safe after any failure, and idempotent."""
        stop(list(self.programs.values()), signal.SIGTERM, grace=3)
        try:
            self.impairments.clear()
        finally:  # the captures are stopped and collected whatever happened to the impairments
            self._stop_captures()
            if not self.collected:
                self._collect(None, {})

    def summary(self) -> dict:
        return {
            "timeline": self.record,
            "programs": {
                name: {"host": p.host, "argv": self.argv.get(name), "exit_status": p.poll()} for name, p in self.programs.items()
            },
            "impairments": self.impairments.history,
            **({"state_trace": self.trace_info} if self.trace_info else {}),
            "captures": [
                {"name": c.name, "host": c.host, "interface": c.interface, "filter": c.filter, "snaplen": c.snaplen,
                 "file": f"{c.name}.pcap", **({"stands_for": c.stands_for} if c.stands_for else {}), **c.stats}
                for c in self.captures.values()
            ],
        }

    # --- steps -------------------------------------------------------------------------------------

    def _capture(self, step: Step, entry: dict) -> None:
        name = step.args.get("name", step.args["host"])
        host, iface, filt = step.args["host"], step.args["interface"], step.args.get("filter", "")
        targets = self.backend.capture_targets(host, iface)
        moved = len(targets) > 1
        for target, target_iface in targets:
            same = next((c for c in self.captures.values() if (c.host, c.interface, c.filter) == (target, target_iface, filt)), None)
            if moved and same is not None:
                ui.step(f"{target}:{target_iface} is already captured ({same.name}.pcap): it stands for {name} too")
                same.stands_for.append(name)
                continue
            # A capture moved to other hosts is named after the host it runs on.
            own = (target if target not in self.captures else f"{name}-{target}") if moved else name
            while own in self.captures:  # a later step's own name may be taken already: never reuse a file
                own += "_"
            self._start_capture(own, target, target_iface, filt, int(step.args.get("snaplen", DEFAULT_SNAPLEN)),
                                stands_for=[name] if moved else [])

    def _start_capture(self, name: str, host: str, iface: str, filt: str, snaplen: int, stands_for: list[str]) -> None:
        path = self.backend.work_path(host, f"{name}.pcap")
        argv = tcpdump_argv(iface, path, snaplen, filt)
        ui.step(f"capture on {host}:{iface}" + (f" ({filt})" if filt else "") + (f", standing for {', '.join(stands_for)}" if stands_for else ""))
        proc = self.backend.spawn(host, f"tcpdump-{name}", argv, self.state)
        self.captures[name] = Capture(name, host, iface, filt, path, snaplen, proc, stands_for=list(stands_for))
        # Nothing may start before tcpdump listens, or the handshake is missing from the capture.
        self._wait_for(proc, lambda out, err: "listening on" in err, 10, f"tcpdump on {host}:{iface} to start")

    def _start(self, step: Step, entry: dict) -> None:
        prog = self.ex.programs[step.args["program"]]
        argv = self.backend.python(prog.host, prog.script) + prog.args
        ui.step(f"start {prog.name} on {prog.host}: {shlex.join([prog.script.name, *prog.args])}")
        self.argv[prog.name] = argv
        self.programs[prog.name] = self.backend.spawn(prog.host, prog.name, argv, self.state)

    def _wait(self, step: Step, entry: dict) -> None:
        proc = self._program(step)
        timeout = step.args["timeout"]
        if "event" in step.args:
            event = step.args["event"]
            what = f"{proc.name} to report '{event}'"

            def seen(out: str, err: str) -> bool:
                return any(_event_name(line) == event for line in out.splitlines())
        else:
            pattern = re.compile(step.args["line"])
            what = f"{proc.name} to print a line matching {pattern.pattern!r}"

            def seen(out: str, err: str) -> bool:
                return bool(pattern.search(out) or pattern.search(err))

        with ui.waiting(f"wait for {what} (up to {timeout:g} s)"):
            self._wait_for(proc, seen, timeout, what)

    def _firewall(self, step: Step, entry: dict) -> None:
        host, drop = step.args["host"], step.args["drop"]
        proto, port = drop.get("protocol", "tcp"), int(drop["port"])
        ui.step(f"firewall on {host}: drop {proto} port {port} in both directions")
        entry["commands"] = self.backend.firewall_drop(host, iptables_chain(self.backend.lab), proto, port)

    def _bridge_drop(self, step: Step, entry: dict) -> None:
        a = step.args
        src, dst = self.ex.topology.nodes[a["from"]].ip, self.ex.topology.nodes[a["to"]].ip
        window = a.get("window", "any")
        what = {"open": "segments advertising an open window", "closed": "zero-window segments", "any": "all segments"}[window]
        ui.step(f"on {a['host']}'s bridge: drop {what} of port {a['port']} from {a['from']} to {a['to']}")
        entry["commands"] = self.backend.bridge_drop(a["host"], nft_table(self.backend.lab), src, dst, a["port"], window)

    def _bridge_restore(self, step: Step, entry: dict) -> None:
        ui.step(f"on {step.args['host']}'s bridge: stop dropping")
        entry["commands"] = self.backend.bridge_restore(step.args["host"], nft_table(self.backend.lab))

    def _impair(self, step: Step, entry: dict) -> None:
        a = step.args
        one = Impairment(a["from"], a["to"], float(a.get("delay_ms", 0)), float(a.get("loss", 0)), float(a.get("rate_mbit", 0)))
        items = [one] if a.get("direction", "both") == "one" else [one, Impairment(a["to"], a["from"], one.delay_ms, one.loss, one.rate_mbit)]
        record = self.impairments.set(items)
        ui.step(f"impair ({record['method']}): " + "; ".join(map(str, items)) + ("" if record["impairments"] else " (nothing to apply)"))
        entry["method"] = record["method"]

    def _trace_states(self, step: Step, entry: dict) -> None:
        self.trace_info = self.trace.start(int(step.args["port"]))

    def _unimpair(self, step: Step, entry: dict) -> None:
        ui.step("remove the impairments")
        self.impairments.clear()

    def _wait_exit(self, step: Step, entry: dict) -> None:
        proc = self._program(step)
        timeout = step.args["timeout"]
        with ui.waiting(f"wait for {proc.name} to exit (up to {timeout:g} s)"):
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimelineError(f"{proc.name} did not exit within {timeout:g} s")
                time.sleep(POLL)
        entry["exit_status"] = proc.poll()
        ui.step(f"{proc.name} exited with status {proc.poll()}")

    def _stop(self, step: Step, entry: dict) -> None:
        proc = self._program(step)
        ui.step(f"stop {proc.name}")
        stop([proc], signal.SIGTERM, grace=3)

    def _stop_captures(self, step: Optional[Step] = None, entry: Optional[dict] = None) -> None:
        running = [c.process for c in self.captures.values() if c.process.poll() is None]
        if running and step is not None:
            ui.step("stop captures")
        # SIGINT makes tcpdump flush its buffer and print its packet counts.
        stop(running, signal.SIGINT, grace=5)
        for c in self.captures.values():
            err = self.backend.read_file(c.host, c.process.stderr).decode(errors="replace")
            for key, pattern in (("packets_captured", r"(\d+) packets? captured"), ("packets_dropped_by_kernel", r"(\d+) packets? dropped by kernel")):
                m = re.search(pattern, err)
                if m:
                    c.stats[key] = int(m.group(1))

    def _sleep(self, step: Step, entry: dict) -> None:
        with ui.waiting(f"sleep {step.args['seconds']:g} s"):
            time.sleep(step.args["seconds"])

    def _collect(self, step: Optional[Step], entry: dict) -> None:
        if step is not None:
            ui.step(f"collect captures and logs into {self.folder}")
        for c in self.captures.values():
            self.backend.fetch(c.host, c.path, self.folder / f"{c.name}.pcap")
            self.backend.fetch(c.host, c.process.stderr, self.folder / f"tcpdump-{c.name}.err")
        for name, p in self.programs.items():
            self.backend.fetch(p.host, p.stdout, self.folder / f"{name}.log")
            self.backend.fetch(p.host, p.stderr, self.folder / f"{name}.err")
        for path in self.trace.stop(self.folder):
            ui.step(f"state trace: {path}")
        self.collected = True

    # --- helpers -----------------------------------------------------------------------------------

    def _program(self, step: Step) -> Process:
        name = step.args["program"]
        if name not in self.programs:
            raise TimelineError(f"{step.where}: program {name} has not been started (add a `start: {name}` step before)")
        return self.programs[name]

    def _wait_for(self, proc: Process, seen, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = self.backend.read_file(proc.host, proc.stdout).decode(errors="replace")
            err = self.backend.read_file(proc.host, proc.stderr).decode(errors="replace")
            if seen(out, err):
                return
            status = proc.poll()
            if status is not None:
                # One last read: the program may have printed the line just before exiting.
                out = self.backend.read_file(proc.host, proc.stdout).decode(errors="replace")
                if seen(out, self.backend.read_file(proc.host, proc.stderr).decode(errors="replace")):
                    return
                tail = (err.strip().splitlines() or ["no output"])[-1]
                raise TimelineError(f"{proc.name} on {proc.host} exited with status {status} before {what.replace(proc.name + ' ', '', 1)}: {tail}")
            if time.monotonic() > deadline:
                raise TimelineError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL)


def tcpdump_argv(iface: str, path: str, snaplen: int, filt: str = "", buffer_kib: int = 0) -> list[str]:
    """tcpdump writing a capture that keeps its last packets when stopped with SIGINT.

    --immediate-mode: libpcap otherwise hands packets over in ring blocks, and the block still open
    when SIGINT arrives is lost (the abort's RST, typically). -U writes each packet as it comes;
    -Z root keeps tcpdump able to write the lab's folder.
    """
    argv = ["tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-Z", "root", "-s", str(snaplen), "-w", path]
    argv += ["-B", str(buffer_kib)] if buffer_kib else []  # a bigger kernel buffer, for bulk rates
    return argv + ([filt] if filt else [])


def stop(processes: list[Process], sig: int, grace: float) -> None:
    """Signals every running process at once, waits up to `grace` seconds for all, then SIGKILLs the rest."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.signal(sig)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in running) and time.monotonic() < deadline:
        time.sleep(POLL)
    for p in running:
        if p.poll() is None:
            p.signal(signal.SIGKILL)


def _event_name(line: str) -> Optional[str]:
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line).get("event")
    except ValueError:
        return None
