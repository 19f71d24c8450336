"""Step kinds that start and stop the exercise's programs: `start`, `stop`."""
from __future__ import annotations

import shlex
import signal
from typing import Any

from ... import ui
from .base import PROGRAM, Run, Step, StepKind

STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


class Start(StepKind):
    """Starts a program on its host; its stdout (JSON events) and stderr go to files there."""

    name = "start"
    fields = {"program": PROGRAM}
    required = ("program",)
    scalar = "program"

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        prog = run.exercise.programs[step.args["program"]]
        argv = run.hosts.python(prog.host, prog.script) + prog.args
        ui.step(f"start {prog.name} on {prog.host}: {shlex.join([prog.script.name, *prog.args])}")
        run.argv[prog.name] = argv
        run.programs[prog.name] = run.spawn(prog.host, prog.name, argv)


class Stop(StepKind):
    """Stops a started program: SIGTERM, then SIGKILL after a grace period."""

    name = "stop"
    fields = {"program": PROGRAM}
    required = ("program",)
    scalar = "program"

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        proc = run.started(step.args["program"], step.where)
        ui.step(f"stop {proc.name}")
        run.stop([proc], signal.SIGTERM, STOP_GRACE)
