"""`invoke list`: the bundled exercises, what each shows, and their parameters with defaults."""
from __future__ import annotations

import textwrap

from rich.markup import escape

from .. import ui
from ..spec import exercise as exercise_mod
from ..session import catalog  # noqa: F401  (the names exercises use)
from . import EXIT_OK


def list_exercises() -> int:
    width = max(40, min(ui.console.width, 100) - 4)
    for name in exercise_mod.known():
        ex = exercise_mod.load(name)
        ui.console.print(f"[bold]{escape(name)}[/bold]: {escape(ex.title)}")
        for line in textwrap.wrap(ex.description, width):
            ui.console.print(f"  [dim]{escape(line)}[/dim]")
        for p in ex.parameters.values():
            ui.console.print(f"    {escape(p.name)}={escape(str(p.default))}  {escape(p.help)}")
        if ex.hands_on is not None:
            by_hand = ", ".join(f"{k}={v}" for k, v in ex.hands_on.defaults.items())
            ui.console.print(f"    by hand: {len(ex.hands_on.steps)} steps, `invoke start {escape(name)}`"
                             + (f" (with {escape(by_hand)})" if by_hand else ""))
    return EXIT_OK
