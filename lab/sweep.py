"""Sweeps: one `up` that runs an exercise once per value of a parameter (`--set latency=0,5,10,20`).

A comma-separated value for a numeric parameter makes a sweep; each run gets its own results folder,
named after its value, inside the sweep's folder, whose sweep.json lists them. Every value is checked
(and every run's exercise loaded) before anything is built.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import exercise as exercise_mod
from .errors import LabError
from .results import write_json

SWEEP_FILE = "sweep.json"


@dataclass
class Sweep:
    parameter: str
    values: list[Any]
    exercises: list[exercise_mod.Exercise]

    def folder(self, i: int) -> str:
        return f"{self.parameter}-{shown(self.values[i])}"


def shown(value: Any) -> str:
    """A swept value as people write it: 10, not 10.0."""
    return (f"{value:g}" if float(f"{value:g}") == value else repr(value)) if isinstance(value, float) else str(value)


def plan(name: str, sets: Sequence[str], lab: str, addresses: dict[str, str]) -> Optional[Sweep]:
    """The sweep the `--set` items ask for, or None when every parameter has one value."""
    listed = [i for i, item in enumerate(sets) if "," in item.partition("=")[2]]
    if not listed:
        return None
    rest = [item for i, item in enumerate(sets) if i not in listed]
    base = exercise_mod.load(name, rest, lab, addresses=addresses)
    swept = []
    for i in listed:
        param, _, raw = sets[i].partition("=")
        declared = base.parameters.get(param.strip())
        if declared is not None and declared.type == "str":
            rest.append(sets[i])  # a string may hold commas: it is one value
        else:
            swept.append((param.strip(), raw))
    if not swept:
        return None
    if len(swept) > 1:
        raise LabError(f"--set: a sweep varies one parameter, and {' and '.join(p for p, _ in swept)} each list several values; "
                       "run one sweep per parameter")
    param, raw = swept[0]
    if param not in base.parameters:
        exercise_mod.load(name, [*rest, f"{param}={raw.split(',')[0]}"], lab, addresses=addresses)  # says which names exist
    items = [v.strip() for v in raw.split(",")]
    if any(not v for v in items):
        raise LabError(f"--set {param}={raw}: an empty value in the list; write values separated by commas, such as {param}=0,10,20")
    values = [base.parameters[param].convert(v, f"--set {param}") for v in items]
    seen = set()
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise LabError(f"--set {param}={raw}: {v} is not a number a run can use")
        if shown(v) in seen:  # each run's folder is named after its value
            raise LabError(f"--set {param}={raw}: {shown(v)} is listed twice")
        seen.add(shown(v))
    exercises = [exercise_mod.load(name, [*rest, f"{param}={v}"], lab, addresses=addresses) for v in items]
    return Sweep(param, values, exercises)


def write(folder: Path, sweep: Sweep, finished: list[int]) -> None:
    """sweep.json: the parameter, its values and each run's folder; `finished` are the runs done so far."""
    ex = sweep.exercises[0]
    write_json(folder / SWEEP_FILE, {
        "exercise": ex.name,
        "title": ex.title,
        "parameter": sweep.parameter,
        "help": ex.parameters[sweep.parameter].help,
        "runs": [{"value": v, "folder": sweep.folder(i), "done": i in finished} for i, v in enumerate(sweep.values)],
    })


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
