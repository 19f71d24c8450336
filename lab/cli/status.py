"""`invoke status`: the labs on this machine, and whether each is running, kept, or left over; and
how many VM sets there are (`invoke vms status` says more)."""
from __future__ import annotations

from .. import ui
from ..backends import labstate
from ..backends.netns import list_netns
from ..handson import record as handson_record
from ..vms import vmset
from ..session import labs
from . import EXIT_OK


def status() -> int:
    docker_labs = set(labs.in_docker())
    names = labs.known()
    if not names:
        ui.console.print("no labs on this machine")
    for name in names:
        state = labstate.load(name)
        if state is None:
            what = "containers" if name in docker_labs else "namespaces"
            ui.console.print(f"{name}: leftover {what} without a state file; `invoke down --lab {name}` removes them")
            continue
        rec = handson_record.load(name) if state.mode == "hands-on" else None
        if state.owner_alive() and rec is not None:
            how = f"hands-on {state.exercise} (keeper pid {state.owner_pid}): {rec.reached()}"
        elif state.owner_alive():
            how = f"running `up {state.exercise}` (pid {state.owner_pid})"
        elif state.kept:
            how = f"kept up after {state.exercise} (--keep)"
        else:
            how = "left over from an interrupted run"
        if state.backend == "ssh":
            where = f"machines: {', '.join(state.machines or []) or 'none yet'} (inventory {state.inventory})"
        else:
            present = [ns for ns in list_netns() if ns in (state.namespaces or [])]
            things = "containers" if state.backend == "docker" else "namespaces"
            where = f"{things}: {', '.join(present) or 'none'}"
        ui.console.print(f"{name}: {state.backend}, {how}, since {state.created}; {where}")
    sets = vmset.names()
    if sets:
        ui.console.print(f"VM sets: {', '.join(sets)} (`invoke vms status` shows them)")
    return EXIT_OK
