"""Checks: functions that read a results folder and compare it with the kernel model.

Each exercise lists its checks in exercise.yml; the list and the parameters travel in the results
folder's manifest, so `run` needs nothing but the folder. Importing this package registers every
check (lab/spec/functions.py holds the registry and the runner).
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.context import Context
from ..spec import functions
from . import hints
from . import keepalive, latency, lost_update, persist, states, student  # noqa: F401  (importing registers the checks)
from . import half_open, nagle, retransmission, syn_retries, time_wait  # noqa: F401
from .result import CheckResult

# What a check that could not run shows as observed, and what it needed.
NOT_RUN = {"unknown": ("a known check", "unknown"), "missing": ("the inputs this check reads", "missing"),
           "error": ("well-formed inputs", "malformed")}


def run(folder: Path) -> list[CheckResult]:
    return judge(Context(folder))


def judge(ctx: Context) -> list[CheckResult]:
    """Every check the folder's manifest lists, run; on a hands-on folder, each failure with its hint."""
    results = from_outcomes(functions.run(ctx, "check"))
    hints.attach(ctx, results)
    return results


def from_outcomes(outcomes: list[functions.Outcome]) -> list[CheckResult]:
    results = []
    for o in outcomes:
        if o.ok:
            o.value.frames = o.frames
            results.append(o.value)
        else:
            expected, observed = NOT_RUN[o.reason]
            results.append(CheckResult(o.name, False, expected, observed, o.problem))
    return results
