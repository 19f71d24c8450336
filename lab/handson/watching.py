"""The keeper's eyes: every tick, what each host shows (lab/onhost/handson.py facts), the programs'
event logs, and the lab's capture (mirrored here as it grows, whatever the backend); from them,
which steps are done and what the wire has told so far (lab/handson/live.py), as text lines for
`invoke watch` and as the structured `wire` for the lab server's page."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from .. import ui
from ..analysis import tcpflow
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..errors import LabError
from ..naming import HANDSON_BASELINE, state_dir
from ..onhost.handson import added
from ..report.measures import TOPICS
from ..run.timeline import Run
from ..spec.exercise import Exercise
from . import live, record
from .conditions import Scene, holds

FACTS = "handson-facts.json"  # in a host's work folder: what its watching process saw last
STALE = 5.0  # s: a facts file older than this is not taken (its process is gone); the host is asked at once


class Watcher:
    def __init__(self, ex: Exercise, backend: Backend, run: Run, rec: record.Record):
        self.ex, self.backend, self.run, self.rec = ex, backend, run, rec
        self.hosts = list(rec.hosts)
        self.scripts = {name: (p.host, p.script.name) for name, p in ex.programs.items()}
        self.facts: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, list[dict]]] = {}  # host -> events file -> its events
        self.mirror = state_dir(rec.lab) / "mirror"
        self.mirror.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[str, int] = {}
        self._last_trouble = ""
        self._flows: list[tcpflow.Flow] = []
        hz = backend.facts(self.hosts[0])["kernel"].get("hz") if self.hosts else None
        self.hz: Optional[int] = int(hz) if hz else None
        self.conditions = [[(kind, args) for kind, args in step["when"]] for step in rec.steps]  # filled in by the keeper
        self.baseline: dict[str, list[str]] = {}  # host -> its iptables rules before the person came
        self._watched: dict[str, str] = {}  # host -> the file its watching process writes its facts to
        # The window exercises (their measures show the window) draw the server's window even before it closes.
        self.window_view = any("window" in TOPICS.get(m.get("measure", ""), ()) for m in ex.measures)
        self._viewed: Optional[tuple[tuple, dict[str, Any]]] = None  # the last reading of the wire and what it was read from

    def watch_hosts(self, state: LabState, seconds: float) -> None:
        """On a host of this machine (netns, Docker), one process of the lab's that writes the host's facts to a
        file every `seconds` (onhost/handson.py watch): a look then reads a file, where a `docker exec` of its own
        cost a fifth of a core per lab. Over SSH each look asks the machine, as before."""
        if not self.backend.local:
            return
        for host in self.hosts:
            h = self.rec.hosts[host]
            out = self.backend.work_path(host, FACTS)
            self.backend.spawn(host, "handson-watch", self.backend.onhost(host, "handson.py") +
                               ["watch", h["mark"], h["dir"], h["events"], out, str(seconds)], state)
            self._watched[host] = out

    def _facts(self, host: str, fresh: bool) -> dict[str, Any]:
        """The host's facts: from its watching process's file, unless asked `fresh` or that file is missing or
        old (its process gone: a person at a container's shell may kill it); then asked of the host at once."""
        out = self._watched.get(host)
        if out is not None and not fresh:
            try:
                facts = json.loads(self.backend.read_file(host, out) or b"null")
            except (LabError, ValueError):
                facts = None
            if isinstance(facts, dict) and time.time() - float(facts.get("time", 0)) < STALE:
                return facts
        h = self.rec.hosts[host]
        r = self.backend.run(host, self.backend.onhost(host, "handson.py") + ["facts", h["mark"], h["dir"], h["events"]], timeout=20)
        return json.loads(r.stdout)

    def look(self, hosts: bool = True, fresh: bool = True) -> None:
        """One look at the wire and (unless `hosts` is False) at the hosts, asked at once (`fresh`) or read from
        their watching processes; the record updated (not saved)."""
        for host in self.hosts if hosts else ():
            try:
                facts = self._facts(host, fresh)
                facts["iptables_added"] = added(facts.get("iptables", []), self._baseline(host))
                self.facts[host] = facts
                self._read_events(host)
            except (LabError, ValueError) as e:
                # A host that does not answer this time keeps its last facts; the session goes on.
                self.trouble(f"{host}: {e}")
        try:
            self._flows = self._capture()
        except LabError as e:
            self.trouble(str(e))
        scene = Scene(self.facts, {p: {e["event"] for e in self.latest(p)} for p in self.ex.programs}, self._flows, self.scripts)
        now = time.time()
        for step, conditions in zip(self.rec.steps, self.conditions):
            if not step.get("done_at") and all(holds(kind, args, scene) for kind, args in conditions):
                step["done_at"] = now
        options = next((e for e in reversed(self.all_events()) if e.get("event") == "options"), None)
        # What the client's kernel said of its RTO (TCP_INFO): while blocked (persist) or before each request.
        timed = [e for e in self.all_events() if e.get("event") in ("blocked", "sent") and "rto_us" in e]
        rto = timed[-1]["rto_us"] / 1e6 if timed else None
        srtt = timed[-1]["rtt_us"] / 1e6 if timed and "rtt_us" in timed[-1] else None
        self.rec.live = {**self._live(options, rto, srtt), "updated": now}

    def _live(self, options: Optional[dict[str, Any]], rto: Optional[float], srtt: Optional[float] = None) -> dict[str, Any]:
        """What the wire tells (live.view), read again only when the capture or the client's log changed:
        most ticks see the same flows (`_capture` keeps them while the mirror does not grow)."""
        given = (self._flows, options, rto, self.hz, srtt)
        if self._viewed is not None and self._viewed[0][0] is given[0] and self._viewed[0][1:] == given[1:]:
            return self._viewed[1]
        viewed = live.view(self._flows, options, rto, self.hz, self.window_view, srtt=srtt)
        self._viewed = (given, viewed)
        return viewed

    def trouble(self, what: str) -> None:
        if what != self._last_trouble:  # said once, not every tick
            ui.warn(what)
            self._last_trouble = what

    def _baseline(self, host: str) -> list[str]:
        if host not in self.baseline:
            text = self.backend.read_file(host, self.backend.work_path(host, HANDSON_BASELINE))
            self.baseline[host] = (json.loads(text) if text else {}).get("iptables", [])
        return self.baseline[host]

    # --- the programs' event logs ------------------------------------------------------------------

    def _read_events(self, host: str) -> None:
        runs = self.runs.setdefault(host, {})
        for f in self.facts[host].get("events", []):
            if len(runs.get(f["name"], ())) and self._sizes.get(f"{host}/{f['name']}") == f["size"]:
                continue
            data = self.backend.read_file(host, f"{self.rec.hosts[host]['events']}/{f['name']}").decode(errors="replace")
            self._sizes[f"{host}/{f['name']}"] = f["size"]
            events = []
            for line in data.splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and "event" in e:
                    events.append(e)
            runs[f["name"]] = events

    def runs_of(self, program: str) -> list[tuple[str, list[dict]]]:
        """(file, events) of every run of the program on its host, the earliest first."""
        host, script = self.scripts[program]
        stem = script.rsplit(".", 1)[0]
        found = [(name, ev) for name, ev in self.runs.get(host, {}).items() if name.rsplit("-", 1)[0] == stem and ev]
        return sorted(found, key=lambda item: item[1][0].get("wall", 0))

    def latest(self, program: str) -> list[dict]:
        runs = self.runs_of(program)
        return runs[-1][1] if runs else []

    def all_events(self) -> list[dict]:
        return [e for p in self.ex.programs for e in self.latest(p)]

    # --- the lab's capture -------------------------------------------------------------------------

    def _capture(self) -> list[tcpflow.Flow]:
        changed = False
        for c in self.run.captures.values():
            local = self.mirror / f"{c.name}.pcap"
            have = local.stat().st_size if local.exists() else 0
            more = self.backend.read_file(c.host, c.path, have)
            if more:
                with open(local, "ab") as f:
                    f.write(more)
                changed = True
        if not changed:
            return self._flows
        flows: dict[tuple, tcpflow.Flow] = {}
        for c in self.run.captures.values():
            local = self.mirror / f"{c.name}.pcap"
            if not local.exists() or local.stat().st_size <= 24:
                continue
            try:
                for f in tcpflow.analyze_file(local):
                    flows.setdefault((f.client, f.server), f)  # one connection seen by two captures is told once
            except LabError:
                continue  # not a whole header yet
        return sorted(flows.values(), key=lambda f: float(f.ts[0]) if len(f) else 0.0)

    def mirrored(self) -> list[Path]:
        return sorted(self.mirror.glob("*.pcap"))
