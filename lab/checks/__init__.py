"""Checks: functions that read a results folder and compare it with the kernel model.

Each exercise lists its checks in exercise.yml; the list and the parameters travel in the results
folder's manifest, so `run` needs nothing but the folder.
"""
from __future__ import annotations

from pathlib import Path

from .. import params
from ..errors import LabError
from . import keepalive, latency, lost_update, persist, states  # noqa: F401  (importing registers the checks)
from .context import Context
from .registry import REGISTRY, CheckResult, MissingInput


def run(folder: Path) -> list[CheckResult]:
    ctx = Context(folder)
    variables = ctx.variables()
    results = []
    for spec in ctx.manifest.get("checks", []):
        spec = dict(spec)
        name = spec.pop("check")
        fn = REGISTRY.get(name)
        if fn is None:
            results.append(CheckResult(name, False, "a known check", "unknown", f"this tcplab has no check {name!r}"))
            continue
        try:
            args = params.substitute(spec, variables, (folder / "manifest.json", f"checks.{name}"))
            results.append(fn(ctx, **args))
        except MissingInput as e:
            results.append(CheckResult(name, False, "the inputs this check reads", "missing", str(e)))
        except (KeyError, TypeError, ValueError, LabError) as e:
            # A hand-edited manifest or a log from an older tcplab: the check cannot judge, so it fails.
            results.append(CheckResult(name, False, "well-formed inputs", "malformed", f"cannot evaluate {name}: {type(e).__name__}: {e}"))
    return results
