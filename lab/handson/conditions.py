"""Whether a hands-on step's `done_when` holds: from what the hosts show (lab/onhost/handson.py's
facts: sockets, the person's processes, drop rules, files), from the programs' event logs, and from
the lab's own capture."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..analysis import tcpflow as tf
from ..onhost.handson import drops

CAPTURE_TOOLS = ("tcpdump", "tshark", "dumpcap")


@dataclass
class Scene:
    """What there is to judge a condition by, at one moment."""

    facts: dict[str, dict[str, Any]]  # host -> its facts (lab/onhost/handson.py)
    events: dict[str, set[str]] = field(default_factory=dict)  # program -> the event names its logs hold
    flows: list[tf.Flow] = field(default_factory=list)  # the lab's capture
    scripts: dict[str, tuple[str, str]] = field(default_factory=dict)  # program -> (host, script file name)


def holds(kind: str, args: dict[str, Any], scene: Scene) -> bool:
    host = args.get("host")
    facts = scene.facts.get(host, {}) if host else {}
    if kind == "capturing":
        return bool(facts.get("captures")) or any(_tool(p) in CAPTURE_TOOLS for p in facts.get("processes", []))
    if kind == "listening":
        return int(args["port"]) in facts.get("listening", [])
    if kind == "running":
        script = scene.scripts.get(args["program"], ("", ""))[1]
        return any(script in (os.path.basename(a) for a in p["argv"]) for p in facts.get("processes", []))
    if kind == "event":
        return args["event"] in scene.events.get(args["program"], set())
    if kind == "drop_rule":
        # Only a rule the person added: a machine's own firewall (ufw, Docker's) was there before they came.
        return any(drops(rule, int(args["port"])) for rule in facts.get("iptables_added", facts.get("iptables", [])))
    if kind == "nft_table":
        return any(t.split()[-1] == args["name"] for t in facts.get("nft", []))
    flows = [f for f in scene.flows if f.server[1] == int(args["port"])]
    return any(_on_wire(kind, f) for f in flows)


def _tool(process: dict) -> str:
    return os.path.basename(process["argv"][0]) if process.get("argv") else ""


def _on_wire(kind: str, f: tf.Flow) -> bool:
    def has(label: str, sender: Optional[str] = None) -> bool:
        return len(f.where(label, sender)) > 0

    if kind == "connected":
        return has(tf.SYN_, tf.CLIENT) and has(tf.SYN_ACK, tf.SERVER)
    if kind == "exchange":
        return has(tf.DATA, tf.CLIENT) and has(tf.DATA, tf.SERVER)
    if kind == "probes":
        return has(tf.KEEPALIVE, tf.CLIENT)
    if kind == "reset":
        return has(tf.RST_)
    if kind == "zero_window":
        return has(tf.ZERO_WINDOW, tf.SERVER)
    if kind == "window_probes":
        return has(tf.ZERO_WINDOW_PROBE, tf.CLIENT)
    if kind == "reopened":
        zero = f.first(tf.ZERO_WINDOW, tf.SERVER)
        return zero is not None and len(f.where(sender=tf.SERVER, after=zero.ts)) > 0 and any(
            f.window[k] > 0 for k in f.where(sender=tf.SERVER, after=zero.ts))
    if kind == "closed":
        return has(tf.FIN_, tf.CLIENT) and has(tf.FIN_, tf.SERVER)
    raise ValueError(f"unknown condition {kind!r}")
