"""`invoke start`, `steps`, `shell`, `exec`, `watch`, `finish`: an exercise done by a person at shells on
the lab's hosts, with tcplab watching (lab/handson: the keeper that owns the lab meanwhile)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional, Sequence

from rich.live import Live
from rich.markup import escape
from rich.text import Text

from .. import backends, ui
from ..backends import labstate
from ..backends.base import Backend
from ..backends.preflight import require_root, require_tools
from ..errors import LabError
from ..handson import record
from ..naming import check_lab_name, handson_mark, keeper_log
from ..onhost import procs
from ..report import verdict
from ..results import folder as results
from ..run.lifecycle import clear_leftovers
from ..spec import exercise as exercise_mod
from . import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, catalog  # noqa: F401  (catalog: the names exercises use)

REPO = exercise_mod.EXERCISE_DIR.parent
READY_TIMEOUT = 300.0  # seconds a keeper may take to bring a lab up (an image build, VMs answering)
PROGRESS = re.compile(r"^\s*\d+\.\d+s |^(warning|error):")
FINISH_TIMEOUT = 300.0


def start(name: str, lab: str, backend_name: str, sets: Sequence[str], inventory: Optional[str] = None,
          accept_new_host_keys: bool = False) -> int:
    check_lab_name(lab)
    ui.reset_clock()
    backend = backends.get(backend_name, lab, inventory, accept_new_host_keys)
    declared = exercise_mod.load(name, (), lab, addresses=backend.addresses()).parameters  # their types, for a list's commas
    for item in sets:
        param, _, value = item.partition("=")
        kind = declared.get(param.strip())
        if "," in value and kind is not None and kind.type != "str":
            raise LabError(f"--set {item}: a hands-on lab takes one value per parameter; sweeps are for `invoke up`")
    plain = exercise_mod.load(name, (), lab, addresses=backend.addresses())
    if plain.hands_on is None:
        raise LabError(f"{plain.file}: {plain.name} has no hands_on steps, so it cannot be done by hand: `invoke up {name}` runs it")
    given = {item.partition("=")[0].strip() for item in sets}
    sets = [f"{k}={v}" for k, v in plain.hands_on.defaults.items() if k not in given] + list(sets)
    ex = exercise_mod.load(name, sets, lab, addresses=backend.addresses())
    backend.prepare(ex)
    if backend.local:
        require_root(f"start {name}")
        require_tools({**backend.required_tools, **backend.tools})
    backend.check_environment()
    backend.close()
    clear_leftovers(lab)
    rec = record.Record(lab=lab, exercise=name, sets=list(sets), backend=backend_name, inventory=inventory,
                        accept_new_host_keys=accept_new_host_keys)
    if not rec.claim():
        raise LabError(f"lab {lab} is being started by another `invoke start`; choose another --lab or wait for it")
    log = keeper_log(lab)
    with open(log, "wb") as out:
        # A session of its own: it outlives this command, and Ctrl-C at this terminal reaches only us.
        keeper = subprocess.Popen([sys.executable, "-m", "lab.handson.keeper", lab], cwd=REPO, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "COLUMNS": str(max(80, ui.console.width))})
    try:
        rec = _until_ready(lab, keeper, log)
    except KeyboardInterrupt:
        keeper.send_signal(signal.SIGTERM)  # the keeper tears the lab down
        try:
            keeper.wait(60)
        except subprocess.TimeoutExpired:
            ui.error(f"interrupted: lab {lab}'s keeper is still tearing down; `invoke down --lab {lab}` finishes the job")
            return EXIT_INTERRUPTED
        ui.error(f"interrupted: lab {lab} torn down")
        return EXIT_INTERRUPTED
    _print_steps(rec, intro=True)
    return EXIT_OK


def _until_ready(lab: str, keeper: subprocess.Popen, log: Path) -> record.Record:
    """Waits for the keeper to have the lab up, showing its progress lines; a failure is one line."""
    shown = 0
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        for line in lines[shown:]:
            if PROGRESS.match(line):  # the keeper's progress lines; anything else stays in its log
                ui.console.print(escape(line), soft_wrap=True)
        shown = len(lines)
        rec = record.load(lab)
        if rec is not None and rec.status == record.READY:
            return rec
        if keeper.poll() is not None:
            said = next((l.strip() for l in reversed(lines) if l.strip().startswith("error:")), "")
            message = said.removeprefix("error:").strip() or f"its keeper ended with status {keeper.returncode} (its log: {log})"
            if said:
                log.unlink(missing_ok=True)  # said in full; a keeper that crashed leaves its log for the reader
            raise LabError(f"the lab did not come up: {message}")
        if time.monotonic() > deadline:
            keeper.send_signal(signal.SIGTERM)
            raise LabError(f"the lab did not come up within {READY_TIMEOUT:g} s (its log: {log})")
        time.sleep(0.05)


def _record(lab: Optional[str]) -> record.Record:
    name = check_lab_name(lab or "tcplab")
    rec = record.load(name)
    if rec is None:
        raise LabError(f"lab {name} is not a hands-on lab: `invoke start EXERCISE --lab {name}` starts one")
    return rec


def _keeper(rec: record.Record) -> Optional[int]:
    """The PID of the lab's keeper while it runs (checked against its start time, as every PID here is)."""
    state = labstate.load(rec.lab)
    return state.owner_pid if state is not None and state.mode == "hands-on" and state.owner_alive() else None


def _alive(rec: record.Record) -> bool:
    return _keeper(rec) is not None


def _print_steps(rec: record.Record, intro: bool = False) -> None:
    width = max(50, min(ui.console.width, 110))

    def para(text: str, indent: int, style: str = "") -> None:
        for line in textwrap.wrap(text, width - indent) or [""]:
            ui.console.print(" " * indent + (f"[{style}]{escape(line)}[/{style}]" if style else escape(line)), soft_wrap=True)

    hosts = ", ".join(f"{h} ({v['iface']})" if v.get("iface") else h for h, v in rec.hosts.items())
    ui.console.print(f"[bold]{escape(rec.exercise)}[/bold] by hand on lab {escape(rec.lab)} ({escape(rec.backend)}), hosts: {escape(hosts)}", soft_wrap=True)
    if intro and rec.intro:
        para(rec.intro, 0)
        para(f"A shell on a host: `invoke shell HOST --lab {rec.lab}`; what the wire shows: `invoke watch --lab {rec.lab}`; "
             f"these steps again: `invoke steps --lab {rec.lab}`; at the end: `invoke finish --lab {rec.lab}`.", 0, "bold")
    first_open = next((i for i, s in enumerate(rec.steps) if not s.get("done_at")), None)
    for i, s in enumerate(rec.steps):
        if s.get("done_at"):
            mark = f"[green]done[/green] at {s['done_at'] - (rec.ready_at or s['done_at']):.1f} s"
        else:
            mark = "[yellow]next[/yellow]" if i == first_open else "[dim]to do[/dim]"
        where = f" on {s['host']}" if s.get("host") else ""
        ui.console.print(f"[bold]{i + 1}.[/bold] {mark}{escape(where)}")
        para(s["do"], 3)
        if s.get("why"):
            para(s["why"], 3, "dim")
        if s.get("run"):
            ui.console.print(f"   [bold]$[/bold] {escape(s['run'])}", soft_wrap=True)


def steps(lab: Optional[str]) -> int:
    rec = _record(lab)
    _print_steps(rec)
    if not _alive(rec):
        ui.warn(f"lab {rec.lab}'s keeper is gone ({rec.reached()}): `invoke down --lab {rec.lab}` removes what is left")
    return EXIT_OK


def _host(rec: record.Record, host: str) -> tuple[Backend, dict]:
    if rec.status != record.READY or not _alive(rec):
        raise LabError(f"lab {rec.lab} is not ready for work ({rec.reached()})")
    if host not in rec.hosts:
        raise LabError(f"lab {rec.lab} has no host {host!r}; its hosts: {', '.join(rec.hosts)}")
    backend = backends.get(rec.backend, rec.lab, rec.inventory, rec.accept_new_host_keys)
    return backend, rec.hosts[host]


def _environment(rec: record.Record, host: str, h: dict) -> dict[str, str]:
    return {"TCPLAB_MARK": handson_mark(rec.lab, host), "TCPLAB_EVENTS": h["events"], "TCPLAB_LAB": rec.lab,
            "PS1": f"[{rec.lab} {host}] \\w# ", "TERM": os.environ.get("TERM", "xterm")}


def shell(host: str, lab: Optional[str]) -> int:
    rec = _record(lab)
    backend, h = _host(rec, host)
    ui.console.print(f"a root shell on {host} of lab {rec.lab}, in {h['dir']}, with the exercise's programs; `exit` leaves it")
    try:
        return backend.shell(host, h["dir"], _environment(rec, host, h))
    finally:
        backend.close()


def exec_(host: str, command: str, lab: Optional[str]) -> int:
    rec = _record(lab)
    backend, h = _host(rec, host)
    try:
        return backend.shell(host, h["dir"], _environment(rec, host, h), line=command)
    finally:
        backend.close()


def watch(lab: Optional[str]) -> int:
    rec = _record(lab)
    if not _alive(rec):
        raise LabError(f"lab {rec.lab}'s keeper is gone ({rec.reached()}): nothing to watch")
    ui.console.print(f"watching lab {rec.lab} ({rec.exercise}); Ctrl-C stops watching and leaves the lab as it is")
    told: set[tuple[float, str]] = set()  # the story is told afresh each tick: a line is printed once
    t0 = rec.ready_at or rec.started
    try:
        with Live(_status(rec), console=ui.console, refresh_per_second=4, transient=True) as live:
            while True:
                now = record.load(rec.lab)
                if now is None or now.status != record.READY or not _alive(now):
                    live.console.print(f"lab {rec.lab} is {now.reached() if now and _alive(now) else 'no longer watched: its keeper is gone'}")
                    return EXIT_OK
                for ts, text in now.live.get("events") or []:
                    if (ts, text) not in told:
                        told.add((ts, text))
                        live.console.print(f"[dim]{ts - t0:8.3f}s[/dim] {escape(text)}")
                live.update(_status(now))
                time.sleep(0.25)
    except KeyboardInterrupt:
        ui.console.print(f"stopped watching; lab {rec.lab} is as it was")
        return EXIT_OK


def _status(rec: record.Record) -> Text:
    marks = " ".join(f"{i + 1}{'✓' if s.get('done_at') else '·'}" for i, s in enumerate(rec.steps))
    nxt = (rec.live or {}).get("next") or ""
    return Text(f"steps {marks}" + (f"   next: {nxt}" if nxt else ""), style="bold")


def finish(lab: Optional[str], results_dir: Optional[str], keep: bool) -> int:
    rec = _record(lab)
    if os.environ.get("TCPLAB_MARK", "").startswith(f"{rec.lab}/"):
        raise LabError(f"`invoke finish` stops every program started from lab {rec.lab}'s shells, this one too: run it in a terminal of its own")
    keeper = _keeper(rec)
    if rec.status != record.READY or keeper is None:
        raise LabError(f"lab {rec.lab} cannot finish ({rec.reached() if keeper else 'its keeper is gone'}): "
                       f"`invoke down --lab {rec.lab}` removes what is left")
    folder = results.create(Path(results_dir) if results_dir else results.default_folder(rec.lab, rec.exercise))
    record.ask_finish(rec.lab, folder, keep)
    try:
        os.kill(keeper, signal.SIGUSR1)
    except ProcessLookupError:
        results.remove_if_empty(folder)
        raise LabError(f"lab {rec.lab}'s keeper ended just now: `invoke down --lab {rec.lab}` removes what is left") from None
    log = keeper_log(rec.lab)
    shown = len(log.read_text(errors="replace").splitlines()) if log.exists() else 0
    deadline = time.monotonic() + FINISH_TIMEOUT
    try:
        while procs.same_process(keeper, None) and time.monotonic() < deadline:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            for line in lines[shown:]:
                ui.console.print(escape(line), soft_wrap=True)
            shown = len(lines)
            time.sleep(0.05)
    except KeyboardInterrupt:
        ui.error(f"interrupted: the keeper goes on finishing into {folder}; `invoke check {folder}` judges it then")
        return EXIT_INTERRUPTED
    result = record.read_result(folder)
    if result is None or result.get("error"):
        why = (result or {}).get("error") or "the keeper ended without a result (was it killed?)"
        results.remove_if_empty(folder)
        raise LabError(f"finish failed: {why}; `invoke down --lab {rec.lab}` removes what is left")
    passed = verdict.check_folder(folder)
    if keep:
        ui.console.print(f"lab {rec.lab} is still up (--keep); `invoke down --lab {rec.lab}` removes it")
    ui.console.print(f"results: {folder}")
    return EXIT_OK if passed else EXIT_FAILED
