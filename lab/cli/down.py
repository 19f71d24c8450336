"""`invoke down`: everything a lab created removed (lab/session/down.py), and what that was."""
from __future__ import annotations

from typing import Optional

from .. import ui
from ..session import down as down_mod
from . import EXIT_OK


def down(lab: Optional[str], all_labs: bool, inventory: Optional[str] = None) -> int:
    removed = down_mod.down(lab, all_labs, inventory)
    if not removed:
        ui.console.print("no labs to remove")
    for name, what in removed.items():
        ui.console.print(f"lab {name}: " + (f"removed {', '.join(what)}" if what else "nothing left to remove"))
    return EXIT_OK
