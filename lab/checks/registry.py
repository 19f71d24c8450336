"""Check results and the registry that maps a check's name in exercise.yml to its function."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional


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

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["table"] is None:
            del d["table"]
        return d


class MissingInput(Exception):
    """The results folder lacks what a check needs (a capture, a log, an event): the check fails with this detail."""


REGISTRY: dict[str, Callable[..., CheckResult]] = {}


def seconds(values) -> str:
    """Times for a report line: '1.000, 2.032' or 'none'."""
    return ", ".join(f"{v:.3f}" for v in values) if len(values) else "none"


def either(counts: list[int]) -> str:
    """The counts a model allows: '3' or '3 or 4'."""
    return " or ".join(map(str, counts))


def check(fn: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
    """Registers a check under its function name; its parameters after `ctx` are the fields exercise.yml may set."""
    REGISTRY[fn.__name__] = fn
    return fn
