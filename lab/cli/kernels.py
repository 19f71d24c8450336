"""`invoke up EXERCISE --kernels host,bookworm,trixie` (lab/session/kernels.py), then where its results are."""
from __future__ import annotations

from typing import Optional, Sequence

from .. import ui
from ..session import kernels


def run(name: str, lab: str, kernels_arg: str, sets: Sequence[str], results_dir: Optional[str]) -> int:
    outcome = kernels.run(name, lab, kernels_arg, sets, results_dir)
    if outcome.folder is not None and outcome.folder.exists():
        ui.console.print(f"results: {outcome.folder}")
    return outcome.code
