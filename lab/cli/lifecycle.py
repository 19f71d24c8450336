"""A lab's life: brought up on its backend, its timeline run, its manifest written, torn down (unless
kept). Ctrl-C, SIGTERM and SIGHUP end a run the same way, with the teardown; a second one cannot cut
the teardown short. Whatever a lab made is recorded before it is made (lab/backends/labstate.py), so
what an earlier run left can be cleared here, and `down` works after a SIGKILL."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Iterator, Optional

from .. import backends, ui
from ..backends import localtrace
from ..backends import labstate
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..errors import LabError, TimelineError
from ..results import folder as results
from ..results import record
from ..run.timeline import Run
from ..spec.exercise import Exercise

DONE, INTERRUPTED = "done", "interrupted"


def one_run(ex: Exercise, lab: str, backend: Backend, folder: Path, keep: bool) -> str:
    """One run into `folder` (made by the caller, removed if it stays empty); DONE or INTERRUPTED."""
    try:
        return _run_lab(ex, lab, backend, folder, keep)
    finally:
        results.remove_if_empty(folder)
        backend.close()


def _run_lab(ex: Exercise, lab: str, backend: Backend, folder: Path, keep: bool) -> str:
    """Builds the lab, runs the timeline, writes the manifest; tears down unless kept."""
    ui.step(f"{ex.name}: {ex.title}")
    ui.step("parameters: " + ", ".join(f"{k}={v}" for k, v in ex.values.items()))
    state = LabState.owned(lab, backend.name, ex.name)
    manifest: dict = {}
    run: Optional[Run] = None
    error: Optional[str] = None
    built = interrupted = False
    try:
        with signals_interrupt():
            try:
                ui.step(f"bring up lab {lab} on {backend.name}: {', '.join(backend.host_names(ex.topology))}")
                backend.create(ex.topology, state)
                built = True
                manifest = record.start(ex, lab, backend, folder)
                run = Run(ex, backend, state, folder)
                try:
                    run.execute()
                except TimelineError as e:
                    error = str(e)
                    ui.error(error)
                finally:
                    run.finish()
            except KeyboardInterrupt:
                interrupted = True
    finally:
        if manifest:
            record.finish(folder, manifest, run.summary() if run else {}, "interrupted" if interrupted else error)
        if keep and built and not interrupted:
            state.kept, state.owner_pid = True, 0
            state.save()
        else:
            teardown(backend, state)
    return INTERRUPTED if interrupted else DONE


def teardown(backend: Backend, state: LabState) -> list[str]:
    """Removes everything the lab made; a second Ctrl-C or SIGTERM cannot cut it short and leave half a lab behind."""
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stoppers}
    try:
        ui.step(f"tear down lab {state.lab}")
        removed = backend.destroy(state) + localtrace.remove(state)
        state.remove()
        return removed
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def clear_leftovers(lab: str) -> None:
    """What an interrupted run of this lab left, removed; a lab in use or kept is refused instead."""
    old = labstate.load(lab)
    if old is None:
        return
    if old.owner_alive():
        raise LabError(f"lab {lab} is in use by `up` (pid {old.owner_pid}); choose another --lab or wait for it")
    if old.kept:
        raise LabError(f"lab {lab} is still up from an earlier `up --keep`: run `invoke down --lab {lab}` first, or choose another --lab")
    ui.warn(f"lab {lab} has leftovers from an interrupted run; removing them")
    backends.get(old.backend, lab, old.inventory or None).destroy(old)
    localtrace.remove(old)
    old.remove()


def interrupted(lab: str, folder: Path) -> None:
    ui.error(f"interrupted: lab {lab} torn down")
    if folder.exists():
        ui.console.print(f"partial results: {folder}")


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end a run the way Ctrl-C does: teardown, then a non-zero exit."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
