"""One lab of the lab server, run in a process of its own: an automated run (as `invoke up`) or a
hands-on lab (as `invoke start`, then `finish` when asked), with its progress sent to the lab's
event file instead of a terminal.

Why a process per lab, in a session of its own: a lab that crashes, hangs or eats memory takes
nothing else with it, neither the server nor another student's lab; a SIGKILL of the server leaves
it running, so a restarted server finds it and carries on watching it; and its signals are its own
(SIGTERM interrupts its run and tears its lab down, as Ctrl-C does `up`).

The server and a worker talk through files in the lab's folder under the server's data folder:
    job.json        what to run (written by the server before the worker starts)
    events.jsonl    what happened: {"ts", "kind": state|progress|warning|error, "text"}, one a line
    request.json    {"action": "finish"} or {"action": "stop"} (written by the server)
    outcome.json    how it ended: {"code", "folder", "error"} (written last)

    python -m lab.serve.worker LABDIR          run the lab described in LABDIR/job.json
    python -m lab.serve.worker --spare DIR PID wait, imported and ready, until DIR/assign names a LABDIR, then run it
                                               (ending if server PID, its parent, or DIR goes first)
    python -m lab.serve.worker --down LAB      remove what lab LAB left (as `invoke down --lab LAB`)

The server keeps one spare worker waiting: a lab then starts without waiting for Python to start and
import tcplab (half a second, more on a busy machine). A spare whose server is gone ends itself.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from .. import ui
from ..errors import LabError
from ..handson import record
from ..session import EXIT_BAD_INPUT, EXIT_INTERRUPTED, down, handson
from ..session import run as run_mod
from ..session import swarmrun

JOB, EVENTS, REQUEST, OUTCOME, LOG = "job.json", "events.jsonl", "request.json", "outcome.json", "worker.log"
ASSIGN = "assign"  # in a spare's folder: the lab folder it is to run
TIMED = re.compile(r"^\s*\d+\.\d+s\s+")
TICK = 0.2


class EventSink(ui.Sink):
    """Progress as events in the lab's file (and, through the parent class, in the worker's log)."""

    def __init__(self, path: Path):
        self.path = path

    def _write(self, kind: str, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"ts": time.time(), "kind": kind, "text": text}) + "\n")

    def step(self, text: str, elapsed: float) -> None:
        super().step(text, elapsed)
        self._write("progress", text)

    def warn(self, text: str) -> None:
        super().warn(text)
        self._write("warning", text)

    def error(self, text: str) -> None:
        super().error(text)
        self._write("error", text)

    def rule(self, text: str) -> None:
        super().rule(text)
        self._write("progress", text)

    def relay(self, line: str) -> None:
        super().relay(line)
        text = TIMED.sub("", line.strip())
        for kind in ("warning", "error"):
            if text.startswith(f"{kind}:"):
                self._write(kind, text[len(kind) + 1:].strip())
                return
        self._write("progress", text)

    def stage(self, name: str) -> None:
        self._write("state", name)


def _request(folder: Path) -> Optional[str]:
    try:
        return str(json.loads((folder / REQUEST).read_text()).get("action"))
    except (OSError, ValueError, AttributeError):
        return None


def _outcome(folder: Path, code: int, results: Optional[Path], error: Optional[str]) -> None:
    tmp = folder / (OUTCOME + ".tmp")
    tmp.write_text(json.dumps({"code": code, "folder": str(results) if results else None, "error": error}))
    os.replace(tmp, folder / OUTCOME)


def _auto(job: dict[str, Any], folder: Path) -> tuple[int, Optional[Path]]:
    if job.get("engine") == "swarm":
        o = swarmrun.up(job["exercise"], job["lab"], job["sets"], job["results"], placed=swarmrun.placed_as(job.get("image")),
                        stop=lambda: _request(folder) == "stop")
        return o.code, o.folder
    o = run_mod.up(job["exercise"], job["lab"], job["backend"], job["sets"], job["results"], False)
    return o.code, o.folder or (Path(job["results"]) if Path(job["results"]).exists() else None)


def _hands_on(job: dict[str, Any], folder: Path) -> tuple[int, Optional[Path]]:
    lab = job["lab"]
    if job.get("engine") == "swarm":
        o = swarmrun.handson(job["exercise"], lab, job["sets"], job.get("assigned") or [], job["results"], lambda: _request(folder),
                             placed=swarmrun.placed_as(job.get("image")))
        return o.code, o.folder
    if not job.get("attach"):  # (a worker re-attached after a restart of the server finds its lab up already)
        try:
            handson.start(job["exercise"], lab, job["backend"], job["sets"], assigned=job.get("assigned") or [])
        except handson.Interrupted as e:
            ui.error(str(e))
            return EXIT_INTERRUPTED, None
    try:
        while True:
            action = _request(folder)
            if action == "finish":
                o = handson.finish(lab, job["results"], False)
                return o.code, o.folder
            if action == "stop":
                raise KeyboardInterrupt
            rec = record.load(lab)
            if rec is None or not handson.keeper_alive(rec):
                raise LabError(f"the lab's keeper ended ({rec.reached() if rec else 'its record is gone'})")
            time.sleep(TICK)
    except KeyboardInterrupt:
        ui.stage("finishing")
        removed = down.down(lab, False)
        ui.step(f"lab {lab} removed: " + ", ".join(removed.get(lab) or ["nothing was left"]))
        return EXIT_INTERRUPTED, None


def main(folder: Path) -> int:
    job = json.loads((folder / JOB).read_text())
    ui.set_sink(EventSink(folder / EVENTS))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, interrupt)
    code, results, error = EXIT_BAD_INPUT, None, None
    try:
        if job["mode"] == "auto":
            code, results = _auto(job, folder)
        else:
            code, results = _hands_on(job, folder)
    except LabError as e:
        error = str(e)
        ui.error(error)
    except KeyboardInterrupt:
        code, error = EXIT_INTERRUPTED, "stopped"
    except Exception as e:  # noqa: BLE001  (the server shows one line; the worker's log keeps the traceback)
        traceback.print_exc()
        error = f"the lab's worker failed: {type(e).__name__}: {e} (its log: {folder / LOG})"
        ui.error(error)
    _outcome(folder, code, results, error)
    return code


def spare(folder: Path, server: int) -> int:
    """Waits for a lab to run; ends when the server that started it (PID `server`) is gone, also if it
    went before this process could look (the server's PID is passed, not read here: a server killed
    while this one still imports leaves it with another parent from the start), or the folder is."""
    while True:
        try:
            lab_folder = Path((folder / ASSIGN).read_text().strip())
            break
        except OSError:
            pass
        if os.getppid() != server or not folder.is_dir():
            return 0
        time.sleep(0.01)
    log = os.open(lab_folder / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return main(lab_folder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--down"]:
        down.down(sys.argv[2], False)
        sys.exit(0)
    if sys.argv[1:2] == ["--spare"]:
        sys.exit(spare(Path(sys.argv[2]), int(sys.argv[3])))
    sys.exit(main(Path(sys.argv[1])))
