"""The exercise format (exercises/<name>/exercise.yml): parameters, programs, timeline and checks.

An exercise is data. Loading it validates every field, applies `--set` overrides and substitutes the
parameters into programs and timeline steps. Check, plot and measure arguments stay as templates:
they are resolved from the parameters stored in a results folder's manifest, so a folder can be
re-checked on its own. docs/exercise-format.md describes every field.

An exercise may build on another with `extends:` (a bundled exercise's name, or the path of its
folder relative to this file). Its mappings (`parameters`, `programs`, `sysctls`) then merge into the
parent's name by name, a parameter field by field (`keepcnt: {default: 9}` changes the default
alone); its lists (`timeline`, `checks`, `plots`, `measures`) replace the parent's, or follow them
when written `{append: [...]}`; `title`, `description` and `topology` replace the parent's, and each
part of `hands_on` the parent's part. A program's script is found relative to the file that names it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import ConfigError, LabError
from . import handson as handson_mod
from . import params as params_mod
from . import topology as topology_mod
from . import yamlfile
from .functions import FUNCTIONS
from .steps import Program, Step, parse_timeline
from .steps import required_tools as step_tools

EXERCISE_DIR = Path(__file__).resolve().parents[2] / "exercises"
TOP_FIELDS = ["extends", "title", "description", "topology", "parameters", "programs", "sysctls", "timeline", "checks", "plots", "measures",
              "hands_on"]
MERGED = ("parameters", "programs", "sysctls")  # mappings an extending exercise merges into its parent's
LISTS = ("timeline", "checks", "plots", "measures")  # lists it replaces, or appends to with {append: [...]}
SYSCTL_RE = re.compile(r"^net\.(ipv4|ipv6|core|netfilter)\.[a-z0-9_.]+$")


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
    lab: str = "tcplab"
    # Its folder, then those of the exercises it extends: where its scripts may live.
    dirs: list[Path] = field(default_factory=list)
    programs: dict[str, Program] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)  # figures a sweep compares across runs
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {net.ipv4.x: value}
    hands_on: Optional[handson_mod.HandsOn] = None  # the exercise done by a person (invoke start)

    @property
    def variables(self) -> dict[str, Any]:
        """What `{name}` placeholders may name in this exercise (and, from the manifest, in its checks)."""
        return params_mod.variables(self.values, self.addresses, self.lab)

    @property
    def addresses(self) -> dict[str, str]:
        return {n.name: n.ip for n in self.topology.nodes.values() if n.ip}

    @property
    def impairments(self) -> list[topology_mod.Impairment]:
        """Every one-way impairment the exercise asks for at some point: its topology's, then its impair steps'."""
        specs = list(self.topology.impairments) + [step.args for step in self.steps if step.kind == "impair"]
        return [one for spec in specs for one in topology_mod.impairments_of(spec)]


def known() -> list[str]:
    return sorted(p.parent.name for p in EXERCISE_DIR.glob("*/exercise.yml"))


def exercise_file(name: str, relative_to: Optional[Path] = None) -> Path:
    """A bundled exercise by name, or a folder of one's own that holds an exercise.yml (a relative
    path is relative to `relative_to`, the current folder by default)."""
    if "/" in name or name.startswith("."):
        path = Path(name) if relative_to is None or Path(name).is_absolute() else relative_to / name
        path = path / "exercise.yml" if path.is_dir() else path
        if not path.is_file():
            raise LabError(f"{name}: no exercise.yml there")
        return path.resolve()
    path = EXERCISE_DIR / name / "exercise.yml"
    if not path.exists():
        raise LabError(f"unknown exercise {name!r}; known exercises: {', '.join(known())} (see `invoke list`)")
    return path


def load(name: str, overrides: Sequence[str] = (), lab: str = "tcplab", addresses: Optional[dict[str, str]] = None) -> Exercise:
    """addresses: host -> IPv4 address replacing the topology's (machines that have their own)."""
    return _load(exercise_file(name), overrides, lab, addresses, ())


def _load(path: Path, overrides: Sequence[str], lab: str, addresses: Optional[dict[str, str]], chain: tuple[Path, ...]) -> Exercise:
    data, dirs = _resolve(path, chain)
    top = yamlfile.Fields(path, "", data)
    topo_name = top.get("topology", str, "default")
    if topo_name.endswith((".yml", ".yaml")) and not Path(topo_name).is_absolute():
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
    for n in topo.nodes:
        if n in declared:
            raise top.error(f"parameters.{n}", "a parameter may not share its name with a node")
    values = params_mod.parse_overrides(overrides, declared, path.parent.name)
    ex = Exercise(
        name=path.parent.name, dir=path.parent, file=path, title=top.get("title", str), description=top.get("description", str),
        topology=topo, parameters=declared, values=values, lab=lab, dirs=dirs,
    )
    variables = ex.variables
    ex.programs = _parse_programs(top.sub("programs", {}), ex, variables)
    ex.sysctls = _parse_sysctls(top.sub("sysctls", {}), topo, variables)
    ex.steps = parse_timeline(path, top.get("timeline", list), ex, variables)
    ex.checks = FUNCTIONS.parse(path, "check", top.get("checks", list, []))
    ex.plots = FUNCTIONS.parse(path, "plot", top.get("plots", list, []))
    ex.measures = FUNCTIONS.parse(path, "measure", top.get("measures", list, []))
    if top.has("hands_on"):
        ex.hands_on = handson_mod.parse(path, top.sub("hands_on"), ex, declared, variables)
    return ex


def _resolve(path: Path, chain: tuple[Path, ...]) -> tuple[dict, list[Path]]:
    """The file's data with what it extends merged in, and the folders of the chain (its own first)."""
    data = yamlfile.load(path)
    top = yamlfile.Fields(path, "", data if data is not None else {}).only(TOP_FIELDS)
    data = dict(top.value)
    _absolute_scripts(data, path)
    if "extends" not in data:
        for key in LISTS:
            if isinstance(data.get(key), dict):
                raise top.error(key, "{append: [...]} adds to the list of the exercise this one extends, and this one extends none")
        return data, [path.parent]
    parent_name = top.get("extends", str)
    try:
        parent = exercise_file(parent_name, path.parent)
    except LabError as e:
        raise top.error("extends", str(e)) from None
    if parent in (path, *chain):
        cycle = " -> ".join(str(p) for p in (*chain, path, parent))
        raise top.error("extends", f"{parent_name} leads back to an exercise already in the chain ({cycle})")
    _load(parent, (), "tcplab", None, (*chain, path))  # the parent's own mistakes are named in its own file
    base, dirs = _resolve(parent, (*chain, path))
    return _merge(top, base, data), [path.parent, *dirs]


def _absolute_scripts(data: dict, path: Path) -> None:
    """Program scripts relative to the file that names them, before another file's data is merged on top."""
    programs = data.get("programs")
    if isinstance(programs, dict):
        for spec in programs.values():
            if isinstance(spec, dict) and isinstance(spec.get("script"), str):
                spec["script"] = str((path.parent / spec["script"]).resolve())


def _merge(top: yamlfile.Fields, base: dict, own: dict) -> dict:
    out = {k: v for k, v in base.items() if k != "extends"}
    for key, value in own.items():
        if key == "extends":
            continue
        if key == "hands_on" and isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = {**base[key], **value}  # its parts (intro, setup, files, steps, observed), each replaced
        elif key in MERGED and isinstance(value, dict) and isinstance(base.get(key), dict):
            merged = dict(base[key])
            for name, spec in value.items():
                old = merged.get(name)
                merged[name] = {**old, **spec} if key == "parameters" and isinstance(old, dict) and isinstance(spec, dict) else spec
            out[key] = merged
        elif key in LISTS and isinstance(value, dict):
            extra = yamlfile.Fields(top.file, key, value).only(["append"]).get("append", list)
            out[key] = list(base.get(key) or []) + extra
        else:
            out[key] = value
    return out


def _parse_programs(f: yamlfile.Fields, ex: Exercise, variables: dict) -> dict[str, Program]:
    programs = {}
    topo = ex.topology
    for name in f.value:
        p = f.sub(name).only(["host", "script", "args"])
        host = p.get("host", str)
        if host not in topo.nodes:
            raise p.error("host", f"no host {host!r} in topology {topo.name}; hosts: {', '.join(topo.nodes)}")
        script = (ex.dir / p.get("script", str)).resolve()
        if not script.is_file():
            raise p.error("script", f"{script} does not exist")
        if EXERCISE_DIR not in script.parents and not any(d in script.parents for d in ex.dirs):
            # Backends that copy or mount programs onto hosts take the exercises' folders and exercises/.
            raise p.error("script", f"scripts must live in the exercise's folder (or one it extends) or under {EXERCISE_DIR}")
        args = params_mod.substitute(p.get("args", list, []), variables, (f.file, p.path("args")))
        programs[name] = Program(name, host, script, [str(a) for a in args])
    return programs


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


def required_tools(ex: Exercise) -> dict[str, str]:
    """Commands the exercise's steps (and its hands-on setup) need beyond the backend's own (command -> Debian package)."""
    return step_tools(ex.steps + (ex.hands_on.setup if ex.hands_on else []), ex.topology)
