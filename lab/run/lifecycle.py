"""A lab's life around its run: torn down (a second Ctrl-C or SIGTERM cannot cut the teardown short),
what an interrupted run of it left cleared before the next, and SIGTERM and SIGHUP turned into the
Ctrl-C that starts a teardown. Whatever a lab made is recorded before it is made
(lab/backends/labstate.py), so all of this works from the record, after a SIGKILL too. `up` and the
hands-on keeper both use it."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Iterator

from .. import backends, ui
from ..backends import labstate, localtrace
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..errors import LabError


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
        who = "a hands-on session (its keeper, pid" if old.mode == "hands-on" else "`up` (pid"
        raise LabError(f"lab {lab} is in use by {who} {old.owner_pid}); choose another --lab, or `invoke down --lab {lab}`")
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
