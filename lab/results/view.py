"""A read-only view of one results folder: its manifest, where each capture's file is, the programs'
JSON events, the timeline's step times. lab/analysis/context.py adds what the captures and traces
mean; checks, plots and measures read a folder through that."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..errors import MissingInput
from . import manifest as manifest_mod

CAPTURE_SUFFIXES = (".pcap", ".pcapng")


class ResultsFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest: dict[str, Any] = manifest_mod.read(folder)

    def variables(self) -> dict[str, Any]:
        """What check, plot and measure arguments may name: the run's parameters, `{<host>.ip}` and `{lab}`."""
        return manifest_mod.variables(self.manifest)

    @property
    def path_rtt_ms(self) -> Optional[float]:
        """The slowest of the path's own round trips before any delay was added (lab/onhost/pathrtt.py),
        if measured: a few microseconds on a bridge, milliseconds between emulated VMs."""
        value = (self.manifest.get("path_rtt") or {}).get("max_ms")
        return float(value) if isinstance(value, (int, float)) else None

    def finish_began(self, capture: str) -> Optional[float]:
        """In a run done by hand, when `invoke finish` began on the machine that took `capture`, by that
        machine's clock (the lab's clock in folders from before it was recorded per machine); None for
        an automated run. What the wire carried after it, finish's stopping the person's programs made."""
        hands = self.manifest.get("hands_on") or {}
        on = (hands.get("finish_began_on") or {}).get(capture)
        began = on if on is not None else hands.get("finish_began")
        return float(began) if isinstance(began, (int, float)) else None

    @property
    def delay_late_ms(self) -> float:
        """How late the user-space delay line (lab/onhost/delayline.py) sent its latest frame against
        its due time, as it measured and recorded; 0 where netem or nothing delayed."""
        late = [((i.get("summary") or {}).get("late_ms") or {}).get("max") for i in self.manifest.get("impairments") or []
                if isinstance(i, dict)]
        return max([float(x) for x in late if isinstance(x, (int, float))], default=0.0)

    def program_host(self, program: str, default: str = "source") -> str:
        """The host a program of the run ran on (manifest "programs"), `default` where the folder does not say."""
        return ((self.manifest.get("programs") or {}).get(program) or {}).get("host", default)

    def sysctl(self, host: str, name: str) -> Optional[int]:
        """A TCP sysctl as the host's network namespace had it when the run began (manifest "sysctls");
        None where the kernel has no such sysctl or the folder does not say."""
        value = ((self.manifest.get("sysctls") or {}).get(host) or {}).get(name)
        try:
            return int(str(value).split()[0]) if value is not None else None
        except (ValueError, IndexError):
            return None

    @property
    def kernel_release(self) -> str:
        """The capturing machine's kernel release ("6.18.15+deb14-amd64"), "" where unknown."""
        return str((self.manifest.get("kernel") or {}).get("release") or "")

    @property
    def hz(self) -> Optional[int]:
        """The capturing machine's HZ; None when it was unknown (the model then takes the widest tolerance)."""
        hz = (self.manifest.get("kernel") or {}).get("hz")
        return int(hz) if hz else None

    def capture_file(self, capture: str) -> Path:
        for suffix in CAPTURE_SUFFIXES:
            path = self.folder / f"{capture}{suffix}"
            if path.exists():
                return path
        # A capture point the backend lacked (an SSH inventory without an observer) is stood for by
        # another capture, the first the manifest lists as doing so (source before dest).
        for c in self.manifest.get("captures") or []:
            if isinstance(c, dict) and capture in (c.get("stands_for") or []) and (self.folder / f"{c.get('name')}.pcap").exists():
                return self.folder / f"{c['name']}.pcap"
        raise MissingInput(f"capture {capture}.pcap is missing from the results folder")

    def unlogged(self, program: str) -> bool:
        """A run done by hand whose program left no log (started outside `invoke shell`): its checks judge
        the packets alone, and say what the log would have told."""
        return self.manifest.get("mode") == "hands-on" and not (self.folder / f"{program}.log").exists()

    def events(self, program: str) -> list[dict]:
        path = self.folder / f"{program}.log"
        if self.unlogged(program):
            return []
        if not path.exists():
            raise MissingInput(f"log {path.name} is missing from the results folder")
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # programs may print other lines; only JSON events count
            if isinstance(ev, dict) and "event" in ev:
                out.append(ev)
        return out

    def event(self, program: str, name: str) -> Optional[dict]:
        return next((e for e in self.events(program) if e["event"] == name), None)

    def step_times(self, kind: str) -> tuple[float, float]:
        """When the timeline's first step of this kind started and finished (wall clock, as the captures)."""
        for entry in self.manifest.get("timeline") or []:
            if entry.get("step") == kind and "finished" in entry:
                return float(entry["started"]), float(entry["finished"])
        raise MissingInput(f"the manifest's timeline has no completed {kind!r} step")
