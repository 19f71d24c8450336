"""A read-only view of one results folder, as the checks see it: manifest, captures and program logs."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .. import tcpflow
from ..errors import LabError
from .registry import MissingInput


class Context:
    def __init__(self, folder: Path):
        self.folder = folder
        path = folder / "manifest.json"
        try:
            self.manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"{folder}: not a results folder (no manifest.json)") from None
        except ValueError as e:
            raise LabError(f"{path}: not valid JSON: {e}") from None
        _check_shape(path, self.manifest)
        self._flows = lru_cache(maxsize=None)(self._analyze)

    def variables(self) -> dict:
        """What check, plot and measure arguments may name: the run's parameters and `{<host>.ip}`."""
        out = dict(self.manifest.get("parameters", {}))
        out.update({f"{h}.ip": ip for h, ip in (self.manifest.get("addresses") or {}).items()})
        return out

    @property
    def hz(self) -> Optional[int]:
        """The capturing machine's HZ; None when it was unknown (the model then takes the widest tolerance)."""
        hz = (self.manifest.get("kernel") or {}).get("hz")
        return int(hz) if hz else None

    def capture_file(self, capture: str) -> Path:
        path = self.folder / f"{capture}.pcap"
        if path.exists():
            return path
        # A capture point the backend lacked (an SSH inventory without an observer) is stood for by
        # another capture, the first the manifest lists as doing so (source before dest).
        for c in self.manifest.get("captures") or []:
            if isinstance(c, dict) and capture in (c.get("stands_for") or []) and (self.folder / f"{c.get('name')}.pcap").exists():
                return self.folder / f"{c['name']}.pcap"
        raise MissingInput(f"capture {path.name} is missing from the results folder")

    def flows(self, capture: str) -> list[tcpflow.Flow]:
        return self._flows(capture)

    def _analyze(self, capture: str) -> list[tcpflow.Flow]:
        return tcpflow.analyze_file(self.capture_file(capture))

    def events(self, program: str) -> list[dict]:
        path = self.folder / f"{program}.log"
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

    def client_flow(self, capture: str, client: str) -> tcpflow.Flow:
        """The connection the client program reported opening, found in the capture by its local port."""
        connected = self.event(client, "connected")
        if connected is None:
            raise MissingInput(f"{client}.log has no 'connected' event: the client never connected")
        port = int(connected["local_port"])
        for flow in self.flows(capture):
            if flow.client[1] == port:
                return flow
        raise MissingInput(f"{capture}.pcap has no TCP connection from the client's port {port}")


def _check_shape(path: Path, m: object) -> None:
    """A manifest edited by hand or written by another tool: refuse it in one line rather than fail deep inside a check."""
    def bad(what: str) -> LabError:
        return LabError(f"{path}: not a tcplab manifest: {what}")

    if not isinstance(m, dict):
        raise bad("expected a mapping")
    if not isinstance(m.get("parameters"), dict) or not isinstance(m.get("checks"), list):
        raise bad("needs a mapping 'parameters' and a list 'checks'")
    if any(not isinstance(c, dict) or not isinstance(c.get("check"), str) for c in m["checks"]):
        raise bad("each entry of 'checks' is a mapping with a 'check' name")
    if any(not isinstance(c, dict) or not isinstance(c.get("plot"), str) for c in m.get("plots") or []):
        raise bad("each entry of 'plots' is a mapping with a 'plot' name")
    if m.get("kernel") is not None and not isinstance(m["kernel"], dict):
        raise bad("'kernel' is a mapping")
    if not isinstance(m.get("timeline") or [], list) or any(not isinstance(e, dict) for e in m.get("timeline") or []):
        raise bad("'timeline' is a list of mappings")
