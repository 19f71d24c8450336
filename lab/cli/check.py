"""`invoke check DIR`: a results folder judged again from its files alone (a sweep's: every run, then
the comparison), here or on another machine."""
from __future__ import annotations

from pathlib import Path

from .. import ui
from ..errors import LabError
from ..report import comparison, verdict
from ..results import sweepfile
from ..spec.sweep import shown
from . import EXIT_FAILED, EXIT_OK


def check(folder: str) -> int:
    path = Path(folder)
    if not path.is_dir():
        raise LabError(f"{folder}: no such results folder")
    sweep = sweepfile.read(path)
    if sweep is not None:
        for run in sweep["runs"]:
            if (path / run["folder"] / "manifest.json").exists():
                ui.console.rule(f"{sweep['parameter']}={shown(run.get('value'))}")
                verdict.check_folder(path / run["folder"])
        ui.console.rule(f"comparison: {sweep['parameter']}")
        passed = comparison.compare(path, sweep)
    else:
        passed = verdict.check_folder(path)
    ui.console.print(f"results: {path}")
    return EXIT_OK if passed else EXIT_FAILED
