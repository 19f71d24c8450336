"""A results folder as checks, plots and measures see it: the folder's files (lab/results/view.py),
plus each capture's TCP connections with every segment labelled, and the state traces read onto
the captures' clock. Each capture is analysed once, however many functions ask."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..errors import MissingInput
from ..results.view import ResultsFolder
from . import statetrace, tcpflow

Traced = list[tuple[Optional[str], list[statetrace.Transition]]]  # (host it was traced on, or None: every host's kernel), transitions


class Context(ResultsFolder):
    def __init__(self, folder: Path):
        super().__init__(folder)
        self._flows = lru_cache(maxsize=None)(self._analyze)
        self._judged: dict[str, set[int]] = {}

    def flows(self, capture: str) -> list[tcpflow.Flow]:
        return self._flows(capture)

    def begin(self) -> None:
        """Starts recording the frames a check looks at (lab/spec/functions.py calls it before each)."""
        self._judged = {}

    def judged(self) -> dict[str, list[int]]:
        """Capture name -> the frames looked at since begin(): the segments the check made events of."""
        return {capture: sorted(frames) for capture, frames in self._judged.items()}

    def _analyze(self, capture: str) -> list[tcpflow.Flow]:
        flows = tcpflow.analyze_file(self.capture_file(capture))
        for flow in flows:
            flow.observer = lambda frame, capture=capture: self._judged.setdefault(capture, set()).add(frame)
        cut = self.finish_began(capture)
        if cut is None:
            return flows
        # Done by hand: what `invoke finish` made (a FIN from a server it stopped, the RST that answers it)
        # is not the person's run, and no check, figure or picture sees it.
        return [f for f in (flow.before(cut) for flow in flows) if len(f)]

    def client_flow(self, capture: str, client: str) -> tcpflow.Flow:
        """The connection the client program reported opening, found in the capture by its local port
        (without the client's log, in a run done by hand: the first one to the exercise's port)."""
        if self.unlogged(client):
            port = (self.manifest.get("parameters") or {}).get("port")
            found = [f for f in self.flows(capture) if port is None or f.server[1] == int(port)]
            if not found:
                raise MissingInput(f"{client}.log is missing, and {capture}.pcap has no TCP connection" + (f" to port {port}" if port else ""))
            return found[0]
        connected = self.event(client, "connected")
        if connected is None:
            # A client whose connect() never completes (syn-retries) logs the port it bound before it: its last attempt.
            connected = next((e for e in reversed(self.events(client)) if e["event"] == "connecting" and "local_port" in e), None)
        if connected is None:
            raise MissingInput(f"{client}.log has no 'connected' event: the client never connected")
        port = int(connected["local_port"])
        for flow in self.flows(capture):
            if flow.client[1] == port:
                return flow
        raise MissingInput(f"{capture}.pcap has no TCP connection from the client's port {port}")

    def traces(self) -> tuple[Traced, dict[str, str]]:
        """Each state trace in the folder with the host it was taken on, and the hosts where tracing
        was unavailable, with why."""
        info = self.manifest.get("state_trace") or {}
        # A folder from before traces were per machine holds one file and one clock.
        entries = info["traces"] if "traces" in info else ([{"file": info.get("file", "states.trace"), "clock": info.get("clock"), "host": None}] if info else [])
        unavailable = dict(info.get("unavailable") or {})
        if not entries and not unavailable:
            raise MissingInput("the manifest names no state trace (was the trace_states step run?)")
        out: Traced = []
        for e in entries:
            path = self.folder / e["file"]
            if not path.exists():
                raise MissingInput(f"{path.name} is missing from the results folder")
            out.append((e.get("host"), statetrace.parse(path.read_text(errors="replace"), [tuple(c) for c in e.get("clock") or []])))
        return out, unavailable
