"""Sweeps: one `up` that runs an exercise once per value of a parameter (`--set latency=0,5,10,20`).

A comma-separated value for a numeric parameter makes a sweep; each run gets its own results folder,
named after its value, inside the sweep's folder, whose sweep.json (lab/results/sweepfile.py) lists
them. Every value is checked (and every run's exercise loaded) before anything is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..errors import LabError
from . import exercise as exercise_mod


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
    for v in values:  # (a NaN or an infinity was refused by convert, as for any --set)
        if shown(v) in seen:  # each run's folder is named after its value
            raise LabError(f"--set {param}={raw}: {shown(v)} is listed twice")
        seen.add(shown(v))
    exercises = [exercise_mod.load(name, [*rest, f"{param}={v}"], lab, addresses=addresses) for v in items]
    return Sweep(param, values, exercises)
