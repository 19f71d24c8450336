"""Runs an exercise's timeline on a brought-up lab and collects what it produced into the results folder.

Each step's kind (lab/spec/steps) does the step; the Run is what the kinds act on: the lab's hosts,
the programs and captures started so far, and what every kind needs done the same way (a program
started and recorded, a wait on its output, processes stopped, captures and logs collected).
"""
from __future__ import annotations

import json
import re
import signal
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

from .. import ui
from ..backends.base import Backend, Process, StateTracer
from ..backends.labstate import LabState
from ..errors import TimelineError
from ..spec.exercise import Exercise
from ..spec.steps import KINDS, Capture, Step
from ..spec.topology import Impairment
from .impairments import Impairments
from .processes import stop, wait_until

STOP_GRACE, CAPTURE_GRACE = 3.0, 5.0  # seconds before SIGKILL: programs, tcpdump (flushing its buffer)
PATH_RTT_PORT = 9  # discard: closed on a lab host, so a SYN there is answered with a RST


class Run:
    def __init__(self, exercise: Exercise, backend: Backend, state: LabState, folder: Path):
        self.exercise, self.hosts, self.state, self.folder = exercise, backend, state, folder
        self.programs: dict[str, Process] = {}
        self.captures: dict[str, Capture] = {}
        self.argv: dict[str, list[str]] = {}
        self.record: list[dict] = []
        self.collected = False
        self.impairments = Impairments(backend, exercise.topology, state)
        self.tracer: StateTracer = backend.state_tracer(state)
        self.trace_info: dict = {}
        self.path_rtt: dict = {}

    def execute(self, steps: Optional[list[Step]] = None) -> None:
        """The topology's impairments, then the steps: the exercise's timeline unless others are given
        (a hands-on exercise's setup)."""
        self.path_rtt = self._measure_path_rtt()
        for spec in self.exercise.topology.impairments:
            self._step(Step("impair", spec, "topology impairments"), from_topology=True)
        for step in self.exercise.steps if steps is None else steps:
            self._step(step)

    def _step(self, step: Step, **extra: object) -> None:
        entry = {"step": step.kind, **step.args, **extra, "started": time.time()}
        self.record.append(entry)
        KINDS[step.kind].execute(self, step, entry)
        entry["finished"] = time.time()

    def finish(self) -> None:
        """Stops whatever still runs and collects everything; safe after any failure, and idempotent."""
        stop(list(self.programs.values()), signal.SIGTERM, grace=STOP_GRACE)
        try:
            self.impairments.clear()
        finally:  # the captures are stopped and collected whatever happened to the impairments
            self.stop_captures(announce=False)
            if not self.collected:
                self.collect(announce=False)

    def summary(self) -> dict:
        return {
            "timeline": self.record,
            "programs": {
                name: {"host": p.host, "argv": self.argv.get(name), "exit_status": p.poll()} for name, p in self.programs.items()
            },
            "impairments": self.impairments.history,
            **({"state_trace": self.trace_info} if self.trace_info else {}),
            **({"path_rtt": self.path_rtt} if self.path_rtt else {}),
            "captures": [
                {"name": c.name, "host": c.host, "interface": c.interface, "filter": c.filter, "snaplen": c.snaplen,
                 "file": f"{c.name}.pcap", **({"stands_for": c.stands_for} if c.stands_for else {}), **c.stats}
                for c in self.captures.values()
            ],
        }

    def _measure_path_rtt(self) -> dict:
        """The path's own round trip between the first impaired pair, before any delay: on a fast
        bridge a few microseconds, between VMs under emulation a few milliseconds, which a delay's
        check then allows for (lab/checks/states.py)."""
        ex = self.exercise
        delayed = [i for i in ex.impairments if i.delay_ms]
        if not delayed:
            return {}
        src, dst = delayed[0].src, delayed[0].dst
        address = ex.addresses.get(dst)
        if not address:
            return {}
        r = self.hosts.run(src, [*self.hosts.onhost(src, "pathrtt.py"), address, str(PATH_RTT_PORT)], timeout=20, check=False)
        try:
            samples = [float(x) for x in json.loads(r.stdout)]
        except (ValueError, TypeError):
            samples = []
        median = statistics.median(samples) if samples else None
        slowest = max(samples) if samples else None
        ui.step(f"path round trip {src} -> {dst} before any delay: " +
                (f"{median:.3f} ms median, {slowest:.3f} ms slowest of {len(samples)}" if samples else "not measured (no answer)"))
        return {"from": src, "to": dst, "port": PATH_RTT_PORT, "samples_ms": samples, "median_ms": median, "max_ms": slowest}

    # --- what the step kinds act on (lab/spec/steps/base.py's Run) -----------------------------------

    def spawn(self, host: str, name: str, argv: list[str]) -> Process:
        return self.hosts.spawn(host, name, argv, self.state)

    def started(self, program: str, where: str) -> Process:
        if program not in self.programs:
            raise TimelineError(f"{where}: program {program} has not been started (add a `start: {program}` step before)")
        return self.programs[program]

    def wait_for(self, proc: Process, seen: Callable[[str, str], bool], timeout: float, what: str) -> None:
        def output() -> tuple[str, str]:
            return (self.hosts.read_file(proc.host, proc.stdout).decode(errors="replace"),
                    self.hosts.read_file(proc.host, proc.stderr).decode(errors="replace"))

        exited: list[int] = []

        def done() -> bool:
            if seen(*output()):
                return True
            status = proc.poll()
            if status is None:
                return False
            # One last read: the program may have printed the line just before exiting.
            if seen(*output()):
                return True
            exited.append(status)
            return True

        if not wait_until(done, timeout):
            raise TimelineError(f"timed out after {timeout:g} s waiting for {what}")
        if exited:
            tail = (output()[1].strip().splitlines() or ["no output"])[-1]
            raise TimelineError(f"{proc.name} on {proc.host} exited with status {exited[0]} before {what.replace(proc.name + ' ', '', 1)}: {tail}")

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        return wait_until(done, timeout)

    def stop(self, processes: list[Process], sig: int, grace: float) -> None:
        stop(processes, sig, grace)

    def stop_captures(self, announce: bool) -> None:
        running = [c.process for c in self.captures.values() if c.process.poll() is None]
        if running and announce:
            ui.step("stop captures")
        # SIGINT makes tcpdump flush its buffer and print its packet counts.
        stop(running, signal.SIGINT, grace=CAPTURE_GRACE)
        for c in self.captures.values():
            err = self.hosts.read_file(c.host, c.process.stderr).decode(errors="replace")
            for key, pattern in (("packets_captured", r"(\d+) packets? captured"), ("packets_dropped_by_kernel", r"(\d+) packets? dropped by kernel")):
                m = re.search(pattern, err)
                if m:
                    c.stats[key] = int(m.group(1))

    def collect(self, announce: bool) -> None:
        if announce:
            ui.step(f"collect captures and logs into {self.folder}")
        for c in self.captures.values():
            self.hosts.fetch(c.host, c.path, self.folder / f"{c.name}.pcap")
            self.hosts.fetch(c.host, c.process.stderr, self.folder / f"tcpdump-{c.name}.err")
        for name, p in self.programs.items():
            self.hosts.fetch(p.host, p.stdout, self.folder / f"{name}.log")
            self.hosts.fetch(p.host, p.stderr, self.folder / f"{name}.err")
        for path in self.tracer.stop(self.folder):
            ui.step(f"state trace: {path}")
        self.collected = True

    def impair(self, items: list[Impairment]) -> dict:
        return self.impairments.set(items)

    def unimpair(self) -> None:
        self.impairments.clear()

    def trace_states(self, port: int) -> None:
        self.trace_info = self.tracer.start(port)
