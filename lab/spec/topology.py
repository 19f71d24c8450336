"""The topology format (topologies/*.yml): nodes, their interfaces and bridges, and the links between them.

    nodes:
      observer: {bridges: [br0]}
      source:   {interfaces: {eth0: {ipv4: 10.0.1.1/24}}}
    links:
      - endpoints: ["source:eth0", "observer:br0"]

A link is a veth pair. An endpoint that names a bridge of its node gets a veth end called
"<other node>-<other interface>" enslaved to that bridge, so the bridge's node sees every frame.

An impairment (delay, loss, a rate) sits on the bridge between two hosts, as a DUMMYNET pipe sits in
a middle box: `bridge_path` finds the bridge and its ports, for the topology's own `impairments` and
for an exercise's `impair` steps alike.
"""
from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, LabError
from ..naming import IFNAME_MAX
from . import yamlfile

NODE_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
IFACE_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "topologies"


@dataclass(frozen=True)
class Interface:
    name: str
    ipv4: Optional[ipaddress.IPv4Interface] = None


@dataclass
class Node:
    name: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    bridges: list[str] = field(default_factory=list)

    @property
    def ip(self) -> Optional[str]:
        """The node's first IPv4 address, which exercises refer to as {<node>.ip}."""
        for iface in self.interfaces.values():
            if iface.ipv4:
                return str(iface.ipv4.ip)
        return None


@dataclass(frozen=True)
class Endpoint:
    node: str
    iface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


@dataclass(frozen=True)
class VethPlan:
    """One veth pair as the backends create it: each end's node, name, and the bridge it joins."""

    a_node: str
    a_name: str
    b_node: str
    b_name: str
    b_bridge: Optional[str] = None


@dataclass(frozen=True)
class Impairment:
    """One direction's impairment: what frames from src to dst meet on the bridge between them."""

    src: str
    dst: str
    delay_ms: float = 0.0
    loss: float = 0.0  # percent of frames dropped
    rate_mbit: float = 0.0  # the link's rate; 0: as fast as the bridge goes

    def __str__(self) -> str:
        what = [f"{self.delay_ms:g} ms"] + ([f"{self.loss:g}% loss"] if self.loss else []) + ([f"{self.rate_mbit:g} Mbit/s"] if self.rate_mbit else [])
        return f"{self.src} -> {self.dst}: {', '.join(what)}"

    @property
    def nothing(self) -> bool:
        """0 ms, 0% loss and no rate: nothing to apply (a run at latency 0 has no delay line in its path)."""
        return not self.delay_ms and not self.loss and not self.rate_mbit


@dataclass(frozen=True)
class Crossing:
    """Where frames from src to dst cross the bridge: its host, the port they enter by, the port they leave by."""
    host: str
    port_in: str
    port_out: str


IMPAIRMENT_FIELDS = ("from", "to", "delay_ms", "loss", "rate_mbit", "direction")


def impairments_of(args: dict) -> list[Impairment]:
    """The impairments one `impair` (or topology) entry asks for: from -> to, and back unless direction is one."""
    one = Impairment(args["from"], args["to"], float(args.get("delay_ms", 0)), float(args.get("loss", 0)), float(args.get("rate_mbit", 0)))
    if args.get("direction", "both") == "one":
        return [one]
    return [one, Impairment(one.dst, one.src, one.delay_ms, one.loss, one.rate_mbit)]


@dataclass
class Topology:
    name: str
    file: Path
    description: str
    nodes: dict[str, Node]
    links: list[tuple[Endpoint, Endpoint]]
    # Applied when the lab comes up, before the first step: [{from, to, delay_ms, loss, rate_mbit, direction}].
    impairments: list[dict] = field(default_factory=list)

    def veths(self) -> list[VethPlan]:
        plans = []
        for a, b in self.links:
            if a.iface in self.nodes[a.node].bridges:
                a, b = b, a
            if b.iface in self.nodes[b.node].bridges:
                plans.append(VethPlan(a.node, a.iface, b.node, f"{a.node}-{a.iface}", b.iface))
            else:
                plans.append(VethPlan(a.node, a.iface, b.node, b.iface))
        return plans

    def readdressed(self, addresses: dict[str, str]) -> "Topology":
        """The same topology with each named node's first address replaced (its prefix kept), for
        machines that already have addresses of their own."""
        topo = copy.deepcopy(self)
        for name, address in addresses.items():
            node = topo.nodes.get(name)
            first = next((i for i in node.interfaces.values() if i.ipv4), None) if node else None
            if first is not None:
                new = ipaddress.IPv4Interface(f"{address}/{first.ipv4.network.prefixlen}")
                node.interfaces[first.name] = Interface(first.name, new)
        return topo

    def bridge_path(self, src: str, dst: str) -> Crossing:
        """The bridge both hosts are linked to, and its ports toward each."""
        ports: dict[str, tuple[str, str, str]] = {}  # node -> (bridge host, bridge, port name)
        for plan in self.veths():
            if plan.b_bridge:
                ports.setdefault(plan.a_node, (plan.b_node, plan.b_bridge, plan.b_name))
        if src not in ports or dst not in ports or ports[src][:2] != ports[dst][:2]:
            raise LabError(f"no bridge joins {src} and {dst} in topology {self.name}: impairments sit on the bridge between two hosts")
        return Crossing(ports[src][0], ports[src][2], ports[dst][2])

    def check_impairment(self, f: yamlfile.Fields, args: dict) -> None:
        """Refuses an impairment entry (a topology's or an impair step's, its numbers already read) in one line naming the field."""
        for end in ("from", "to"):
            if args[end] not in self.nodes:
                raise f.error(end, f"no host {args[end]!r}; hosts: {', '.join(self.nodes)}")
        if args["from"] == args["to"]:
            raise f.error("to", "an impairment joins two different hosts")
        try:
            self.bridge_path(args["from"], args["to"])
        except LabError as e:
            raise f.error("to", str(e)) from None
        if args.get("direction", "both") not in ("both", "one"):
            raise f.error("direction", f"{args['direction']!r}: allowed: both (the same each way, the default), one (from -> to only)")
        for key in ("delay_ms", "loss", "rate_mbit"):
            if args.get(key, 0) < 0:
                raise f.error(key, f"{args[key]:g}: it must be 0 or more")
        if args.get("loss", 0) > 100:
            raise f.error("loss", f"{args['loss']:g}: a percentage, 0 to 100")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "nodes": {
                n.name: {
                    "interfaces": {i.name: {"ipv4": str(i.ipv4) if i.ipv4 else None} for i in n.interfaces.values()},
                    "bridges": list(n.bridges),
                }
                for n in self.nodes.values()
            },
            "links": [[str(a), str(b)] for a, b in self.links],
        }


def known() -> list[str]:
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yml"))


def load(name_or_path: str | Path) -> Topology:
    path = Path(name_or_path)
    if path.suffix not in (".yml", ".yaml"):
        path = TOPOLOGY_DIR / f"{name_or_path}.yml"
        if not path.exists():
            raise ConfigError(path, None, f"no such topology; known: {', '.join(known()) or 'none'}")
    return parse(path, yamlfile.load(path))


def parse(path: Path, data: object) -> Topology:
    top = yamlfile.Fields(path, "", data if data is not None else {}).only(["name", "description", "nodes", "links", "impairments"])
    nodes_f = top.sub("nodes")
    if not nodes_f.value:
        raise top.error("nodes", "a topology needs at least one node")
    nodes: dict[str, Node] = {}
    for name, spec in nodes_f.value.items():
        if not isinstance(name, str) or not NODE_RE.match(name):
            raise nodes_f.error(str(name), "node names are 1-10 lower-case letters or digits, starting with a letter")
        nodes[name] = _parse_node(nodes_f.sub(name, {}) if spec is None else nodes_f.sub(name), name)

    links: list[tuple[Endpoint, Endpoint]] = []
    used: dict[Endpoint, str] = {}
    for i, item in enumerate(top.get("links", list, [])):
        link_f = yamlfile.Fields(path, f"links[{i}]", item).only(["endpoints"])
        eps = link_f.get("endpoints", list, what='a list of two "node:interface" strings')
        if len(eps) != 2:
            raise link_f.error("endpoints", f'expected two "node:interface" strings, got {len(eps)}')
        pair = tuple(_parse_endpoint(link_f, nodes, e) for e in eps)
        for ep in pair:
            is_bridge = ep.iface in nodes[ep.node].bridges
            if not is_bridge and ep in used:
                raise link_f.error("endpoints", f"{ep} is already used by {used[ep]}; an interface joins one link")
            used[ep] = f"links[{i}]"
        a, b = pair
        if a.iface in nodes[a.node].bridges and b.iface in nodes[b.node].bridges:
            raise link_f.error("endpoints", "a link joins an interface to a bridge or to another interface, not two bridges")
        if a.node == b.node:
            raise link_f.error("endpoints", "a link must join two different nodes")
        links.append((a, b))

    topo = Topology(
        name=top.get("name", str, path.stem),
        file=path,
        description=top.get("description", str, ""),
        nodes=nodes,
        links=links,
    )
    for plan in topo.veths():
        for node, name in ((plan.a_node, plan.a_name), (plan.b_node, plan.b_name)):
            if len(name) > IFNAME_MAX:
                raise ConfigError(path, "links", f"interface name {name!r} on {node} is over Linux's {IFNAME_MAX} characters; shorten the node or interface names")
    topo.impairments = [_parse_impairment(topo, yamlfile.Fields(path, f"impairments[{i}]", item))
                        for i, item in enumerate(top.get("impairments", list, []))]
    return topo


def _parse_impairment(topo: Topology, f: yamlfile.Fields) -> dict:
    f.only(IMPAIRMENT_FIELDS)
    out = {"from": f.get("from", str), "to": f.get("to", str), "delay_ms": f.get("delay_ms", float, 0.0),
           "loss": f.get("loss", float, 0.0), "rate_mbit": f.get("rate_mbit", float, 0.0), "direction": f.get("direction", str, "both")}
    topo.check_impairment(f, out)
    return out


def _parse_node(f: yamlfile.Fields, name: str) -> Node:
    f.only(["interfaces", "bridges"])
    node = Node(name)
    for br in f.get("bridges", list, []):
        if not isinstance(br, str) or not IFACE_RE.match(br):
            raise f.error("bridges", f"bridge name {br!r}: use 1-8 lower-case letters or digits, starting with a letter")
        node.bridges.append(br)
    ifaces = f.sub("interfaces", {})
    for iname, ispec in ifaces.value.items():
        if not isinstance(iname, str) or not IFACE_RE.match(iname):
            raise ifaces.error(str(iname), "interface names are 1-8 lower-case letters or digits, starting with a letter")
        if iname in node.bridges:
            raise ifaces.error(iname, "this name is already one of the node's bridges")
        spec_f = ifaces.sub(iname, {}) if ispec is None else ifaces.sub(iname)
        spec_f.only(["ipv4"])
        addr = None
        if spec_f.has("ipv4"):
            raw = spec_f.get("ipv4", str, what="an address with prefix such as 10.0.1.1/24")
            try:
                addr = ipaddress.IPv4Interface(raw)
            except ValueError:
                raise spec_f.error("ipv4", f"{raw!r} is not an IPv4 address with prefix, such as 10.0.1.1/24") from None
            if "/" not in raw:
                raise spec_f.error("ipv4", f"{raw!r} needs a prefix length, such as {raw}/24")
        node.interfaces[iname] = Interface(iname, addr)
    return node


def _parse_endpoint(f: yamlfile.Fields, nodes: dict[str, Node], raw: object) -> Endpoint:
    if not isinstance(raw, str) or raw.count(":") != 1:
        raise f.error("endpoints", f'{raw!r} is not "node:interface"')
    node, iface = raw.split(":")
    if node not in nodes:
        raise f.error("endpoints", f"{raw!r}: no node {node!r}; nodes: {', '.join(nodes)}")
    n = nodes[node]
    if iface not in n.interfaces and iface not in n.bridges:
        have = ", ".join(list(n.interfaces) + n.bridges) or "none"
        raise f.error("endpoints", f"{raw!r}: {node} has no interface or bridge {iface!r}; it has: {have}")
    return Endpoint(node, iface)
