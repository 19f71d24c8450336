"""`invoke up`: an exercise run (lab/session/run.py) with its progress and verdict on the terminal,
then where its results are."""
from __future__ import annotations

from typing import Optional, Sequence

from .. import ui
from ..session import run, swarmrun


def up(name: str, lab: str, backend_name: str, sets: Sequence[str], results_dir: Optional[str], keep: bool,
       inventory: Optional[str] = None, accept_new_host_keys: bool = False) -> int:
    outcome = run.up(name, lab, backend_name, sets, results_dir, keep, inventory, accept_new_host_keys)
    if outcome.kept:
        ui.console.print(f"lab {lab} is still up (--keep): {outcome.kept}; `invoke down --lab {lab}` removes it")
    if outcome.folder is not None and outcome.folder.exists():
        ui.console.print(f"results: {outcome.folder}")
    return outcome.code


def up_swarm(name: str, lab: str, sets: Sequence[str], results_dir: Optional[str]) -> int:
    outcome = swarmrun.up(name, lab, sets, results_dir)
    if outcome.folder is not None and outcome.folder.exists():
        ui.console.print(f"results: {outcome.folder}")
    return outcome.code
