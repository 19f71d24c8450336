"""What a step kind is: its fields and their types, the field a scalar fills, what it checks when an
exercise is loaded, the commands it needs on the hosts, and what it does when the timeline runs.

A kind executes against the `Run` protocol below, which lab/run/timeline.py implements: the lab's
hosts (a backend), the programs and captures started so far, and the few things a run does for every
kind (start a program and record it, wait, stop, collect). So a kind is complete in one class, as a
link kind is in containerlab, and still imports nothing above the exercise format.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence

from ..topology import Impairment, Topology
from ..yamlfile import Fields

# Field types. Numbers are expressions over the parameters and come out >= 0; a port is an integer
# 1-65535; a mapping is checked by its kind; a host or a program must name one of the exercise's.
STRING, NUMBER, PORT, MAPPING, HOST, PROGRAM = "string", "number", "port", "mapping", "host", "program"


@dataclass(frozen=True)
class Program:
    """A program of the exercise: the host it runs on, its script, its arguments (placeholders filled)."""

    name: str
    host: str
    script: Path
    args: list[str]


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any]
    where: str  # "timeline[3]", for messages

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.kind} {inner}".strip()


class Scenario(Protocol):
    """What a step may refer to: the exercise's programs and its topology's hosts."""

    programs: Mapping[str, Program]
    topology: Topology


class Process(Protocol):
    """A program started on a host (lab/backends/base.py's Process)."""

    name: str
    host: str
    pid: int
    stdout: str  # paths of its output files on the host
    stderr: str

    def poll(self) -> Optional[int]: ...

    def signal(self, sig: int) -> None: ...


class Hosts(Protocol):
    """The lab's hosts as steps use them (a backend: lab/backends/base.py)."""

    lab: str

    def run(self, host: str, argv: Sequence[str], timeout: float = ..., check: bool = ...) -> subprocess.CompletedProcess: ...

    def read_file(self, host: str, path: str, offset: int = ...) -> bytes: ...

    def python(self, host: str, script: Path) -> list[str]: ...

    def work_path(self, host: str, filename: str) -> str: ...

    def capture_targets(self, host: str, interface: str) -> list[tuple[str, str]]: ...

    def firewall_drop(self, host: str, chain: str, protocol: str, port: int) -> list[list[str]]: ...

    def forget_connections(self, host: str, chain: str, port: int) -> tuple[list[list[str]], int]: ...

    def bridge_drop(self, host: str, table: str, src: str, dst: str, port: int, window: str) -> list[list[str]]: ...

    def bridge_restore(self, host: str, table: str) -> list[list[str]]: ...


@dataclass
class Capture:
    """A tcpdump the run started, and where its file is on its host."""

    name: str
    host: str
    interface: str
    filter: str
    path: str  # on the host
    snaplen: int
    process: Process
    # Captures the exercise asked for on a host the backend lacks (no observer machine), which this one
    # stands for: checks that name them read this one instead.
    stands_for: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class Run(Protocol):
    """A timeline being run (lab/run/timeline.py), as the steps act on it."""

    exercise: Scenario
    hosts: Hosts
    programs: dict[str, Process]
    argv: dict[str, list[str]]
    captures: dict[str, Capture]

    def spawn(self, host: str, name: str, argv: list[str]) -> Process: ...

    def started(self, program: str, where: str) -> Process: ...

    def wait_for(self, proc: Process, seen: Callable[[str, str], bool], timeout: float, what: str) -> None: ...

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool: ...

    def stop(self, processes: list[Process], sig: int, grace: float) -> None: ...

    def stop_captures(self, announce: bool) -> None: ...

    def collect(self, announce: bool) -> None: ...

    def impair(self, items: list[Impairment]) -> dict: ...

    def unimpair(self) -> None: ...

    def trace_states(self, port: int) -> None: ...


class StepKind:
    """One kind of timeline step. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    fields: ClassVar[dict[str, str]]  # field -> type (STRING, NUMBER, ...)
    required: ClassVar[tuple[str, ...]] = ()
    scalar: ClassVar[Optional[str]] = None  # `- start: server` fills this field
    tools: ClassVar[dict[str, str]] = {}  # commands the hosts need for it (command -> Debian package)

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        """Refuses what the field types alone do not (in one line naming the field, via f.error)."""

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        """Does the step; `entry` is its record in the manifest's timeline, to add what it did."""
        raise NotImplementedError(self.name)
