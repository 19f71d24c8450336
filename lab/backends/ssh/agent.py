"""The lab's agent on an SSH machine (lab/onhost/agent.py), as the backend calls it: uploaded into the
lab's folder with the modules it imports, then run once per command (spawn, signal, stop-all, facts,
trace-start, trace-stop, trace-remove), under sudo where the inventory says so."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Optional

from ... import errors
from ...errors import LabError
from ...onhost import handson, pathrtt, procs, sysinfo, tracefs
from ..base import Process
from .session import Session

# The agent and what it imports, uploaded side by side (errors.py: tracefs raises its TraceError), and the
# hands-on helper. The
# agent itself is not imported here: it is a program of the machine's, whose imports are flat.
FILES = [Path(procs.__file__).with_name("agent.py")] + [Path(m.__file__) for m in (procs, sysinfo, tracefs, errors, handson, pathrtt)]
UNAVAILABLE = 3  # the agent's exit status when a machine cannot trace (no tracefs, no tracepoint)


def upload(s: Session) -> None:
    folder = f"{s.lab_dir}/agent"
    s.mkdirs(folder)
    for path in FILES:
        s.put(path, f"{folder}/{path.name}")


def call(s: Session, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return s.run(["python3", f"{s.lab_dir}/agent/agent.py", *args], timeout=timeout, check=check)


def answer(s: Session, *args: str, timeout: float = 30) -> object:
    """A command whose answer is JSON, read back."""
    return s.json(call(s, *args, timeout=timeout).stdout, "the agent's answer")


def spawn(s: Session, name: str, argv: list[str]) -> "AgentProcess":
    """Starts a program; the agent records it on the machine before it answers."""
    r = call(s, "spawn", s.lab_dir, name, *argv)
    try:
        pid = int(r.stdout.split()[0])
    except (IndexError, ValueError):
        raise LabError(f"{s.machine}: {name} did not start: {r.stderr.strip() or r.stdout.strip()}") from None
    return AgentProcess(s, name, pid)


class AgentProcess(Process):
    """A program the agent started; its exit status appears in <name>.status when it ends."""

    def __init__(self, session: Session, name: str, pid: int):
        folder = session.lab_dir
        super().__init__(name, session.role, pid, f"{folder}/{name}.log", f"{folder}/{name}.err")
        self.session = session
        self._status: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self._status is None:
            text = self.session.read_file(f"{self.session.lab_dir}/{self.name}.status")
            if text.strip():
                self._status = int(text)
        return self._status

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            call(self.session, "signal", self.session.lab_dir, self.name, signal.Signals(sig).name)
