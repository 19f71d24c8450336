"""The `trace_states` step kind: every TCP state change of a port traced in the kernel, with its
stack, until the timeline collects (the backend says how: lab/backends/localtrace.py, or the SSH
agent on each machine)."""
from __future__ import annotations

from typing import Any

from .base import PORT, Run, Step, StepKind


class TraceStates(StepKind):
    """Starts tracing the TCP state changes of `port` (sock:inet_sock_set_state) on the lab's kernels."""

    name = "trace_states"
    fields = {"port": PORT}
    required = ("port",)

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        run.trace_states(int(step.args["port"]))
