"""The end of a hands-on session (`invoke finish`): a last look, everything the person started on the
hosts stopped, their captures and their programs' logs collected beside the lab's own capture, what
they changed on the hosts undone, and a manifest that lets `invoke check` judge the folder like any
other: the parameters as the programs really set them (or, for those the lab assigned, the lab's values),
and the steps with when each was seen done."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from .. import ui
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..errors import LabError
from ..naming import HANDSON_BASELINE
from ..results import record as manifest_record
from ..results.folder import write_json
from ..results.manifest import MANIFEST
from ..run.timeline import Run
from ..spec.exercise import Exercise
from . import record
from .watching import Watcher

CAPTURE_FLUSH = 1.2  # s: tcpdump's packet buffer timeout (1 s), and a little more
STUDENT = "student"  # prefix of the person's files in the results folder: student-<host>-<file>


def finish(ex: Exercise, backend: Backend, state: LabState, run: Run, watcher: Watcher, rec: record.Record, folder: Path) -> dict[str, Any]:
    watcher.look()  # the steps as they stand at the end
    began = time.time()  # what the wire shows after this, stopping the person's programs made
    facts = {h: dict(f) for h, f in watcher.facts.items()}
    # Written first: the sysctls and tools as the person had them, before their changes are undone.
    manifest = manifest_record.start(ex, rec.lab, backend, folder)
    undone: list[str] = []
    # When finish began on each host, by that host's clock (its captures are on it): what the wire shows
    # after, stopping the person's programs made. Then a pause before anything stops, so a tcpdump of
    # theirs has handed its file every packet from before that moment (libpcap passes them on up to a
    # second late, and a stopped tcpdump loses what it holds).
    began_on = {host: _clock(backend, host) for host in rec.hosts}
    time.sleep(CAPTURE_FLUSH)
    for host in rec.hosts:
        # The person's processes stop first (a tcpdump of theirs writes its last packets), with their rules and sysctls.
        h = rec.hosts[host]
        r = backend.run(host, backend.onhost(host, "handson.py") + ["undo", backend.work_path(host, HANDSON_BASELINE), h["mark"], h["dir"], h["events"]],
                        timeout=60, check=False)
        try:
            undone += [f"{what} on {host}" for what in json.loads(r.stdout or "{}").get("undone") or []]
        except (ValueError, AttributeError):
            ui.warn(f"{host}: the hands-on helper did not say what it undid: {r.stderr.strip()[-200:]}")
    if undone:
        ui.step("undone: " + ", ".join(undone))
    watcher.look()  # their last events and capture bytes, now that their programs have stopped
    ui.step(f"collect captures and logs into {folder}")
    student_captures = _their_captures(backend, rec, facts, folder)
    logs = _their_logs(ex, backend, watcher, folder)
    run.folder = folder
    run.finish()  # the lab's captures stopped and collected, impairments and the trace ended
    manifest_record.finish(folder, manifest, run.summary(), None)
    _judged_as_done(ex, rec, watcher, manifest, student_captures, logs, facts)
    manifest["hands_on"]["finish_began"] = began
    manifest["hands_on"]["finish_began_on"] = {host: t for host, t in began_on.items() if t is not None}
    write_json(folder / MANIFEST, manifest)
    shutil.rmtree(watcher.mirror, ignore_errors=True)  # a kept lab keeps no copy of its capture
    return {"folder": str(folder), "undone": undone}


def _their_captures(backend: Backend, rec: record.Record, facts: dict, folder: Path) -> list[dict[str, Any]]:
    out = []
    for host, f in facts.items():
        for c in f.get("captures", []):
            name = f"{STUDENT}-{host}-{c['name']}"
            try:
                backend.fetch(host, f"{rec.hosts[host]['dir']}/{c['name']}", folder / name)
            except LabError as e:
                ui.warn(f"{host}: your capture {c['name']} could not be collected: {e}")
                continue  # the check of their capture says none was found
            out.append({"host": host, "file": name, "taken_as": c["name"], "bytes": c["size"]})
    return out


def _their_logs(ex: Exercise, backend: Backend, watcher: Watcher, folder: Path) -> dict[str, Any]:
    """Each program's runs from the person's shells: the last as <program>.log (what the checks read),
    every one under events/. Events from other scripts (a helper that marks a timeline step) too."""
    events_dir = folder / "events"
    events_dir.mkdir(exist_ok=True)
    out: dict[str, Any] = {}
    for host, runs in watcher.runs.items():
        for name, events in runs.items():
            (events_dir / f"{host}-{name}").write_text("".join(json.dumps(e) + "\n" for e in events))
    for program in ex.programs:
        runs = watcher.runs_of(program)
        if runs:
            shutil.copyfile(events_dir / f"{watcher.scripts[program][0]}-{runs[-1][0]}", folder / f"{program}.log")
        out[program] = {"host": watcher.scripts[program][0], "runs": len(runs), "file": f"{program}.log" if runs else None}
    return out


def _judged_as_done(ex: Exercise, rec: record.Record, watcher: Watcher, manifest: dict, student_captures: list, logs: dict, facts: dict) -> None:
    """What makes the folder judge what the person did: the parameters as judged (see `_parameters`), the
    steps, their files."""
    assert ex.hands_on is not None
    typed, observed, unknown = _parameters(ex, rec, watcher, manifest["parameters"])
    manifest["mode"] = "hands-on"
    manifest["hands_on"] = {
        "steps": rec.steps, "started": rec.ready_at, "finished": max((f.get("time", 0) for f in watcher.facts.values()), default=None),
        "observed": observed, "unknown": unknown, "typed": typed, "typed_in": _typed_in(ex), "assigned": dict(rec.assigned),
        "programs": logs, "student_captures": student_captures,
        "facts": {h: {k: f.get(k) for k in ("listening", "processes", "iptables_added", "captures")} for h, f in facts.items()},
    }
    manifest["student_captures"] = student_captures
    # Helper scripts mark timeline steps (a drop on the bridge, say) with {"event": "step", "step": ...}.
    for e in (e for runs in watcher.runs.values() for events in runs.values() for e in events if e.get("event") == "step"):
        manifest["timeline"].append({"step": e.get("step"), "started": e.get("wall"), "finished": e.get("wall"), "by": "hands-on"})
    _stand_ins(ex, manifest)
    capturing = next((s for s in rec.steps if "capturing" in s.get("kinds", [])), None)
    if capturing is not None and capturing.get("host"):
        client = next((n for n, p in ex.programs.items() if p.host == capturing["host"]), None)
        if client is not None:
            manifest["checks"].append({"check": "student_capture", "host": capturing["host"], "client": client})


def _parameters(ex: Exercise, rec: record.Record, watcher: Watcher, parameters: dict) -> tuple[dict, dict, list]:
    """What the programs set (typed), and the parameters the checks judge, changed in place: one the lab
    assigned (a class's variant, `start --strict`) keeps the lab's value whatever was typed, so a copied
    answer fails on the wire; any other takes what its program set (observed), or where no log says, the
    exercise's value (unknown)."""
    assert ex.hands_on is not None
    typed: dict[str, Any] = {}
    observed: dict[str, str] = {}
    unknown: list[str] = []
    for param, (program, event, key) in ex.hands_on.observed.items():
        value = _logged(ex, watcher, param, program, event, key)
        if value is not None:
            typed[param] = value
        if param in rec.assigned:
            continue
        if value is None:
            unknown.append(param)
            continue
        parameters[param] = value
        observed[param] = f"{program}.log, its {event!r} event"
    parameters.update(rec.assigned)
    return typed, observed, unknown


def _logged(ex: Exercise, watcher: Watcher, param: str, program: str, event: str, key: str) -> Any:
    """What the program's last run logged it set, as the parameter's type; None where no log says, or says nonsense."""
    value = next((e.get(key) for e in watcher.latest(program) if e.get("event") == event and key in e), None)
    if value is None:
        return None
    try:
        return ex.parameters[param].convert(value, f"{program}.log")
    except LabError as e:
        ui.warn(str(e))
        return None


def _typed_in(ex: Exercise) -> dict[str, dict[str, Any]]:
    """For each parameter a program reports, where the person types it: the step whose command carries it
    and the argument there (`--keepidle {keepidle}`), so a hint can say what to type. The results folder
    holds the steps filled in; only the exercise knows which placeholder each value came from."""
    assert ex.hands_on is not None
    out: dict[str, dict[str, Any]] = {}
    for param, (program, _, _) in ex.hands_on.observed.items():
        placeholder = "{" + param + "}"
        carrying = [(n, s.run) for n, s in enumerate(ex.hands_on.steps, 1) if placeholder in s.run]
        if not carrying:
            continue
        script = ex.programs[program].script.name if program in ex.programs else None
        # The program's own command first: a port is in a capture's filter and a firewall rule too.
        n, run = next(((n, run) for n, run in carrying if script and script in run), carrying[0])
        out[param] = {"program": program, "step": n, "argument": _argument(run, placeholder)}
    return out


def _argument(run: str, placeholder: str) -> str:
    """The option that carries a placeholder in a command, with it: `--keepidle {keepidle}`, `--port={port}`,
    or the placeholder alone where it stands by itself."""
    found = re.search(r"(-[\w-]+)(=|\s+)" + re.escape(placeholder), run)
    if found is None:
        return placeholder
    return found.group(1) + ("=" if found.group(2) == "=" else " ") + placeholder


def _stand_ins(ex: Exercise, manifest: dict) -> None:
    """A lab capture on a bridge stands for each host linked to it that has no lab capture of its own."""
    own = {c["name"] for c in manifest.get("captures", [])}
    for c in manifest.get("captures", []):
        node = ex.topology.nodes.get(c["host"])
        if node is None or not node.bridges:
            continue
        linked = [p.a_node for p in ex.topology.veths() if p.b_node == c["host"] and p.b_bridge]
        c["stands_for"] = sorted(set(c.get("stands_for", [])) | {h for h in linked if h not in own})


def _clock(backend: Backend, host: str) -> Optional[float]:
    """The host's wall clock now (None if it cannot be read: the lab's clock then stands in)."""
    r = backend.run(host, backend.onhost(host, "handson.py") + ["now"], timeout=20, check=False)
    try:
        return float(json.loads(r.stdout))
    except (ValueError, TypeError):
        return None
