"""Wires a topology's bridges, veths and addresses between network namespaces.

Shared by every backend whose hosts are network namespaces on this machine (named namespaces, and
containers whose namespaces are linked under /run/netns). Each veth pair is created inside the
bridge's namespace with its peer placed straight into the other namespace, so no lab interface ever
exists in the root namespace, and two labs can use the same interface names and addresses.
"""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

from ..errors import LabError
from ..naming import link_alias
from ..spec.topology import Topology


def batch(netns: str, commands: list[list[str]]) -> None:
    """Several `ip` commands in one process (`ip -batch`): a lab's wiring is some thirty of them, and
    a process each would cost more than the rest of bringing the lab up. It stops at the first error."""
    if commands:
        run(["ip", "-n", netns, "-batch", "-"], stdin="".join(" ".join(c) + "\n" for c in commands))


def wire(topology: Topology, netns_of: Callable[[str], str], lab: str) -> None:
    alias = link_alias(lab)
    made: dict[str, list[list[str]]] = {}  # netns -> commands that make its links
    settings: dict[str, list[list[str]]] = {}  # netns -> commands that set them up, once all exist
    for node in topology.nodes.values():
        ns = netns_of(node.name)
        made[ns] = [["link", "set", "lo", "up"]]
        settings[ns] = []
        for br in node.bridges:
            # STP off (the default) puts ports straight into forwarding, so no 15 s learning delay.
            made[ns] += [["link", "add", br, "type", "bridge", "stp_state", "0"], ["link", "set", br, "alias", alias], ["link", "set", br, "up"]]
    ends: list[tuple[str, str]] = []
    for plan in topology.veths():
        a_ns, b_ns = netns_of(plan.a_node), netns_of(plan.b_node)
        made[b_ns].append(["link", "add", plan.b_name, "type", "veth", "peer", "name", plan.a_name, "netns", a_ns])
        for ns, name in ((a_ns, plan.a_name), (b_ns, plan.b_name)):
            ends.append((ns, name))
            # Wire-sized packets, as the seed sets on loopback.
            settings[ns] += [["link", "set", name, "alias", alias], ["link", "set", name, "mtu", "1500"]]
        if plan.b_bridge:
            settings[b_ns].append(["link", "set", plan.b_name, "master", plan.b_bridge])
        settings[b_ns].append(["link", "set", plan.b_name, "up"])
    for node in topology.nodes.values():
        ns = netns_of(node.name)
        for iface in node.interfaces.values():
            if iface.ipv4:
                settings[ns].append(["addr", "add", str(iface.ipv4), "dev", iface.name])
            settings[ns].append(["link", "set", iface.name, "up"])
    # The bridges' namespaces first: their veths reach into the others.
    order = sorted(made, key=lambda ns: not any(c[:2] == ["link", "add"] for c in made[ns]))
    for ns in order:
        batch(ns, made[ns])
    # Segmentation and receive offloads merge packets into 64 KB super-packets in captures; with
    # transmit checksum offload, frames carry no checksum until they leave a real NIC, so a frame
    # relayed from user space (the delay line) would arrive broken. One ethtool per end, all at once.
    with ThreadPoolExecutor(max_workers=max(1, len(ends))) as pool:
        list(pool.map(lambda end: run(["ip", "netns", "exec", end[0], "ethtool", "-K", end[1], "tso", "off", "gso", "off", "gro", "off", "tx", "off"]), ends))
    for ns, commands in settings.items():
        batch(ns, commands)


def run(argv: Sequence[str], stdin: Optional[str] = None) -> None:
    """One command on this machine; its failure is one line with its error."""
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {r.stderr.strip() or r.returncode}")
