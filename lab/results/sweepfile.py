"""sweep.json: a sweep's parameter, its values, and the folder of each run (lab/spec/sweep.py plans them);
for `up --kernels`, the kernels in its place."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import LabError
from ..spec.sweep import Sweep
from .folder import write_json

SWEEP_FILE = "sweep.json"


def write(folder: Path, sweep: Sweep, finished: list[int]) -> None:
    """sweep.json: the parameter, its values and each run's folder; `finished` are the runs done so far."""
    ex = sweep.exercises[0]
    write_runs(folder, ex.name, ex.title, sweep.parameter, ex.parameters[sweep.parameter].help,
               [{"value": v, "folder": sweep.folder(i), "done": i in finished} for i, v in enumerate(sweep.values)])


def write_runs(folder: Path, exercise: str, title: str, parameter: str, help: str, runs: list[dict]) -> None:
    """sweep.json for runs that differ in one thing: a parameter's value, or (`--kernels`) the kernel."""
    write_json(folder / SWEEP_FILE, {"exercise": exercise, "title": title, "parameter": parameter, "help": help, "runs": runs})


def read(folder: Path) -> Optional[dict]:
    """A sweep folder's sweep.json, or None when the folder holds one run."""
    path = folder / SWEEP_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise LabError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("parameter"), str) or not isinstance(data.get("runs"), list) \
            or any(not isinstance(r, dict) or not isinstance(r.get("folder"), str) or "/" in r["folder"] or r["folder"] in ("", ".", "..") for r in data["runs"]):
        raise LabError(f"{path}: not a tcplab sweep: needs 'parameter' and a list 'runs' of {{value, folder}}")
    return data
