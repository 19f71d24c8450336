"""The exercise format (exercises/<name>/exercise.yml): parameters, programs, timeline and checks.

An exercise is data. Loading it validates every field, applies `--set` overrides and substitutes the
parameters into programs and timeline steps. Check arguments stay as templates: they are resolved
from the parameters stored in a results folder's manifest, so a folder can be re-checked on its own.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import params as params_mod
from . import topology as topology_mod
from . import yamlfile
from .errors import ConfigError, LabError

EXERCISE_DIR = Path(__file__).resolve().parent.parent / "exercises"

# Each step kind: its required and optional fields.
STEP_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "capture": ({"host", "interface"}, {"filter", "name", "snaplen"}),
    "start": ({"program"}, set()),
    "wait": ({"program", "timeout"}, {"event", "line"}),
    "firewall": ({"host", "drop"}, set()),
    "wait_exit": ({"program", "timeout"}, set()),
    "stop": ({"program"}, set()),
    "stop_captures": (set(), set()),
    "sleep": ({"seconds"}, set()),
    "collect": (set(), set()),
    "bridge_drop": ({"host", "from", "to", "port"}, {"window"}),
    "bridge_restore": ({"host"}, set()),
    "impair": ({"from", "to"}, {"delay_ms", "loss", "rate_mbit", "direction"}),
    "unimpair": (set(), set()),
    "trace_states": ({"port"}, set()),
}
# Tools a step needs beyond the backend's own, checked before anything is built.
STEP_TOOLS = {"bridge_drop": {"nft": "nftables"}, "bridge_restore": {"nft": "nftables"},
              "impair": {"tc": "iproute2", "nft": "nftables"}}
# Numeric fields are expressions over the parameters and must come out >= 0; the rest are strings
# (after substitution) except `drop`, a mapping checked on its own.
NUMERIC_FIELDS = {"timeout", "seconds", "snaplen", "delay_ms", "loss", "rate_mbit"}
MAPPING_FIELDS = {"drop"}
INTEGER_FIELDS = {"port"}
CAPTURE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
# A step may be written `- start: server`: the scalar fills this field.
SCALAR_FIELD = {"start": "program", "stop": "program", "wait_exit": "program", "sleep": "seconds"}


@dataclass(frozen=True)
class Program:
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


@dataclass
class Exercise:
    name: str
    dir: Path
    file: Path
    title: str
    description: str
    topology: topology_mod.Topology
    parameters: dict[str, params_mod.Parameter]
    values: dict[str, Any]
    programs: dict[str, Program] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)  # figures a sweep compares across runs
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {net.ipv4.x: value}


def known() -> list[str]:
    return sorted(p.parent.name for p in EXERCISE_DIR.glob("*/exercise.yml"))


def exercise_file(name: str) -> Path:
    """A bundled exercise by name, or a folder of one's own that holds an exercise.yml."""
    if "/" in name or name.startswith("."):
        path = Path(name)
        path = path / "exercise.yml" if path.is_dir() else path
        if not path.is_file():
            raise LabError(f"{name}: no exercise.yml there")
        return path.resolve()
    path = EXERCISE_DIR / name / "exercise.yml"
    if not path.exists():
        raise LabError(f"unknown exercise {name!r}; known exercises: {', '.join(known())} (see `invoke list`)")
    return path


def load(name: str, overrides: Sequence[str] = (), lab: str = "tcplab", addresses: dict[str, str] | None = None) -> Exercise:
    """addresses: host -> IPv4 address replacing the topology's (machines that have their own)."""
    path = exercise_file(name)
    top = yamlfile.Fields(path, "", yamlfile.load(path) or {})
    top.only(["title", "description", "topology", "parameters", "programs", "sysctls", "timeline", "checks", "plots", "measures"])
    topo_name = top.get("topology", str, "default")
    if topo_name.endswith((".yml", ".yaml")):
        topo_name = str(path.parent / topo_name)  # a topology file of the exercise's own, beside it
    try:
        topo = topology_mod.load(topo_name)
    except ConfigError as e:
        if e.message.startswith("no such topology"):
            raise top.error("topology", e.message) from None
        raise
    if addresses:
        topo = topo.readdressed(addresses)
    declared = params_mod.parse_declarations(path, top.sub("parameters", {}))
    values = params_mod.parse_overrides(overrides, declared, path.parent.name)
    ex = Exercise(
        name=path.parent.name,
        dir=path.parent,
        file=path,
        title=top.get("title", str),
        description=top.get("description", str),
        topology=topo,
        parameters=declared,
        values=values,
    )
    variables = variables_for(values, topo, lab)
    for n in topo.nodes:
        if n in declared:
            raise top.error(f"parameters.{n}", "a parameter may not share its name with a node")
    ex.programs = _parse_programs(path, top.sub("programs", {}), topo, variables)
    ex.sysctls = _parse_sysctls(top.sub("sysctls", {}), topo, variables)
    ex.steps = _parse_timeline(path, top.get("timeline", list), ex, variables)
    ex.checks = _parse_checks(path, top.get("checks", list, []))
    ex.plots = _parse_plots(path, top.get("plots", list, []))
    ex.measures = _parse_measures(path, top.get("measures", list, []))
    return ex


def variables_for(values: dict[str, Any], topo: topology_mod.Topology, lab: str) -> dict[str, Any]:
    variables: dict[str, Any] = dict(values)
    variables["lab"] = lab
    for node in topo.nodes.values():
        if node.ip:
            variables[f"{node.name}.ip"] = node.ip
    return variables


def _parse_programs(path: Path, f: yamlfile.Fields, topo: topology_mod.Topology, variables: dict) -> dict[str, Program]:
    programs = {}
    for name in f.value:
        p = f.sub(name).only(["host", "script", "args"])
        host = p.get("host", str)
        if host not in topo.nodes:
            raise p.error("host", f"no host {host!r} in topology {topo.name}; hosts: {', '.join(topo.nodes)}")
        script = (path.parent / p.get("script", str)).resolve()
        if not script.is_file():
            raise p.error("script", f"{script} does not exist")
        if EXERCISE_DIR not in script.parents and path.parent not in script.parents:
            # Backends that copy or mount programs onto hosts take the exercise's folder and exercises/.
            raise p.error("script", f"scripts must live in the exercise's folder or under {EXERCISE_DIR}")
        args = p.get("args", list, [])
        args = params_mod.substitute(args, variables, (path, p.path("args")))
        programs[name] = Program(name, host, script, [str(a) for a in args])
    return programs


SYSCTL_RE = re.compile(r"^net\.(ipv4|ipv6|core|netfilter)\.[a-z0-9_.]+$")


def _parse_sysctls(f: yamlfile.Fields, topo: topology_mod.Topology, variables: dict) -> dict[str, dict[str, str]]:
    """Per-host sysctls, set before anything runs. Only network-namespace sysctls (net.*): they are
    the ones a namespace or a container has its own copy of."""
    out: dict[str, dict[str, str]] = {}
    for host in f.value:
        if host not in topo.nodes:
            raise f.error(str(host), f"no host {host!r}; hosts: {', '.join(topo.nodes)}")
        h = f.sub(host)
        out[host] = {}
        for name, raw in h.value.items():
            if not isinstance(name, str) or not SYSCTL_RE.match(name):
                raise h.error(str(name), "only per-network-namespace sysctls are allowed: net.ipv4.*, net.ipv6.*, net.core.*, net.netfilter.*")
            value = params_mod.substitute(raw, variables, (f.file, h.path(name)))
            if not isinstance(value, (int, str)) or isinstance(value, bool) or not re.match(r"^[0-9 ]+$", str(value)):
                raise h.error(name, f"{value!r}: sysctl values here are numbers (or numbers separated by spaces)")
            out[host][name] = str(value)
    return out


def _parse_timeline(path: Path, items: list, ex: Exercise, variables: dict) -> list[Step]:
    steps = []
    captures: set[str] = set()
    for i, item in enumerate(items):
        where = f"timeline[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(path, where, f"a step is a mapping with one key, the step kind; kinds: {', '.join(STEP_FIELDS)}")
        (kind, body), = item.items()
        if kind not in STEP_FIELDS:
            raise ConfigError(path, where, f"unknown step {kind!r}; kinds: {', '.join(STEP_FIELDS)}")
        if body is None:
            body = {}
        elif not isinstance(body, dict):
            if kind not in SCALAR_FIELD:
                raise ConfigError(path, f"{where}.{kind}", "expected a mapping of the step's fields")
            body = {SCALAR_FIELD[kind]: body}
        required, optional = STEP_FIELDS[kind]
        f = yamlfile.Fields(path, f"{where}.{kind}", body).only(sorted(required | optional))
        for r in sorted(required):
            f.get(r, object)
        args = {}
        for key, raw in body.items():
            loc = (path, f.path(key))
            if key in NUMERIC_FIELDS:
                args[key] = params_mod.evaluate(raw, variables, loc)
                if args[key] < 0:
                    raise f.error(key, f"{raw!r} gives {args[key]:g}; it must be 0 or more")
                continue
            args[key] = params_mod.substitute(raw, variables, loc)
            if key in INTEGER_FIELDS:
                if not isinstance(args[key], int) or not 1 <= args[key] <= 65535:
                    raise f.error(key, f"{args[key]!r} is not a port number")
                continue
            if key not in MAPPING_FIELDS and not isinstance(args[key], str):
                raise f.error(key, f"expected a string, got {args[key]!r}" + (" (quote it)" if isinstance(raw, (int, float)) else ""))
        _check_references(f, kind, args, ex)
        if kind == "capture":
            name = args.get("name", args["host"])
            if not CAPTURE_NAME_RE.match(name):
                raise f.error("name", f"{name!r}: a capture name is a file name: letters, digits, '_' and '-'")
            if name in captures:
                raise f.error("name", f"a capture named {name!r} already exists; give this one a distinct name")
            captures.add(name)
        steps.append(Step(kind, args, where))
    return steps


def _check_references(f: yamlfile.Fields, kind: str, args: dict, ex: Exercise) -> None:
    if "program" in args and args["program"] not in ex.programs:
        raise f.error("program", f"no program {args['program']!r}; programs: {', '.join(ex.programs) or 'none'}")
    if "host" in args and args["host"] not in ex.topology.nodes:
        raise f.error("host", f"no host {args['host']!r}; hosts: {', '.join(ex.topology.nodes)}")
    if kind == "wait" and ("event" in args) == ("line" in args):
        raise f.error("event", "a wait step needs exactly one of event (a JSON event name) or line (a regular expression)")
    if "line" in args:
        try:
            re.compile(args["line"])
        except re.error as e:
            raise f.error("line", f"{args['line']!r} is not a regular expression: {e}") from None
    if kind == "bridge_drop":
        for end in ("from", "to"):
            node = ex.topology.nodes.get(args[end])
            if node is None or not node.ip:
                raise f.error(end, f"{args[end]!r} is not a host with an IPv4 address; hosts: {', '.join(n for n, v in ex.topology.nodes.items() if v.ip)}")
        if args.get("window", "any") not in ("open", "closed", "any"):
            raise f.error("window", f"{args['window']!r}: allowed: open, closed, any")
        if not ex.topology.nodes[args["host"]].bridges:
            raise f.error("host", f"{args['host']} holds no bridge, so no frame between two other hosts crosses it")
    if kind == "impair":
        from .impair import bridge_path

        for end in ("from", "to"):
            if args[end] not in ex.topology.nodes:
                raise f.error(end, f"no host {args[end]!r}; hosts: {', '.join(ex.topology.nodes)}")
        if args["from"] == args["to"]:
            raise f.error("to", "an impairment joins two different hosts")
        try:
            bridge_path(ex.topology, args["from"], args["to"])
        except LabError as e:
            raise f.error("to", str(e)) from None
        if args.get("direction", "both") not in ("both", "one"):
            raise f.error("direction", f"{args['direction']!r}: allowed: both (the same each way, the default), one (from -> to only)")
        if args.get("loss", 0) > 100:
            raise f.error("loss", f"{args['loss']:g}: a percentage, 0 to 100")
    if kind == "firewall":
        drop = yamlfile.Fields(f.file, f.path("drop"), args["drop"]).only(["protocol", "port"])
        proto = drop.get("protocol", str, "tcp")
        if proto not in ("tcp", "udp"):
            raise drop.error("protocol", f"{proto!r}: allowed: tcp, udp")
        port = drop.get("port", int)
        if not 1 <= port <= 65535:
            raise drop.error("port", f"{port} is not a port number")


def _parse_checks(path: Path, items: list) -> list[dict[str, Any]]:
    from .checks import REGISTRY  # the registry imports the checks; late import keeps loading light

    return _parse_named(path, items, "check", REGISTRY)


def _parse_named(path: Path, items: list, kind: str, registry: dict) -> list[dict[str, Any]]:
    """Checks, plots and measures: each item names a registered function and sets its parameters (after ctx/out)."""
    out = []
    for i, item in enumerate(items):
        f = yamlfile.Fields(path, f"{kind}s[{i}]", item)
        name = f.get(kind, str)
        if name not in registry:
            raise f.error(kind, f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
        signature = inspect.signature(registry[name]).parameters
        accepted = [p for p in signature if p not in ("ctx", "out")]
        f.only([kind, *accepted])
        for p in accepted:
            if signature[p].default is inspect.Parameter.empty and p not in item:
                raise f.error(p, f"required by {kind} {name}; it takes: {', '.join(accepted)}")
        out.append(dict(item))
    return out


def _parse_plots(path: Path, items: list) -> list[dict[str, Any]]:
    from .plots import PLOTS  # matplotlib loads only for exercises that draw

    return _parse_named(path, items, "plot", PLOTS)


def _parse_measures(path: Path, items: list) -> list[dict[str, Any]]:
    from .measures import MEASURES

    return _parse_named(path, items, "measure", MEASURES)


def required_tools(ex: Exercise) -> dict[str, str]:
    """Commands the exercise's steps need beyond the backend's own (command -> Debian package)."""
    tools: dict[str, str] = {}
    for step in ex.steps:
        tools.update(STEP_TOOLS.get(step.kind, {}))
    if ex.topology.impairments:
        tools.update(STEP_TOOLS["impair"])
    return tools
