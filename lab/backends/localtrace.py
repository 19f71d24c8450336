"""Tracing TCP state changes on this machine's kernel, which the netns and Docker hosts all share,
for the `trace_states` step: a tracefs instance of the lab's own (`instances/tcplab_<lab>`).

The instance has its own buffer, so nothing else that traces on this machine is disturbed, and its
own clock setting: `mono`, the clock Python's time.monotonic() reads, so the run can turn event
times into wall-clock times and line them up with the pcaps (lab/analysis/statetrace.py reads it).
Events are machine-wide with no namespace id: the filter keeps the exercise's TCP port only.

Where tracefs is not mounted, it is mounted at a mount point of the lab's own, and unmounted at
teardown. The instance and the mount are recorded in the lab's state before they are made.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from .. import ui
from ..errors import LabError, TraceError
from ..naming import STATE_ROOT, trace_instance
from ..onhost import tracefs
from .labstate import LabState

SYSTEM_TRACEFS = Path(tracefs.SYSTEM)


class StateTrace:
    """The trace on this machine's kernel: one for every host."""

    def __init__(self, lab: str, state: LabState):
        self.lab, self.state = lab, state
        self.instance: Optional[Path] = None
        self.clock: list[tuple[float, float]] = []  # (monotonic, wall) pairs read around the run

    def start(self, port: int) -> dict:
        """Starts tracing; returns the manifest's state_trace (its clock list fills in as the run goes)."""
        try:
            root = tracefs.root(str(STATE_ROOT / f"{self.lab}.tracefs"), self.state.add_mount)
            self.clock.append((time.monotonic(), time.time()))
            self.instance = Path(tracefs.start(root, trace_instance(self.lab), port, self.state.add_trace))
        except TraceError as e:
            raise LabError(f"{e}; `invoke down --lab {self.lab}` removes what is left" if "exists already" in str(e) else str(e)) from None
        ui.step(f"trace TCP state changes of port {port} in tracefs instance {self.instance.name}")
        return {"port": int(port), "traces": [{"file": "states.trace", "host": None, "clock": self.clock}]}

    def stop(self, folder: Path) -> list[Path]:
        """Stops tracing and writes the raw trace (events and stacks) into the results folder."""
        if self.instance is None:
            return []
        out = folder / "states.trace"
        try:
            text = tracefs.stop(str(self.instance))
        finally:
            self.clock.append((time.monotonic(), time.time()))
        out.write_text(text)
        remove(self.state)
        self.instance = None
        return [out]


def remove(state: LabState) -> list[str]:
    """Removes the lab's tracefs instances and unmounts its own tracefs mount; idempotent. Without a
    record (the state file lost), the instance named after the lab under the system's tracefs."""
    paths = state.traces or [str(SYSTEM_TRACEFS / "instances" / trace_instance(state.lab))]
    removed, left, mounts_left = tracefs.remove(paths, state.mounts)
    # What could not be removed stays recorded, so the next `down` tries again.
    state.traces, state.mounts = left, mounts_left
    return removed
