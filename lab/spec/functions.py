"""The functions an exercise names to judge and show a results folder: checks, plots and measures.

exercise.yml lists them under `checks:`, `plots:` and `measures:`; each item names a registered
function and sets its fields (the function's parameters after the ones the runner passes itself:
`ctx`, the folder's view, and for a plot `out`, the file to draw). The list travels in the results
folder's manifest as written, `{name}` placeholders and all.

One registry holds the three kinds, and one runner applies them to a folder: the same substitution
of placeholders from the folder's variables, and the same handling of an unknown name, of missing
inputs (MissingInput) and of any other error, which each kind then shows its own way (a failing
check, a picture not drawn, a figure missing from a comparison).

The functions register themselves where they are defined (lab/checks, lab/report), layers above
this one; lab/session/catalog.py imports them all, as every command that loads an exercise does first.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

from ..errors import LabError, MissingInput
from . import yamlfile
from .params import substitute

# kind -> the exercise.yml and manifest section that lists functions of that kind
SECTIONS = {"check": "checks", "plot": "plots", "measure": "measures"}
PASSED = ("ctx", "out")  # parameters the runner passes; exercise.yml never sets them


@dataclass(frozen=True)
class Function:
    kind: str
    name: str
    fn: Callable[..., Any]
    fields: tuple[str, ...]  # what exercise.yml may set
    required: tuple[str, ...]  # ...and must


class Registry:
    def __init__(self) -> None:
        self._functions: dict[str, dict[str, Function]] = {kind: {} for kind in SECTIONS}

    def register(self, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator that registers a function of this kind under its own name."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            params = inspect.signature(fn).parameters
            fields = tuple(p for p in params if p not in PASSED)
            required = tuple(p for p in fields if params[p].default is inspect.Parameter.empty)
            self._functions[kind][fn.__name__] = Function(kind, fn.__name__, fn, fields, required)
            return fn

        return add

    def get(self, kind: str, name: str) -> Optional[Function]:
        return self._functions[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return sorted(self._functions[kind])

    def parse(self, path: Path, kind: str, items: list) -> list[dict[str, Any]]:
        """The items of an exercise's section, each checked against its function: a known name, only its fields, all required ones."""
        if items and not self._functions[kind]:
            # Nothing registered: this process never imported the functions (lab/session/catalog.py does).
            raise LabError(f"no {SECTIONS[kind]} are registered, so {path} cannot be checked: import lab.session.catalog first")
        out = []
        for i, item in enumerate(items):
            f = yamlfile.Fields(path, f"{SECTIONS[kind]}[{i}]", item)
            name = f.get(kind, str)
            fn = self.get(kind, name)
            if fn is None:
                raise f.error(kind, f"unknown {kind} {name!r}; known: {', '.join(self.names(kind))}")
            f.only([kind, *fn.fields])
            for p in fn.required:
                if p not in item:
                    raise f.error(p, f"required by {kind} {name}; it takes: {', '.join(fn.fields)}")
            out.append(dict(item))
        return out


FUNCTIONS = Registry()
check = FUNCTIONS.register("check")
plot = FUNCTIONS.register("plot")
measure = FUNCTIONS.register("measure")


class Folder(Protocol):
    """What the runner needs of a results folder's view (lab/analysis/context.py gives it)."""

    folder: Path
    manifest: Mapping[str, Any]

    def variables(self) -> dict[str, Any]: ...

    # Optional (lab/analysis/context.py has them): the segments a function looks at, recorded between
    # the two calls, so that a check's verdict can be written on the frames it judged.
    # def begin(self) -> None: ...
    # def judged(self) -> dict[str, list[int]]: ...   capture name -> frame numbers


@dataclass
class Outcome:
    """One function applied to a folder: its value, or why there is none."""

    kind: str
    name: str
    value: Any = None
    reason: str = ""  # "", "unknown", "missing" (inputs the folder lacks) or "error" (it could not be evaluated)
    problem: str = ""  # one line, for the person reading the report
    frames: dict = field(default_factory=dict)  # capture name -> the frames it looked at (where the folder records them)

    @property
    def ok(self) -> bool:
        return not self.reason


def run(ctx: Folder, kind: str) -> list[Outcome]:
    """Applies every function of this kind that the folder's manifest lists, in order."""
    section = SECTIONS[kind]
    variables = ctx.variables()
    outcomes = []
    for i, spec in enumerate(ctx.manifest.get(section) or []):
        if not isinstance(spec, dict) or not isinstance(spec.get(kind), str):
            outcomes.append(Outcome(kind, f"{section}[{i}]", reason="error", problem=f"manifest.json: {spec!r} is not a {kind} (a mapping with a {kind!r} name)"))
            continue
        name = spec[kind]
        function = FUNCTIONS.get(kind, name)
        if function is None:
            outcomes.append(Outcome(kind, name, reason="unknown", problem=f"this tcplab has no {kind} {name!r}"))
            continue
        args = {k: v for k, v in spec.items() if k != kind}
        passed = {"out": ctx.folder / f"{name}.png"} if kind == "plot" else {}
        if hasattr(ctx, "begin"):
            ctx.begin()
        try:
            resolved = substitute(args, variables, (ctx.folder / "manifest.json", f"{section}[{i}]"))
            outcomes.append(Outcome(kind, name, function.fn(ctx, **passed, **resolved),
                                    frames=ctx.judged() if hasattr(ctx, "judged") else {}))
        except MissingInput as e:
            outcomes.append(Outcome(kind, name, reason="missing", problem=str(e)))
        except Exception as e:  # noqa: BLE001  (a hand-edited manifest, a log from an older tcplab: this one cannot judge; the rest still run)
            outcomes.append(Outcome(kind, name, reason="error", problem=f"cannot evaluate {name}: {type(e).__name__}: {e}"))
    return outcomes

