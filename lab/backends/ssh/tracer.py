"""Tracing TCP state changes on SSH machines, for the trace_states step: on each machine with a TCP
endpoint (source and dest), by the agent, in a tracefs instance named after the lab and the machine
(machines may share a kernel, as the tests' stand-ins do). A machine without tracefs or root is
reported as unavailable, and the run goes on without its trace."""
from __future__ import annotations

import subprocess
from pathlib import Path

from ... import ui
from ...errors import LabError
from ...naming import trace_instance
from . import agent
from .session import Session


class SshTracer:
    """The trace on source and dest, each on its own machine."""

    def __init__(self, lab: str, sessions: dict[str, Session]):
        self.lab = lab
        self.sessions = sessions  # role -> its machine, for the roles the exercise uses
        self.traced: dict[str, list] = {}  # role -> its clock readings
        self.info: dict = {}

    def start(self, port: int) -> dict:
        self.info = {"port": int(port), "traces": [], "unavailable": {}}
        for role in (r for r in ("source", "dest") if r in self.sessions):
            s = self.sessions[role]
            name = trace_instance(self.lab, role)
            r = agent.call(s, "trace-start", s.lab_dir, name, str(int(port)), check=False)
            if r.returncode == agent.UNAVAILABLE:
                why = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
                self.info["unavailable"][role] = why
                ui.warn(f"{s.machine}: {why}; the checks that read its transitions will fail")
                continue
            self.traced[role] = [self._clock(s, r, "start")]
            self.info["traces"].append({"file": f"states-{role}.trace", "host": role, "clock": self.traced[role]})
            ui.step(f"{s.machine}: trace TCP state changes of port {port} in tracefs instance {name}")
        return self.info

    def stop(self, folder: Path) -> list[Path]:
        written = []
        for role, clock in list(self.traced.items()):
            del self.traced[role]
            s = self.sessions[role]
            try:
                clock.append(self._clock(s, agent.call(s, "trace-stop", s.lab_dir, check=False), "stop"))
                out = folder / f"states-{role}.trace"
                s.fetch(f"{s.lab_dir}/states.trace", out)
            except LabError as e:
                # The other machine's trace is still worth having; teardown removes this one's instance.
                self.info["traces"] = [t for t in self.info["traces"] if t["host"] != role]
                self.info["unavailable"][role] = str(e)
                ui.warn(str(e))
                continue
            written.append(out)
        return written

    @staticmethod
    def _clock(s: Session, r: subprocess.CompletedProcess, what: str) -> list:
        answer = s.json(r.stdout, "the agent's answer") if r.returncode == 0 else None
        if not isinstance(answer, dict) or not isinstance(answer.get("clock"), list):
            why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            raise LabError(f"{s.machine}: the state trace did not {what}: {why}")
        return answer["clock"]
