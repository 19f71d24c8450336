"""The keeper of a hands-on lab: the process that owns it from `invoke start` to `invoke finish` (or
`invoke down`), as `up` owns the lab it runs.

It brings the lab up, puts the exercise's programs (and its hands-on files) in each host's working
folder, writes down what each host had before the person came, and runs the hands-on setup (the
lab's own capture; a delay or a trace where the exercise has them). Then, every TICK, it reads the
lab's capture, and every HOSTS_EVERY asks each host what the person has done, and keeps both in the
lab's record. At a
finish request (SIGUSR1, the request in the record) it stops what the person started, collects
everything into the results folder, undoes what they changed on the hosts and tears the lab down
(unless kept). SIGTERM, SIGINT or SIGHUP (`invoke down`) tear the lab down at once.

    python -m lab.handson.keeper LAB     (or forked by `invoke start` and the lab server's worker, which
                                         wrote the record: lab/session/handson.py)
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .. import backends, checks, report, ui  # noqa: F401  (checks, report: the names exercise.yml's functions use)
from ..backends import labstate
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..errors import LabError
from ..naming import HANDSON_BASELINE, check_lab_name, handson_mark, keeper_log
from ..run.lifecycle import teardown
from ..run.timeline import Run
from ..spec import exercise as exercise_mod
from ..spec.exercise import Exercise
from ..spec.params import substitute
from . import collect, record
from .watching import Watcher

TICK = 0.25  # seconds between looks at the wire
# Seconds between looks at the hosts: each asks every host what the person has done (a program run there,
# iptables and nft listed), which costs far more than reading the capture on, and a step seen done a second
# later is still seen at once by a person. A lab server's forty labs make this the cost that counts.
HOSTS_EVERY = 1.0


def main(lab: str) -> int:
    check_lab_name(lab)
    rec = record.load(lab)
    if rec is None:
        print(f"no hands-on record for lab {lab}", file=sys.stderr)
        return 2
    rec.keeper = os.getpid()
    rec.save()
    finish_asked = [False]

    def ask_finish(signum: int, frame: object) -> None:
        finish_asked[0] = True

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, ask_finish)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop)
    try:
        with labstate.exclusive(lab):
            return _keep(rec, finish_asked)
    except LabError as e:
        ui.error(str(e))  # to the keeper's log, where `start` reads it: the lab's record went with the teardown
        return 2
    except KeyboardInterrupt:
        return 130


def _keep(rec: record.Record, finish_asked: list[bool]) -> int:
    backend = backends.get(rec.backend, rec.lab, rec.inventory, rec.accept_new_host_keys)
    ex = exercise_mod.load(rec.exercise, rec.sets, rec.lab, addresses=backend.addresses())
    backend.prepare(ex)
    backend.check_environment()
    state = LabState.owned(rec.lab, backend.name, ex.name)
    state.mode = "hands-on"
    state.save()
    built = False
    try:
        try:
            ui.step(f"bring up lab {rec.lab} on {backend.name}: {', '.join(backend.host_names(ex.topology))}")
            backend.create(ex.topology, state)
            built = True
            run = _set_up(ex, backend, state, rec)
            watcher = Watcher(ex, backend, run, rec)
            watcher.watch_hosts(state, HOSTS_EVERY)
            rec.status, rec.ready_at = record.READY, time.time()
            rec.save()
            ui.step("ready: the person's turn")
            hosts_seen = 0.0
            while not finish_asked[0]:
                hosts = time.monotonic() - hosts_seen >= HOSTS_EVERY
                watcher.look(hosts=hosts, fresh=False)
                if hosts:
                    hosts_seen = time.monotonic()
                rec.save()
                _sleep(TICK, finish_asked)
        except KeyboardInterrupt:
            rec.status, rec.message = record.STOPPED, "stopped (invoke down, or a signal)"
            rec.save()
            raise
        rec.finish = record.finish_request(rec.lab)
        rec.status = record.FINISHING
        rec.save()
        keep = bool(rec.finish.get("keep"))
        folder = Path(rec.finish["folder"])
        try:
            rec.result = collect.finish(ex, backend, state, run, watcher, rec, folder)
        except LabError as e:
            rec.result = {"folder": str(folder), "error": str(e)}
            ui.error(str(e))
            keep = False
        record.write_result(folder, rec.result)  # in the results folder: the lab's state goes with the teardown
        rec.status = record.FINISHED
        rec.save()
        if keep:
            state.kept, state.owner_pid = True, 0
            state.save()
        return 0
    finally:
        if not (built and state.kept):
            teardown(backend, state)
        backend.close()


def _set_up(ex: Exercise, backend: Backend, state: LabState, rec: record.Record) -> Run:
    """The programs and files in each host's folder, each host's baseline, the setup steps; the record's steps filled in."""
    assert ex.hands_on is not None
    ifaces = backend.interfaces(ex.topology)
    fill = {**ex.variables, **{f"{h}.iface": i for h, i in ifaces.items()}}
    hosts = backend.host_names(ex.topology)
    for host in hosts:
        files: dict[str, bytes] = {}
        for prog in ex.programs.values():
            if prog.host == host:
                # The script's neighbours too, so a program may import a module beside it.
                files.update({p.name: p.read_bytes() for p in sorted(prog.script.parent.glob("*.py"))})
        for name, text in ex.hands_on.files.get(host, {}).items():
            files[name] = str(substitute(text, fill, (ex.file, f"hands_on.files.{host}.{name}"))).encode()
        backend.install(host, files)
        rec.hosts[host] = {"dir": backend.student_dir(host), "events": backend.events_dir(host), "iface": ifaces.get(host, ""),
                           "mark": handson_mark(rec.lab, host)}
    rec.intro = str(substitute(ex.hands_on.intro, fill, (ex.file, "hands_on.intro")))
    rec.steps = [{"do": str(substitute(s.do, fill, (ex.file, "hands_on.steps"))), "why": str(substitute(s.why, fill, (ex.file, "hands_on.steps"))),
                  "host": s.host if s.host in hosts else None, "run": str(substitute(s.run, fill, (ex.file, "hands_on.steps"))),
                  "kinds": [c.kind for c in s.done_when],
                  "when": [[c.kind, substitute(c.args, fill, (ex.file, "hands_on.steps"))] for c in s.done_when], "done_at": None}
                 for s in ex.hands_on.steps]
    run = Run(ex, backend, state, folder=Path("/nonexistent"))  # the results folder is named at finish
    run.execute(ex.hands_on.setup)
    for host in hosts:
        # What the host has before the person comes (the lab's own setup included, which is not theirs to undo),
        # written before they get a shell, so `down` can undo their changes after a SIGKILL too.
        backend.run(host, backend.onhost(host, "handson.py") + ["baseline", backend.work_path(host, HANDSON_BASELINE)])
    return run


def _sleep(seconds: float, finish_asked: list[bool]) -> None:
    deadline = time.monotonic() + seconds
    while not finish_asked[0] and time.monotonic() < deadline:
        time.sleep(0.02)


def detached(lab: str) -> int:
    """The keeper's whole life as a detached process (its output is its log); its exit status."""
    try:
        code = main(lab)
        if code == 0:
            # Its log served `start` and `finish`; a keeper that failed leaves it for `down` to show and remove.
            keeper_log(lab).unlink(missing_ok=True)
        return code
    except Exception:  # noqa: BLE001  (the keeper runs detached: what kills it must reach its log, and `start` shows it)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(detached(sys.argv[1]))
