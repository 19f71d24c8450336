"""A hands-on lab (`invoke start`, `shell`, `exec`, `finish`, and the lab server's hands-on labs): its
keeper started and awaited until the lab is up, a shell on one of its hosts, its finish asked for,
awaited and judged. The keeper (lab/handson/keeper.py) owns the lab meanwhile; its progress lines
reach the caller's sink (lab/ui.py)."""
from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

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
from . import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, catalog  # noqa: F401  (catalog: the names exercises use)
from .run import Outcome

REPO = exercise_mod.EXERCISE_DIR.parent
READY_TIMEOUT = 300.0  # seconds a keeper may take to bring a lab up (an image build, VMs answering)
PROGRESS = re.compile(r"^\s*\d+\.\d+s |^(warning|error):")
FINISH_TIMEOUT = 300.0


class Interrupted(Exception):
    """Ctrl-C while the keeper brought the lab up; the lab was torn down (or is being: `down` finishes it)."""


def start(name: str, lab: str, backend_name: str, sets: Sequence[str], inventory: Optional[str] = None,
          accept_new_host_keys: bool = False, assigned: Sequence[str] = (), strict: bool = False) -> record.Record:
    """Brings a hands-on lab up through its keeper; returns its record once ready. `assigned` (or every
    parameter the programs report, with `strict`) are judged at the lab's values rather than at what
    the person's programs set: a person who types other values fails."""
    check_lab_name(lab)
    ui.reset_clock()
    ui.stage("starting")
    backend = backends.get(backend_name, lab, inventory, accept_new_host_keys)
    plain = exercise_mod.load(name, (), lab, addresses=backend.addresses())
    for item in sets:
        param, _, value = item.partition("=")
        kind = plain.parameters.get(param.strip())  # its type: a string's commas are its own
        if "," in value and kind is not None and kind.type != "str":
            raise LabError(f"--set {item}: a hands-on lab takes one value per parameter; sweeps are for `invoke up`")
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
    fixed = sorted(set(assigned) | (set(ex.hands_on.observed) if strict else set()))
    unknown = [p for p in fixed if p not in ex.parameters]
    if unknown:
        raise LabError(f"{ex.file}: no parameter {unknown[0]!r} to judge at the lab's value; parameters: {', '.join(ex.parameters)}")
    rec = record.Record(lab=lab, exercise=name, sets=list(sets), backend=backend_name, inventory=inventory,
                        accept_new_host_keys=accept_new_host_keys, assigned={p: ex.values[p] for p in fixed})
    if not rec.claim():
        raise LabError(f"lab {lab} is being started by another `invoke start`; choose another --lab or wait for it")
    log = keeper_log(lab)
    keeper = _Keeper(lab, log)
    try:
        rec = _until_ready(lab, keeper, log)
    except KeyboardInterrupt:
        keeper.send_signal(signal.SIGTERM)  # the keeper tears the lab down
        if not keeper.wait(60):
            raise Interrupted(f"interrupted: lab {lab}'s keeper is still tearing down; `invoke down --lab {lab}` finishes the job") from None
        raise Interrupted(f"interrupted: lab {lab} torn down") from None
    ui.stage("running")
    return rec


class _Keeper:
    """The lab's keeper, forked from this process rather than started afresh: everything it needs is
    imported here already, which saves a Python start (a third of a second) on every hands-on lab.
    In a session of its own: it outlives this process, and Ctrl-C at this terminal reaches only us."""

    def __init__(self, lab: str, log: Path):
        from ..handson import keeper

        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.pid = os.fork()
        if self.pid:
            os.close(out)
            self.returncode: Optional[int] = None
            return
        code = 1
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.chdir(REPO)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)  # the keeper sets its own
            os.environ["COLUMNS"] = str(max(80, ui.console.width))  # its log's lines as wide as the caller's terminal
            ui.set_sink(None)  # its progress goes to its log, where the caller reads it
            code = keeper.detached(lab)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _until_ready(lab: str, keeper: _Keeper, log: Path) -> record.Record:
    """Waits for the keeper to have the lab up, showing its progress lines; a failure is one line."""
    shown = 0
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        for line in lines[shown:]:
            if PROGRESS.match(line):  # the keeper's progress lines; anything else stays in its log
                ui.relay(line)
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
        time.sleep(0.02)


def lab_record(lab: Optional[str]) -> record.Record:
    name = check_lab_name(lab or "tcplab")
    rec = record.load(name)
    if rec is None:
        raise LabError(f"lab {name} is not a hands-on lab: `invoke start EXERCISE --lab {name}` starts one")
    return rec


def keeper_pid(rec: record.Record) -> Optional[int]:
    """The PID of the lab's keeper while it runs (checked against its start time, as every PID here is)."""
    state = labstate.load(rec.lab)
    return state.owner_pid if state is not None and state.mode == "hands-on" and state.owner_alive() else None


def keeper_alive(rec: record.Record) -> bool:
    return keeper_pid(rec) is not None


def host(rec: record.Record, host: str) -> tuple[Backend, dict]:
    if rec.status != record.READY or not keeper_alive(rec):
        raise LabError(f"lab {rec.lab} is not ready for work ({rec.reached()})")
    if host not in rec.hosts:
        raise LabError(f"lab {rec.lab} has no host {host!r}; its hosts: {', '.join(rec.hosts)}")
    backend = backends.get(rec.backend, rec.lab, rec.inventory, rec.accept_new_host_keys)
    return backend, rec.hosts[host]


def environment(rec: record.Record, host: str, h: dict) -> dict[str, str]:
    return {"TCPLAB_MARK": handson_mark(rec.lab, host), "TCPLAB_EVENTS": h["events"], "TCPLAB_LAB": rec.lab,
            "PS1": f"[{rec.lab} {host}] \\w# ", "TERM": os.environ.get("TERM") or "xterm"}


def shell_argv(host_name: str, lab: str) -> Optional[tuple[list[str], Optional[str], dict[str, str]]]:
    """The shell `shell` gives, as a command for a terminal of the caller's (argv, folder, environment
    to add); None where it is not a local command (SSH), and `python -m lab.session.terminal` is then the way."""
    rec = lab_record(lab)
    backend, h = host(rec, host_name)
    try:
        return backend.shell_argv(host_name, h["dir"], environment(rec, host_name, h))
    finally:
        backend.close()


def shell(host_name: str, lab: Optional[str], line: Optional[str] = None) -> int:
    """An interactive shell (or one command line) on a hands-on lab's host, in its folder; its exit status."""
    rec = lab_record(lab)
    backend, h = host(rec, host_name)
    try:
        return backend.shell(host_name, h["dir"], environment(rec, host_name, h), line=line)
    finally:
        backend.close()


def finish(lab: Optional[str], results_dir: Optional[str], keep: bool) -> Outcome:
    """Asks the keeper to stop what the person started, collect, undo and tear down (unless keep); then judges the folder."""
    rec = lab_record(lab)
    if os.environ.get("TCPLAB_MARK", "").startswith(f"{rec.lab}/"):
        raise LabError(f"`invoke finish` stops every program started from lab {rec.lab}'s shells, this one too: run it in a terminal of its own")
    keeper = keeper_pid(rec)
    if rec.status != record.READY or keeper is None:
        raise LabError(f"lab {rec.lab} cannot finish ({rec.reached() if keeper else 'its keeper is gone'}): "
                       f"`invoke down --lab {rec.lab}` removes what is left")
    folder = results.create(Path(results_dir) if results_dir else results.default_folder(rec.lab, rec.exercise))
    ui.stage("finishing")
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
                ui.relay(line)
            shown = len(lines)
            time.sleep(0.05)
    except KeyboardInterrupt:
        ui.error(f"interrupted: the keeper goes on finishing into {folder}; `invoke check {folder}` judges it then")
        return Outcome(EXIT_INTERRUPTED)
    result = record.read_result(folder)
    if result is None or result.get("error"):
        why = (result or {}).get("error") or "the keeper ended without a result (was it killed?)"
        results.remove_if_empty(folder)
        raise LabError(f"finish failed: {why}; `invoke down --lab {rec.lab}` removes what is left")
    passed = verdict.check_folder(folder)
    return Outcome(EXIT_OK if passed else EXIT_FAILED, folder, "kept" if keep else "")
