"""The `hands_on:` section of an exercise: the exercise done by a person, step by step, with tcplab
watching (`invoke start`, `shell`, `watch`, `finish`).

    hands_on:
      intro: What the student is about to do.
      setup:                  # timeline steps tcplab runs when the lab comes up (the lab's own capture...)
        - capture: {host: observer, interface: br0, filter: tcp, name: lab}
      files:                  # files tcplab writes into a host's working folder, placeholders filled
        observer: {drop-update.nft: "table bridge drop_update { ... }"}
      steps:
        - do: Start the server on dest
          why: It answers one request, then keeps the connection open without sending.
          host: dest
          run: python3 server.py --port {port}
          done_when: {listening: {host: dest, port: "{port}"}}
      observed:               # parameters as the programs really set them: program.event.field
        keepidle: client.options.keepidle
      defaults: {stall: 15}   # by hand, where the automated defaults are too quick for a person (--set wins)

A step's `run` and `do` may hold the exercise's placeholders and `{<host>.iface}`, the interface the
host's traffic uses (the machine's own over SSH); they are filled when the lab is up, for its hosts.
`done_when` is one condition, or a list of conditions that must all hold; the kinds are CONDITIONS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import LabError
from . import params, yamlfile
from .steps import Step, parse_timeline
from .steps.base import Scenario

# Condition kind -> its fields, each "host", "program", "port" or "name"; (required, optional).
CONDITIONS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "capturing": ({"host": "host"}, {}),  # the student's tcpdump runs there, or a capture of theirs lies in its folder
    "listening": ({"host": "host", "port": "port"}, {}),  # a socket of the host listens on the port
    "running": ({"host": "host", "program": "program"}, {}),  # the student started the program there, and it runs
    "event": ({"program": "program", "event": "name"}, {}),  # the program's log has the event
    "drop_rule": ({"host": "host", "port": "port"}, {}),  # an iptables rule on the host drops the port
    "nft_table": ({"host": "host", "name": "name"}, {}),  # an nftables table of that name on the host
    "connected": ({"port": "port"}, {}),  # the lab's capture: a handshake to the port
    "exchange": ({"port": "port"}, {}),  # ...and data both ways on it
    "probes": ({"port": "port"}, {}),  # ...keepalive probes after the peer went silent
    "reset": ({"port": "port"}, {}),  # ...an RST
    "zero_window": ({"port": "port"}, {}),  # ...a zero window
    "window_probes": ({"port": "port"}, {}),  # ...zero-window probes
    "reopened": ({"port": "port"}, {}),  # ...the window open again after a zero window
    "closed": ({"port": "port"}, {}),  # ...a FIN from each side
}


@dataclass(frozen=True)
class Condition:
    kind: str
    args: dict[str, Any]  # placeholders still in, filled when the lab is up

    def __str__(self) -> str:
        return f"{self.kind} " + ", ".join(f"{k}={v}" for k, v in self.args.items())


@dataclass(frozen=True)
class HandsOnStep:
    do: str
    why: str
    host: Optional[str]  # where to type it; None: nothing to type (watch, wait)
    run: str  # the command, or ""
    done_when: tuple[Condition, ...]


@dataclass
class HandsOn:
    intro: str = ""
    setup: list[Step] = field(default_factory=list)
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {file name: text}
    steps: list[HandsOnStep] = field(default_factory=list)
    observed: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # parameter -> (program, event, field)
    defaults: dict[str, Any] = field(default_factory=dict)  # parameter -> its value by hand


def parse(path: Path, f: yamlfile.Fields, scenario: Scenario, parameters: Mapping[str, Any], variables: Mapping[str, Any]) -> HandsOn:
    f.only(["intro", "setup", "files", "steps", "observed", "defaults"])
    nodes = scenario.topology.nodes
    out = HandsOn(intro=f.get("intro", str, ""))
    out.setup = parse_timeline(path, f.get("setup", list, []), scenario, variables, f.path("setup"))
    # Each host's interface is known once the lab is up (the machine's own over SSH): any name checks the text now.
    fill = {**variables, **{f"{n}.iface": "eth0" for n in nodes}}
    params.substitute(out.intro, fill, (path, f.path("intro")))
    files = f.sub("files", {})
    for host in files.value:
        if host not in nodes:
            raise files.error(str(host), f"no host {host!r}; hosts: {', '.join(nodes)}")
        h = files.sub(host)
        out.files[host] = {}
        for name in h.value:
            if not isinstance(name, str) or "/" in name or name.startswith("."):
                raise h.error(str(name), "a file name of the host's working folder: no '/', not hidden")
            out.files[host][name] = h.get(name, str)
            params.substitute(out.files[host][name], fill, (path, h.path(name)))
    items = f.get("steps", list)
    if not items:
        raise f.error("steps", "a hands-on exercise needs at least one step")
    for i, item in enumerate(items):
        s = yamlfile.Fields(path, f.path(f"steps[{i}]"), item).only(["do", "why", "host", "run", "done_when"])
        host = s.get("host", str, None)
        if host is not None and host not in nodes:
            raise s.error("host", f"no host {host!r}; hosts: {', '.join(nodes)}")
        run = s.get("run", str, "")
        for key in ("do", "why", "run"):
            params.substitute(s.get(key, str, ""), fill, (path, s.path(key)))
        if run and host is None:
            raise s.error("host", "a step with a command to `run` says on which host it is typed")
        raw = s.get("done_when", (dict, list))
        conditions = tuple(_condition(s, f"done_when[{k}]" if isinstance(raw, list) else "done_when", c, scenario, fill)
                           for k, c in enumerate(raw if isinstance(raw, list) else [raw]))
        if not conditions:
            raise s.error("done_when", "at least one condition: what tcplab watches for to know the step is done")
        out.steps.append(HandsOnStep(s.get("do", str), s.get("why", str, ""), host, run, conditions))
    observed = f.sub("observed", {})
    for name in observed.value:
        if name not in parameters:
            raise observed.error(str(name), f"no parameter {name!r}; parameters: {', '.join(parameters) or 'none'}")
        where = observed.get(name, str, what='"program.event.field"')
        parts = where.split(".")
        if len(parts) != 3 or parts[0] not in scenario.programs:
            raise observed.error(name, f"{where!r}: write program.event.field, with one of the programs ({', '.join(scenario.programs)})")
        out.observed[name] = (parts[0], parts[1], parts[2])
    defaults = f.sub("defaults", {})
    for name, raw in defaults.value.items():
        if name not in parameters:
            raise defaults.error(str(name), f"no parameter {name!r}; parameters: {', '.join(parameters) or 'none'}")
        try:
            out.defaults[name] = parameters[name].convert(raw, "default")
        except LabError as e:
            raise defaults.error(name, str(e)) from None
    return out


def _condition(s: yamlfile.Fields, key: str, raw: Any, scenario: Scenario, fill: Mapping[str, Any]) -> Condition:
    c = yamlfile.Fields(s.file, s.path(key), raw)
    if len(c.value) != 1:
        raise c.error("", f"one condition kind per entry; kinds: {', '.join(CONDITIONS)}")
    (kind, body), = c.value.items()
    if kind not in CONDITIONS:
        raise c.error(str(kind), f"unknown condition; kinds: {', '.join(CONDITIONS)}")
    required, optional = CONDITIONS[kind]
    if not isinstance(body, dict):
        if len(required) != 1:
            raise c.error(kind, f"expected a mapping of {', '.join(required)}")
        body = {next(iter(required)): body}  # `capturing: source`
    b = yamlfile.Fields(s.file, c.path(kind), body).only([*required, *optional])
    for name, type_ in {**required, **optional}.items():
        if name in required:
            b.get(name, object)
        value = params.substitute(body.get(name), fill, (s.file, b.path(name)))
        if type_ == "port" and name in body and (not isinstance(value, int) or not 1 <= value <= 65535):
            raise b.error(name, f"{value!r} is not a port number")
        if type_ == "host" and value not in scenario.topology.nodes:
            raise b.error(name, f"no host {value!r}; hosts: {', '.join(scenario.topology.nodes)}")
        if type_ == "program" and value not in scenario.programs:
            raise b.error(name, f"no program {value!r}; programs: {', '.join(scenario.programs)}")
    return Condition(kind, dict(body))
