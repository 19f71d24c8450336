"""Step kinds that change the network: a host's firewall drops a port (`firewall`), a bridge drops
frames between two other hosts (`bridge_drop`, `bridge_restore`), and the bridge between two hosts
delays, loses or rate-limits their frames (`impair`, `unimpair`)."""
from __future__ import annotations

from typing import Any

from ... import ui
from ...naming import iptables_chain, nft_table
from ..topology import impairments_of
from ..yamlfile import Fields
from .base import HOST, MAPPING, NUMBER, PORT, STRING, Run, Scenario, Step, StepKind

NFT = {"nft": "nftables"}
WINDOWS = {"open": "segments advertising an open window", "closed": "zero-window segments", "any": "all segments"}


class Firewall(StepKind):
    """Drops every packet of a port on a host, in both directions (the peer goes silent)."""

    name = "firewall"
    fields = {"host": HOST, "drop": MAPPING}
    required = ("host", "drop")

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        drop = Fields(f.file, f.path("drop"), args["drop"]).only(["protocol", "port"])
        proto = drop.get("protocol", str, "tcp")
        if proto not in ("tcp", "udp"):
            raise drop.error("protocol", f"{proto!r}: allowed: tcp, udp")
        port = drop.get("port", int)
        if not 1 <= port <= 65535:
            raise drop.error("port", f"{port} is not a port number")

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        host, drop = step.args["host"], step.args["drop"]
        proto, port = drop.get("protocol", "tcp"), int(drop["port"])
        ui.step(f"firewall on {host}: drop {proto} port {port} in both directions")
        entry["commands"] = run.hosts.firewall_drop(host, iptables_chain(run.hosts.lab), proto, port)


class Forget(StepKind):
    """The host loses its established connections of a port without a word, as a reboot would: its
    outgoing packets of the port are dropped while `ss -K` destroys the sockets (tcp_abort sends an
    RST of its own, which a rebooting host would not), then the drop is lifted, so the host answers
    whatever comes next for those connections with a RST."""

    name = "forget"
    fields = {"host": HOST, "port": PORT}
    required = ("host", "port")
    tools = {"ss": "iproute2"}

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        host, port = step.args["host"], int(step.args["port"])
        ui.step(f"{host} forgets its connections of port {port} (sockets destroyed, nothing sent)")
        entry["commands"], entry["destroyed"] = run.hosts.forget_connections(host, iptables_chain(run.hosts.lab), port)


class BridgeDrop(StepKind):
    """Drops frames of a port from one host to another on the bridge a third host holds (on-path loss)."""

    name = "bridge_drop"
    fields = {"host": HOST, "from": HOST, "to": HOST, "port": PORT, "window": STRING}
    required = ("host", "from", "to", "port")
    tools = NFT

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        nodes = scenario.topology.nodes
        for end in ("from", "to"):
            if not nodes[args[end]].ip:
                raise f.error(end, f"{args[end]!r} is not a host with an IPv4 address; hosts: {', '.join(n for n, v in nodes.items() if v.ip)}")
        if args.get("window", "any") not in WINDOWS:
            raise f.error("window", f"{args['window']!r}: allowed: {', '.join(WINDOWS)}")
        if not nodes[args["host"]].bridges:
            raise f.error("host", f"{args['host']} holds no bridge, so no frame between two other hosts crosses it")

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        a = step.args
        nodes = run.exercise.topology.nodes
        window = a.get("window", "any")
        ui.step(f"on {a['host']}'s bridge: drop {WINDOWS[window]} of port {a['port']} from {a['from']} to {a['to']}")
        entry["commands"] = run.hosts.bridge_drop(a["host"], nft_table(run.hosts.lab), nodes[a["from"]].ip, nodes[a["to"]].ip, a["port"], window)


class BridgeRestore(StepKind):
    """Ends a bridge_drop: the bridge forwards everything again."""

    name = "bridge_restore"
    fields = {"host": HOST}
    required = ("host",)
    tools = NFT

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        ui.step(f"on {step.args['host']}'s bridge: stop dropping")
        entry["commands"] = run.hosts.bridge_restore(step.args["host"], nft_table(run.hosts.lab))


class Impair(StepKind):
    """Delay, loss and a rate between two hosts, on the bridge between them, each way unless
    direction is one; 0 ms, 0% and no rate remove that direction's impairment."""

    name = "impair"
    fields = {"from": HOST, "to": HOST, "delay_ms": NUMBER, "loss": NUMBER, "rate_mbit": NUMBER, "direction": STRING}
    required = ("from", "to")
    tools = {"tc": "iproute2", **NFT}

    def validate(self, f: Fields, args: dict[str, Any], scenario: Scenario, earlier: list[Step]) -> None:
        scenario.topology.check_impairment(f, args)

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        items = impairments_of(step.args)
        record = run.impair(items)
        ui.step(f"impair ({record['method']}): " + "; ".join(map(str, items)) + ("" if record["impairments"] else " (nothing to apply)"))
        entry["method"] = record["method"]


class Unimpair(StepKind):
    """Removes every impairment in force."""

    name = "unimpair"
    fields: dict[str, str] = {}

    def execute(self, run: Run, step: Step, entry: dict[str, Any]) -> None:
        ui.step("remove the impairments")
        run.unimpair()
