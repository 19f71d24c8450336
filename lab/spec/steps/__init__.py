"""Timeline steps: every kind in one registry, and the parsing of an exercise's `timeline:`.

Each kind is one class (lab/spec/steps/*.py) holding its fields, its scalar form, what it checks
when the exercise is loaded, the tools it needs and what it does when the timeline runs. Parsing
turns each item into a Step: placeholders filled, numbers evaluated, references to hosts and
programs checked, then the kind's own checks; every error names the file and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError
from .. import params
from ..topology import Topology
from ..yamlfile import Fields
from .base import HOST, MAPPING, NUMBER, PORT, PROGRAM, Capture, Program, Scenario, Step, StepKind
from .captures import CaptureStep, Collect, StopCaptures
from .network import BridgeDrop, BridgeRestore, Firewall, Forget, Impair, Unimpair
from .programs import Start, Stop
from .tracing import TraceStates
from .waits import Sleep, Wait, WaitExit

KINDS: dict[str, StepKind] = {k.name: k() for k in (
    CaptureStep, Start, Wait, Firewall, WaitExit, Stop, StopCaptures, Sleep, Collect,
    BridgeDrop, BridgeRestore, Impair, Unimpair, TraceStates, Forget,
)}


def parse_timeline(path: Path, items: list, scenario: Scenario, variables: Mapping[str, Any], section: str = "timeline") -> list[Step]:
    steps: list[Step] = []
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(path, where, f"a step is a mapping with one key, the step kind; kinds: {', '.join(KINDS)}")
        (name, body), = item.items()
        kind = KINDS.get(name)
        if kind is None:
            raise ConfigError(path, where, f"unknown step {name!r}; kinds: {', '.join(KINDS)}")
        if body is None:
            body = {}
        elif not isinstance(body, dict):
            if kind.scalar is None:
                raise ConfigError(path, f"{where}.{name}", "expected a mapping of the step's fields")
            body = {kind.scalar: body}
        f = Fields(path, f"{where}.{name}", body).only(kind.fields)
        for r in kind.required:
            f.get(r, object)
        args = {key: _field(f, key, kind.fields[key], raw, scenario, variables) for key, raw in body.items()}
        kind.validate(f, args, scenario, steps)
        steps.append(Step(name, args, where))
    return steps


def _field(f: Fields, key: str, type_: str, raw: Any, scenario: Scenario, variables: Mapping[str, Any]) -> Any:
    """One field's value, placeholders filled, checked against its type."""
    where = (f.file, f.path(key))
    if type_ == NUMBER:
        value = params.evaluate(raw, variables, where)
        if value < 0:
            raise f.error(key, f"{raw!r} gives {value:g}; it must be 0 or more")
        return value
    value = params.substitute(raw, variables, where)
    if type_ == PORT:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            raise f.error(key, f"{value!r} is not a port number")
        return value
    if type_ == MAPPING:
        return value  # the kind checks it
    if not isinstance(value, str):
        raise f.error(key, f"expected a string, got {value!r}" + (" (quote it)" if isinstance(raw, (int, float)) else ""))
    if type_ == PROGRAM and value not in scenario.programs:
        raise f.error(key, f"no program {value!r}; programs: {', '.join(scenario.programs) or 'none'}")
    if type_ == HOST and value not in scenario.topology.nodes:
        raise f.error(key, f"no host {value!r}; hosts: {', '.join(scenario.topology.nodes)}")
    return value


def required_tools(steps: list[Step], topology: Topology) -> dict[str, str]:
    """Commands the steps need on the hosts beyond the backend's own (command -> Debian package)."""
    tools: dict[str, str] = {}
    for step in steps:
        tools.update(KINDS[step.kind].tools)
    if topology.impairments:
        tools.update(KINDS["impair"].tools)
    return tools
