"""A check's result, and the wording every check uses for times and counts in its report lines."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence


@dataclass
class CheckResult:
    name: str
    passed: bool
    expected: str
    observed: str
    detail: str = ""
    # A table too wide for the verdict's "observed" cell (a side's timeline): printed after the
    # verdicts. {"title": str, "columns": [str], "rows": [[str]]}
    table: Optional[dict] = None
    # On a failure: what most likely went wrong, said to the person who ran the exercise.
    hint: str = ""
    # Capture name -> the frames the check judged (set by the runner, not by the check): the verdict is
    # written on them in the folder's annotated capture.
    frames: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("table", "hint", "frames"):
            if not d[key]:
                del d[key]
        return d


def seconds(values: Sequence[float]) -> str:
    """Times for a report line: '1.000, 2.032' (callers say 'none' themselves: see `times`)."""
    return ", ".join(f"{v:.3f}" for v in values)


def count(n: int, noun: str, plural: str = "") -> str:
    """'1 probe', '3 probes', '0 probes'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def times(label: str, values: Sequence[float]) -> str:
    """'at 4.167, 6.183 s', or '' for none: the times of what a count just named."""
    return f"{label} {seconds(values)} s" if len(values) else ""


def either(counts: list[int]) -> str:
    """The counts a model allows: '3' or '3 or 4'."""
    return " or ".join(map(str, counts))


def counted(counts: list[int], noun: str) -> str:
    """The counts a model allows, with their noun: '1 probe', '3 probes', '1 or 2 probes'."""
    return f"{either(counts)} {noun if counts == [1] else noun + 's'}"


def spaced(noun: str, values: Sequence[float]) -> str:
    """The gaps between counted things, or '' where there are none: 'interval 2.016 s', 'intervals 2.016, 2.016 s'."""
    return times(noun if len(values) == 1 else noun + "s", values)
