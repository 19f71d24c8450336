"""A hands-on lab's record, in its state folder (handson.json): what was asked (the exercise, its
`--set`, the backend), how far the keeper is, the steps with their commands for this lab and when
each was seen done, what the wire has shown so far, and a finish request and its result. The keeper
writes it; `start`, `steps`, `watch`, `status` and `finish` read it. Written whole, by rename."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..naming import state_dir
from ..onhost import procs

FILE = "handson.json"
REQUEST = "finish-request.json"  # written by `invoke finish` beside the record, which the keeper alone writes
RESULT = "finish.json"  # in the results folder: what the finish did
CLAIM_FRESH = 30.0  # seconds a claimed record may wait for its keeper before another start takes it over
STARTING, READY, FINISHING, FINISHED, STOPPED = "starting", "ready", "finishing", "finished", "stopped"


@dataclass
class Record:
    lab: str
    exercise: str
    sets: list[str]
    backend: str
    inventory: Optional[str] = None
    accept_new_host_keys: bool = False
    # Parameters judged at these values (a class's variant, `start --strict`), not at what the person's programs set.
    assigned: dict[str, Any] = field(default_factory=dict)
    status: str = STARTING
    message: str = ""  # what is going on
    keeper: int = 0  # its PID
    started: float = field(default_factory=time.time)
    ready_at: Optional[float] = None
    intro: str = ""
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {dir, events, iface, mark}
    # {do, why, host, run, kinds, done_at}: the exercise's steps, filled in for this lab
    steps: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, Any] = field(default_factory=dict)  # {events: [[time, text]], next: str, updated: time}
    finish: Optional[dict[str, Any]] = None  # {folder, keep}: asked by `invoke finish` (REQUEST)
    result: Optional[dict[str, Any]] = None  # {folder, undone, error}: what the finish did (RESULT, in the folder)

    @property
    def path(self) -> Path:
        return state_dir(self.lab) / FILE

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, self.path)

    def claim(self) -> bool:
        """Writes the record of a lab being started, unless one is there (another `start` of the same lab)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                old = load(self.lab)
                if old is not None and (procs.same_process(old.keeper, None) or (not old.keeper and time.time() - old.started < CLAIM_FRESH)):
                    return False
                self.path.unlink(missing_ok=True)  # a start that died before its keeper ran
                continue
            os.close(fd)
            self.save()
            return True
        return False

    def done(self) -> int:
        """How many steps were seen done."""
        return sum(1 for s in self.steps if s.get("done_at"))

    def reached(self) -> str:
        """'step 3 of 5 done' or what the keeper is doing."""
        if self.status != READY:
            return {STARTING: "starting", FINISHING: "finishing", FINISHED: "finished", STOPPED: "stopped"}.get(self.status, self.status)
        return f"{self.done()} of {len(self.steps)} steps seen done"


def load(lab: str) -> Optional[Record]:
    path = state_dir(lab) / FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = {k: v for k, v in data.items() if k in Record.__dataclass_fields__}
    try:
        return Record(**known)
    except TypeError:
        return None


def ask_finish(lab: str, folder: Path, keep: bool) -> None:
    path = state_dir(lab) / REQUEST
    tmp = path.with_suffix(".tmp")
    # The keeper works from another folder (the repository): a relative path would land elsewhere.
    tmp.write_text(json.dumps({"folder": str(folder.absolute()), "keep": keep}))
    os.replace(tmp, path)


def finish_request(lab: str) -> dict[str, Any]:
    return json.loads((state_dir(lab) / REQUEST).read_text())


def write_result(folder: Path, result: dict[str, Any]) -> None:
    (folder / RESULT).write_text(json.dumps(result, indent=1) + "\n")


def read_result(folder: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((folder / RESULT).read_text())
    except (OSError, ValueError):
        return None
