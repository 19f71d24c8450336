"""The results folder itself: where it goes by default, making it (never over another run's), and
writing its JSON files. What goes in it: manifest.json (lab/results/manifest.py), one pcap per
capture point, one log per program, report.json (lab/report/verdict.py)."""
from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import LabError

RESULTS_ROOT = Path("results")


def default_folder(lab: str, exercise: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return RESULTS_ROOT / f"{lab}-{exercise}-{stamp}"


def create(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LabError(f"--results {path}: exists and is not an empty folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabError(f"--results {path}: cannot create: {e.strerror}") from None
    return path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def remove_if_empty(folder: Path) -> None:
    """A run that made nothing (refused before it started) leaves no folder behind."""
    with contextlib.suppress(OSError):
        folder.rmdir()
