"""The lab server's labs over their lives: queued, started by a worker process of their own
(lab/serve/worker.py) at most `max_starting` at a time, watched through the files their workers and
keepers write, finished when asked or when idle, and, after a restart of the server, re-attached
(their worker lives on, or, for a hands-on lab, its keeper) or torn down and marked failed.

Every tick (TICK) reads what changed into the database and bumps `version`, which the pages' event
streams wait on; nothing here blocks for long, and what could (removing a dead lab) runs in a
process of its own."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..handson import record
from ..naming import check_lab_name, state_dir
from ..onhost import procs
from ..session import handson
from ..spec import exercise as exercise_mod
from .store import ACTIVE, Store
from .worker import ASSIGN, EVENTS, JOB, LOG, OUTCOME, REQUEST

TICK = 0.1
INPUT_GRAIN = 2.0  # s: a lab's last keystroke is recorded this finely (a keystroke is no change to show every page)
REPO = exercise_mod.EXERCISE_DIR.parent
LAB_PREFIX = "sv"  # tcplab lab names of the server's labs: sv<id>
PER_STUDENT = 3  # active labs one student may have at once


class Refused(Exception):
    """A lab the server will not take now (full, or too many of the student's own); said to the caller as is."""


@dataclass
class Limits:
    max_labs: int
    max_starting: int
    idle_minutes: float


class Supervisor:
    def __init__(self, store: Store, data: Path, backend: str, limits: Limits, engine: str = "local", image: Optional[str] = None):
        self.store, self.data, self.backend, self.limits = store, data, backend, limits
        # local, or swarm: labs placed on the Swarm (lab/session/swarmrun.py) as jobs of `image`, which the
        # server put on the nodes once before serving: its workers neither hash nor load it again.
        self.engine, self.image = engine, image
        self.version = 0
        self.changed = asyncio.Event()
        self._children: dict[str, subprocess.Popen] = {}  # lab id -> its worker, when we started it
        self._removers: dict[str, subprocess.Popen] = {}
        self._sizes: dict[str, int] = {}
        self._spare: Optional[tuple[subprocess.Popen, Path, Optional[int]]] = None  # a worker waiting for a lab, its folder, its start
        self.last_input: dict[str, float] = {}  # lab id -> the last keystroke in one of its terminals
        self._records: dict[str, tuple[tuple[float, int], Any]] = {}  # lab id -> (its record's mtime and size, what _picture made of it)
        # The supervisor's tick runs in a thread (reading 40 labs' files must not hold the event loop); a lab's start
        # is decided under this lock, by the tick or by a POST, never by both.
        self._lock = threading.Lock()
        self._just_ended: list[str] = []  # labs that ended in the last tick, for on_ended on the event loop
        # Told when a lab has ended (its shells are closed then).
        self.on_ended: Callable[[str], None] = lambda lab_id: None

    # --- asked for by the API ---------------------------------------------------------------------

    def add(self, student: str, exercise: str, mode: str, sets: dict[str, Any], variant: dict[str, Any],
            retry_of: Optional[str] = None) -> dict[str, Any]:
        active = self.store.labs(states=ACTIVE)
        if len(active) >= self.limits.max_labs:
            raise Refused(f"the server is full: {len(active)} labs are running or waiting, its limit (--max-labs {self.limits.max_labs}); "
                          f"try again when one has finished")
        if sum(1 for lab in active if lab["student"] == student) >= PER_STUDENT:
            raise Refused(f"you have {PER_STUDENT} labs running or waiting already: finish or delete one first")
        lab_id = secrets.token_hex(3)
        while self.store.lab(lab_id) is not None:
            lab_id = secrets.token_hex(3)
        now = time.time()
        self.store.add_lab({"id": lab_id, "student": student, "exercise": exercise, "mode": mode, "state": "queued",
                            "sets": sets, "variant": variant, "lab": check_lab_name(LAB_PREFIX + lab_id), "backend": self.backend,
                            "created": now, "updated": now, "retry_of": retry_of})
        with self._lock:
            self._start_queued()  # at once when a start is free: no tick to wait for
        self._bump()
        return self.store.lab(lab_id) or {}

    def finish(self, lab: dict[str, Any]) -> None:
        """A hands-on lab finished and judged; an automated one interrupted; a queued one never started."""
        with self._lock:
            self._finish(self.store.lab(lab["id"]) or lab)
        self._bump()

    def _finish(self, lab: dict[str, Any]) -> None:
        if lab["state"] == "queued":
            self._stop(lab, "stopped before it started")
        elif lab["state"] in ("starting", "running"):
            self._ask(lab, "finish" if lab["mode"] == "hands-on" and lab["state"] == "running" else "stop")

    def stop(self, lab: dict[str, Any], why: str) -> None:
        """Ended without a verdict; its results so far stay."""
        with self._lock:
            self._stop(self.store.lab(lab["id"]) or lab, why)
        self._bump()

    def _stop(self, lab: dict[str, Any], why: str) -> None:
        if lab["state"] == "queued":
            self.store.update(lab["id"], state="failed", error=why, ended=time.time())
        elif lab["state"] in ("starting", "running", "finishing"):
            self.store.update(lab["id"], error=why)
            self._ask(lab, "stop")

    def note(self, lab: dict[str, Any], kind: str, text: str) -> None:
        """An event of the server's own in the lab's stream (appended to its worker's file, whose lines the stream numbers)."""
        with open(self.folder(lab["id"]) / EVENTS, "a") as f:
            f.write(json.dumps({"ts": time.time(), "kind": kind, "text": text}) + "\n")

    def _ask(self, lab: dict[str, Any], action: str) -> None:
        folder = self.folder(lab["id"])
        tmp = folder / (REQUEST + ".tmp")
        tmp.write_text(json.dumps({"action": action}))
        os.replace(tmp, folder / REQUEST)
        if lab["mode"] == "auto" or lab["state"] == "starting":
            # An automated run has nothing to finish early: it is interrupted, as Ctrl-C does `up`.
            self._signal(lab)

    def _signal(self, lab: dict[str, Any]) -> None:
        if lab.get("worker_pid") and procs.same_process(lab["worker_pid"], lab.get("worker_start")):
            os.kill(lab["worker_pid"], signal.SIGTERM)

    # --- the loop ---------------------------------------------------------------------------------

    def folder(self, lab_id: str) -> Path:
        return self.data / "labs" / lab_id

    def results(self, lab: dict[str, Any]) -> Path:
        return self.data / "results" / lab["student"] / f"{lab['exercise']}-{lab['id']}"

    def _bump(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        self.recover()
        shutil.rmtree(self.data / "spare", ignore_errors=True)  # a killed server's spare has ended itself (and left its folder)
        self._keep_spare()
        last_error = ""
        while True:
            try:
                if await asyncio.to_thread(self.tick):
                    self._bump()
                self._tell_ended()
            except Exception as e:  # noqa: BLE001  (one bad lab must not stop the server watching the others)
                said = f"{type(e).__name__}: {e}"
                if said != last_error:  # once, with where, not every tick
                    traceback.print_exc()
                    last_error = said
            await asyncio.sleep(TICK)

    def _tell_ended(self) -> None:
        ended, self._just_ended = self._just_ended, []
        for lab_id in ended:
            self.on_ended(lab_id)

    def tick(self) -> bool:
        """One look at every active lab; whether anything changed. Safe in a thread of its own."""
        with self._lock:
            return self._tick()

    def _tick(self) -> bool:
        changed = False
        for lab in self.store.labs(states=("starting", "running", "finishing")):
            changed |= self._watch(lab)
        changed |= self._start_queued()
        changed |= self._idle()
        for lab_id, p in list(self._removers.items()):
            if p.poll() is not None:
                del self._removers[lab_id]
        return changed

    def _start_queued(self) -> bool:
        starting = len(self.store.labs(states=("starting",)))
        queued = sorted(self.store.labs(states=("queued",)), key=lambda lab: lab["seq"])
        launched = queued[: max(0, self.limits.max_starting - starting)]
        for lab in launched:
            self._launch(lab)
        return bool(launched)

    def _launch(self, lab: dict[str, Any]) -> None:
        folder = self.folder(lab["id"])
        folder.mkdir(parents=True, exist_ok=True)
        results = self.results(lab)
        results.parent.mkdir(parents=True, exist_ok=True)
        sets = [f"{k}={v}" for k, v in {**lab["sets"], **lab["variant"]}.items()]
        job = {"exercise": lab["exercise"], "lab": lab["lab"], "mode": lab["mode"], "backend": lab["backend"], "sets": sets,
               "assigned": sorted(lab["variant"]), "results": str(results), "engine": self.engine, "image": self.image}
        (folder / JOB).write_text(json.dumps(job))
        # Starting before any worker has it: a server killed in between finds a lab starting without a worker, and fails it.
        self.store.update(lab["id"], state="starting", folder=str(results))
        p = self._take_spare(folder)
        if p is None:
            with open(folder / LOG, "ab") as log:
                p = self._worker([str(folder)], log)
        self._keep_spare()
        self._children[lab["id"]] = p
        self.store.update(lab["id"], worker_pid=p.pid, worker_start=procs.start_time(p.pid))

    def _worker(self, args: list[str], log: Any) -> subprocess.Popen:
        # A session of its own: the server's Ctrl-C or death does not reach it (see lab/serve/worker.py).
        return subprocess.Popen([sys.executable, "-m", "lab.serve.worker", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "COLUMNS": "120"})

    def _keep_spare(self) -> None:
        """A worker started ahead of need, imported and waiting (lab/serve/worker.py, spare)."""
        if self._spare is not None and self._spare[0].poll() is None:
            return
        folder = self.data / "spare" / secrets.token_hex(4)
        folder.mkdir(parents=True)
        p = self._worker(["--spare", str(folder), str(os.getpid())], subprocess.DEVNULL)
        self._spare = (p, folder, procs.start_time(p.pid))

    def _take_spare(self, lab_folder: Path) -> Optional[subprocess.Popen]:
        if self._spare is None or self._spare[0].poll() is not None:
            return None
        p, folder, _ = self._spare
        self._spare = None
        tmp = folder / (ASSIGN + ".tmp")
        tmp.write_text(str(lab_folder))
        os.replace(tmp, folder / ASSIGN)
        return p

    def _watch(self, lab: dict[str, Any]) -> bool:
        """What the lab's worker and keeper wrote since the last look, into the database."""
        folder = self.folder(lab["id"])
        changed = False
        fields: dict[str, Any] = {}
        events = self._new_events(lab, folder)
        if events:
            self.store.add_events(lab["id"], lab["events_read"], events)
            changed = True
            for e in events:
                if e.get("kind") == "state" and e.get("text") in ("starting", "running", "finishing"):
                    fields["state"] = e["text"]
                elif e.get("kind") == "progress":
                    fields["stage"] = str(e.get("text", ""))[:300]
        if lab["mode"] == "hands-on":
            seen = self._picture(lab)
            if seen is not None:
                fields["picture"], fields["wire"] = seen
                segments = (seen[1] or {}).get("segments") or []
                if segments:
                    fields["last_packet"] = max(float(s.get("ts", 0)) for s in segments)
        typed = self.last_input.get(lab["id"])
        if typed and typed - (lab.get("last_input") or 0) >= INPUT_GRAIN:
            fields["last_input"] = typed
        outcome = folder / OUTCOME
        if outcome.exists():
            fields.update(self._ended(lab, outcome))
        elif not self._worker_alive(lab):
            fields.update(state="failed", ended=time.time(),
                          error=lab.get("error") or f"its worker ended without a word (its log: {folder / LOG})")
            self._remove(lab)
        if fields:
            self.store.update(lab["id"], **fields)
            changed = True
            if fields.get("state") in ("done", "failed"):
                self._just_ended.append(lab["id"])
                self._records.pop(lab["id"], None)
        return changed

    def _new_events(self, lab: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
        path = folder / EVENTS
        try:
            size = path.stat().st_size
        except OSError:
            return []
        if self._sizes.get(lab["id"]) == size:
            return []
        self._sizes[lab["id"]] = size
        lines = path.read_text(errors="replace").splitlines()
        out = []
        for line in lines[lab["events_read"]:]:
            try:
                e = json.loads(line)
            except ValueError:
                break  # a line being written: read it next time
            out.append(e if isinstance(e, dict) else {"kind": "progress", "text": str(e)})
        return out

    def _picture(self, lab: dict[str, Any]) -> Optional[tuple[dict[str, Any], Optional[dict[str, Any]]]]:
        """A hands-on lab's steps, hosts and what the wire told (the picture), and its live view of the
        wire, from its keeper's record while there is one; None unless either changed since the last look
        (the keeper writes its record every quarter of a second, mostly unchanged)."""
        path = state_dir(lab["lab"]) / record.FILE
        try:
            st = path.stat()
        except OSError:
            return None
        seen = self._records.get(lab["id"])
        if seen is not None and seen[0] == (st.st_mtime, st.st_size):
            return None
        rec = record.load(lab["lab"])
        if rec is None or rec.status not in (record.READY, record.FINISHING):
            return None
        steps = [{k: s.get(k) for k in ("do", "why", "host", "run", "done_at")} for s in rec.steps]
        # A terminal on the hosts the steps use: the observer, which holds the lab's own capture, only where a step is there.
        used = {s.get("host") for s in rec.steps}
        hosts = [h for h in rec.hosts if h in used] or list(rec.hosts)
        picture = ({"steps": steps, "hosts": hosts, "intro": rec.intro, "told": (rec.live or {}).get("events") or [],
                    "next": (rec.live or {}).get("next") or "", "ready_at": rec.ready_at}, (rec.live or {}).get("wire"))
        self._records[lab["id"]] = ((st.st_mtime, st.st_size), picture)
        return picture if seen is None or seen[1] != picture else None

    def _ended(self, lab: dict[str, Any], outcome: Path) -> dict[str, Any]:
        try:
            o = json.loads(outcome.read_text())
        except (OSError, ValueError):
            return {}
        self._children.pop(lab["id"], None)
        fields: dict[str, Any] = {"ended": time.time()}
        report = Path(o["folder"]) / "report.json" if o.get("folder") else None
        verdict = None
        if report is not None and report.exists():
            try:
                r = json.loads(report.read_text())
                verdict = {"passed": bool(r.get("passed")), "checks": r.get("checks") or []}
            except (OSError, ValueError):
                verdict = None
        if verdict is not None and o.get("code") in (0, 1):
            fields.update(state="done", verdict=verdict)
        else:
            last_error = next((e["text"] for e in reversed(self.store.events(lab["id"])) if e["kind"] == "error"), None)
            fields.update(state="failed", error=lab.get("error") or o.get("error") or last_error or f"ended with status {o.get('code')}")
            if verdict is not None:
                fields["verdict"] = verdict
            self._remove(lab)  # whatever an interrupted or failed lab left
        if o.get("folder"):
            fields["folder"] = o["folder"]
        return fields

    def _worker_alive(self, lab: dict[str, Any]) -> bool:
        p = self._children.get(lab["id"])
        if p is not None:
            if p.poll() is None:
                return True
            del self._children[lab["id"]]
            return (self.folder(lab["id"]) / OUTCOME).exists()
        return bool(lab.get("worker_pid")) and procs.same_process(lab["worker_pid"], lab.get("worker_start"))

    def _remove(self, lab: dict[str, Any]) -> None:
        """Whatever the lab left, removed by a process of its own (as `invoke down --lab` would)."""
        if lab["id"] in self._removers:
            return
        with open(self.folder(lab["id"]) / LOG, "ab") as log:
            self._removers[lab["id"]] = subprocess.Popen([sys.executable, "-m", "lab.serve.worker", "--down", lab["lab"]], cwd=REPO,
                                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                         start_new_session=True)

    def _idle(self) -> bool:
        if self.limits.idle_minutes <= 0:
            return False
        now, limit = time.time(), self.limits.idle_minutes * 60
        changed = False
        for lab in self.store.labs(states=("running",)):
            if lab["mode"] != "hands-on" or (self.folder(lab["id"]) / REQUEST).exists():
                continue
            since = max(lab.get("last_input") or 0, lab.get("last_packet") or 0, self.last_input.get(lab["id"], 0), lab["created"])
            picture_ready = (lab.get("picture") or {}).get("ready_at") or 0
            if now - max(since, picture_ready) > limit:
                self.note(lab, "warning", f"no keystroke and no packet for {self.limits.idle_minutes:g} minutes: finished and judged")
                self._ask(lab, "finish")
                changed = True
        return changed

    def recover(self) -> None:
        """After a restart: labs whose worker lives on are watched again; the others are torn down and failed."""
        for lab in self.store.labs(states=ACTIVE):
            if lab["state"] == "queued":
                continue  # it starts in turn, as if nothing had happened
            if (self.folder(lab["id"]) / OUTCOME).exists() or self._worker_alive(lab):
                continue  # the next tick reads its outcome, or goes on watching it
            rec = record.load(lab["lab"]) if lab["mode"] == "hands-on" and lab["state"] == "running" else None
            if rec is not None and rec.status == record.READY and handson.keeper_alive(rec):
                self._reattach(lab)  # its worker is gone but its keeper, which owns the lab, lives on
                continue
            self.store.update(lab["id"], state="failed", ended=time.time(),
                              error="the server stopped while this lab ran, and its worker is gone: it was torn down")
            self._remove(lab)

    def _reattach(self, lab: dict[str, Any]) -> None:
        """A new worker for a hands-on lab whose keeper lives on: it waits for the finish, as the first one did."""
        folder = self.folder(lab["id"])
        job = json.loads((folder / JOB).read_text())
        (folder / JOB).write_text(json.dumps({**job, "attach": True}))
        with open(folder / LOG, "ab") as log:
            p = self._worker([str(folder)], log)
        self._children[lab["id"]] = p
        self.store.update(lab["id"], worker_pid=p.pid, worker_start=procs.start_time(p.pid))
        self.note(lab, "progress", "re-attached after a restart of the server")

    async def shutdown(self, grace: float = 60.0) -> None:
        """Ctrl-C: every active lab ended (hands-on ones finished and judged), waited for up to `grace` seconds."""
        if self._spare is not None:
            p, folder, start = self._spare
            self._spare = None
            procs.stop(p.pid, start, grace=2.0)
            p.poll()
            shutil.rmtree(folder, ignore_errors=True)
        for lab in self.store.labs(states=("queued",)):
            self.store.update(lab["id"], state="failed", error="the server stopped before it started", ended=time.time())
        for lab in self.store.labs(states=("starting", "running")):
            self.finish(lab)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.store.labs(states=("starting", "running", "finishing")):
            self.tick()
            await asyncio.sleep(TICK)
        for p in self._removers.values():
            try:
                p.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
