"""Step kinds for the captures: start tcpdump (`capture`), stop every capture (`stop_captures`),
and bring captures and logs back to the results folder (`collect`)."""
from __future__ import annotations

import re
from typing import Any

from ... import ui
from ..yamlfile import Fields
from .base import HOST, NUMBER, STRING, Capture, Run, Scenario, Step, StepKind

# Bytes kept of each packet: every header the checks read, with room for options; 0 keeps whole packets.
DEFAULT_SNAPLEN = 256
CAPTURE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
TCPDUMP_START = 10.0  # seconds tcpdump may take to say it listens


def tcpdump_argv(iface: str, path: str, snaplen: int, filt: str = "", buffer_kib: int = 0) -> list[str]:
    """tcpdump writing a capture that keeps its last packets when stopped with SIGINT.

    --immediate-mode: libpcap otherwise hands packets over in ring blocks, and the block still open
    when SIGINT arrives is lost (the abort's RST, typically). -U writes each packet as it comes;
    -Z root keeps tcpdump able to write the lab's folder.
    """
    argv = ["tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-Z", "root", "-s", str(snaplen), "-w", path]
    argv += ["-B", str(buffer_kib)] if buffer_kib else []  # a bigger kernel buffer, for bulk rates
    return argv + ([filt] if filt else [])


class CaptureStep(StepKind):
    """Starts tcpdump on host:interface into <name>.pcap (name: the host's, unless given), and waits
    until it listens, so nothing that follows is missed."""

    name = "capture"
    fields = {"host": HOST, "interface": STRING, "filter": STRING, "name": STRING, "snaplen": NUMBER}
    required = ("host", "interface")

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        name = capture_name(args)
        if not CAPTURE_NAME_RE.match(name):
            raise f.error("name", f"{name!r}: a capture name is a file name: letters, digits, '_' and '-'")
        if any(s.kind == self.name and capture_name(s.args) == name for s in earlier):
            raise f.error("name", f"a capture named {name!r} already exists; give this one a distinct name")

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        name = capture_name(step.args)
        host, iface, filt = step.args["host"], step.args["interface"], step.args.get("filter", "")
        snaplen = int(step.args.get("snaplen", DEFAULT_SNAPLEN))
        targets = run.hosts.capture_targets(host, iface)
        moved = len(targets) > 1
        for target, target_iface in targets:
            same = next((c for c in run.captures.values() if (c.host, c.interface, c.filter) == (target, target_iface, filt)), None)
            if moved and same is not None:
                ui.step(f"{target}:{target_iface} is already captured ({same.name}.pcap): it stands for {name} too")
                same.stands_for.append(name)
                continue
            # A capture moved to other hosts is named after the host it runs on.
            own = (target if target not in run.captures else f"{name}-{target}") if moved else name
            while own in run.captures:  # a later step's own name may be taken already: never reuse a file
                own += "_"
            _start(run, own, target, target_iface, filt, snaplen, stands_for=[name] if moved else [])


def capture_name(args: dict[str, Any]) -> str:
    return str(args.get("name", args["host"]))


def _start(run: Run, name: str, host: str, iface: str, filt: str, snaplen: int, stands_for: list[str]) -> None:
    path = run.hosts.work_path(host, f"{name}.pcap")
    ui.step(f"capture on {host}:{iface}" + (f" ({filt})" if filt else "") + (f", standing for {', '.join(stands_for)}" if stands_for else ""))
    proc = run.spawn(host, f"tcpdump-{name}", tcpdump_argv(iface, path, snaplen, filt))
    run.captures[name] = Capture(name, host, iface, filt, path, snaplen, proc, stands_for=list(stands_for))
    # Nothing may start before tcpdump listens, or the handshake is missing from the capture.
    run.wait_for(proc, lambda out, err: "listening on" in err, TCPDUMP_START, f"tcpdump on {host}:{iface} to start")


class StopCaptures(StepKind):
    """Stops every capture with SIGINT, so tcpdump writes its last packets and its counts."""

    name = "stop_captures"
    fields: dict[str, str] = {}

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        run.stop_captures(announce=True)


class Collect(StepKind):
    """Copies every capture, program log and state trace into the results folder."""

    name = "collect"
    fields: dict[str, str] = {}

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        run.collect(announce=True)
