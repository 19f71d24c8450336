"""What a lab has created, written *before* each resource is made, so `down` can undo it after a SIGKILL."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from . import procs
from .naming import STATE_ROOT, state_dir

STATE_FILE = "state.json"


@dataclass
class LabState:
    lab: str
    backend: str
    exercise: str = ""
    owner_pid: int = 0
    owner_start: Optional[int] = None
    kept: bool = False
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    namespaces: list[str] = field(default_factory=list)
    processes: list[dict] = field(default_factory=list)  # {pid, start, host, name}

    @property
    def dir(self) -> Path:
        return state_dir(self.lab)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.dir / STATE_FILE)

    def add_namespace(self, name: str) -> None:
        self.namespaces.append(name)
        self.save()

    def add_process(self, pid: int, start: Optional[int], host: str, name: str) -> None:
        self.processes.append({"pid": pid, "start": start, "host": host, "name": name})
        self.save()

    def owner_alive(self) -> bool:
        return procs.same_process(self.owner_pid, self.owner_start)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def load(lab: str) -> Optional[LabState]:
    path = state_dir(lab) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = {k: v for k, v in data.items() if k in LabState.__dataclass_fields__}
    return LabState(**known)


def labs() -> list[str]:
    """Every lab with a state folder on this machine, up or left over."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if p.is_dir())
