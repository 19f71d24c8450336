"""Step kinds that wait: for a program's event or line (`wait`), for it to exit (`wait_exit`), or a
fixed time (`sleep`). A wait that runs out stops the timeline with a TimelineError."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Optional

from ... import ui
from ...errors import TimelineError
from ..yamlfile import Fields
from .base import NUMBER, PROGRAM, STRING, Run, Scenario, Step, StepKind


class Wait(StepKind):
    """Waits until a program reports a JSON event (`event`) or prints a line matching `line`."""

    name = "wait"
    fields = {"program": PROGRAM, "timeout": NUMBER, "event": STRING, "line": STRING}
    required = ("program", "timeout")

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        if ("event" in args) == ("line" in args):
            raise f.error("event", "a wait step needs exactly one of event (a JSON event name) or line (a regular expression)")
        if "line" in args:
            try:
                re.compile(args["line"])
            except re.error as e:
                raise f.error("line", f"{args['line']!r} is not a regular expression: {e}") from None

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        proc = run.started(step.args["program"], step.where)
        timeout = step.args["timeout"]
        if "event" in step.args:
            event = step.args["event"]
            what = f"{proc.name} to report '{event}'"

            def seen(out: str, err: str) -> bool:
                return any(event_name(line) == event for line in out.splitlines())
        else:
            pattern = re.compile(step.args["line"])
            what = f"{proc.name} to print a line matching {pattern.pattern!r}"

            def seen(out: str, err: str) -> bool:
                return bool(pattern.search(out) or pattern.search(err))

        with ui.waiting(f"wait for {what} (up to {timeout:g} s)"):
            run.wait_for(proc, seen, timeout, what)


class WaitExit(StepKind):
    """Waits for a program to exit and records its exit status."""

    name = "wait_exit"
    fields = {"program": PROGRAM, "timeout": NUMBER}
    required = ("program", "timeout")
    scalar = "program"

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        proc = run.started(step.args["program"], step.where)
        timeout = step.args["timeout"]
        with ui.waiting(f"wait for {proc.name} to exit (up to {timeout:g} s)"):
            if not run.wait_until(lambda: proc.poll() is not None, timeout):
                raise TimelineError(f"{proc.name} did not exit within {timeout:g} s")
        entry["exit_status"] = proc.poll()
        ui.step(f"{proc.name} exited with status {proc.poll()}")


class Sleep(StepKind):
    """Waits a fixed number of seconds."""

    name = "sleep"
    fields = {"seconds": NUMBER}
    required = ("seconds",)
    scalar = "seconds"

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        with ui.waiting(f"sleep {step.args['seconds']:g} s"):
            time.sleep(step.args["seconds"])


def event_name(line: str) -> Optional[str]:
    """The name of the JSON event on one line of a program's stdout, or None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line).get("event")
    except (ValueError, AttributeError):
        return None
