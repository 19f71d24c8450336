"""Wires a topology's bridges, veths and addresses between network namespaces.

Shared by every backend whose hosts are network namespaces on this machine (named namespaces, and
containers whose namespaces are linked under /run/netns). Each veth pair is created inside the
bridge's namespace with its peer placed straight into the other namespace, so no lab interface ever
exists in the root namespace, and two labs can use the same interface names and addresses.
"""
from __future__ import annotations

import subprocess
from typing import Callable, Sequence

from ..errors import LabError
from ..naming import link_alias
from ..spec.topology import Topology


def ip(netns: str, *args: str) -> None:
    _run(["ip", "-n", netns, *args])


def wire(topology: Topology, netns_of: Callable[[str], str], lab: str) -> None:
    alias = link_alias(lab)
    for node in topology.nodes.values():
        ns = netns_of(node.name)
        ip(ns, "link", "set", "lo", "up")
        for br in node.bridges:
            # STP off (the default) puts ports straight into forwarding, so no 15 s learning delay.
            ip(ns, "link", "add", br, "type", "bridge", "stp_state", "0")
            ip(ns, "link", "set", br, "alias", alias)
            ip(ns, "link", "set", br, "up")
    for plan in topology.veths():
        a_ns, b_ns = netns_of(plan.a_node), netns_of(plan.b_node)
        ip(b_ns, "link", "add", plan.b_name, "type", "veth", "peer", "name", plan.a_name, "netns", a_ns)
        for ns, name in ((a_ns, plan.a_name), (b_ns, plan.b_name)):
            ip(ns, "link", "set", name, "alias", alias)
            # Segmentation and receive offloads merge packets into 64 KB super-packets in captures;
            # with transmit checksum offload, frames carry no checksum until they leave a real NIC, so a
            # frame relayed from user space (the delay line) would arrive broken.
            _run(["ip", "netns", "exec", ns, "ethtool", "-K", name, "tso", "off", "gso", "off", "gro", "off", "tx", "off"])
            ip(ns, "link", "set", name, "mtu", "1500")  # wire-sized packets, as the seed sets on loopback
        if plan.b_bridge:
            ip(b_ns, "link", "set", plan.b_name, "master", plan.b_bridge)
        ip(b_ns, "link", "set", plan.b_name, "up")
    for node in topology.nodes.values():
        ns = netns_of(node.name)
        for iface in node.interfaces.values():
            if iface.ipv4:
                ip(ns, "addr", "add", str(iface.ipv4), "dev", iface.name)
            ip(ns, "link", "set", iface.name, "up")


def _run(argv: Sequence[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {r.stderr.strip() or r.returncode}")
