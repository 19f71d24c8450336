"""What a lab has created, written *before* each resource is made, so `down` can undo it after a SIGKILL."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from ..errors import LabError
from ..naming import LAB_NAME_RE, STATE_ROOT, state_dir
from ..onhost import procs

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
    # None: no record (the state file was lost), so `down` goes by the lab's name; []: the run made none.
    namespaces: Optional[list[str]] = None
    containers: list[str] = field(default_factory=list)
    processes: list[dict] = field(default_factory=list)  # {pid, start, host, name}
    inventory: str = ""  # the SSH backend's inventory file, so `down --lab X` finds the machines
    # Inventory roles the lab has touched; None when unknown (`down --inventory` without a record: all).
    machines: Optional[list[str]] = None
    traces: list[str] = field(default_factory=list)  # tracefs instances (lab/backends/localtrace.py)
    mounts: list[str] = field(default_factory=list)  # tracefs mounts of the lab's own
    mode: str = ""  # "hands-on": a person works on the hosts; its owner is the lab's keeper (lab/handson/keeper.py)

    @classmethod
    def owned(cls, lab: str, backend: str, exercise: str) -> "LabState":
        """A new lab's state, owned by this process (so `down` can tell a running lab from a leftover), saved."""
        me = os.getpid()
        state = cls(lab, backend, exercise, owner_pid=me, owner_start=procs.start_time(me), namespaces=[])
        state.save()
        return state

    @property
    def dir(self) -> Path:
        return state_dir(self.lab)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.dir / STATE_FILE)

    def add_namespace(self, name: str) -> None:
        self.namespaces = [*(self.namespaces or []), name]
        self.save()

    def add_container(self, name: str) -> None:
        self.containers.append(name)
        self.save()

    def add_machine(self, role: str) -> None:
        self.machines = [*(self.machines or []), role]
        self.save()

    def drop_machine(self, role: str) -> None:
        self.machines = [m for m in self.machines or [] if m != role]
        self.save()

    def add_trace(self, path: str) -> None:
        self.traces.append(path)
        self.save()

    def add_mount(self, path: str) -> None:
        self.mounts.append(path)
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
    # Only names a lab can have: other folders here are not labs (the Swarm sandboxes' `swarm-sandbox`).
    return sorted(p.name for p in STATE_ROOT.iterdir() if p.is_dir() and LAB_NAME_RE.match(p.name))


@contextlib.contextmanager
def exclusive(lab: str) -> Iterator[None]:
    """Held by `up` for its whole run, so two `up --lab X` started at once cannot both build lab X."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    # The lock file sits beside the state folder, not in it, so removing the state never frees it early.
    path = STATE_ROOT / f"{lab}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"lab {lab} is in use by another tcplab command (`up`, or a hands-on lab's keeper); choose another --lab or wait for it") from None
        try:
            yield
        finally:
            # Unlinked while still held: a later `up` makes a fresh file; nothing of this run stays behind.
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def drop_lock(lab: str) -> None:
    """Removes the lab's lock file, unless an `up` holds it."""
    path = STATE_ROOT / f"{lab}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
