"""Captures before the delay, on an SSH machine whose egress is delayed (netem on its own interface).

tcpdump on an interface sees an outgoing packet when it leaves, after the qdisc's delay; a capture
there would show the machine's own sending late, and half the round trip. So while a delay is in
the exercise, the machine's captures use a dummy interface of the lab's own that mirrors the data
interface's traffic as the TCP stack sends it (a clsact egress filter, before any qdisc) and as it
arrives (clsact ingress): the capture a tap on the wire next to the machine would give.

Recorded in the lab's folder (mirror.json) before it is made; teardown and `down` remove it.
"""
from __future__ import annotations

import json

from ...naming import mirror_interface
from .session import Session

RECORD = "mirror.json"


def create(s: Session, lab: str, dev: str) -> str:
    name = mirror_interface(lab)
    record = {"dev": dev, "mirror": name, "clsact": False}
    s.write_file(f"{s.lab_dir}/{RECORD}", json.dumps(record))
    s.run(["ip", "link", "add", name, "type", "dummy"])
    s.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=False)
    s.run(["ip", "link", "set", name, "up"])
    # Fails if the interface has a clsact of its own (BPF programs, say): then nothing of it is touched.
    s.run(["tc", "qdisc", "add", "dev", dev, "clsact"])
    record["clsact"] = True
    s.write_file(f"{s.lab_dir}/{RECORD}", json.dumps(record))
    for direction in ("ingress", "egress"):
        s.run(["tc", "filter", "add", "dev", dev, direction, "matchall", "action", "mirred", "egress", "mirror", "dev", name])
    return name


def remove(s: Session) -> list[str]:
    saved = s.read_file(f"{s.lab_dir}/{RECORD}")
    if not saved:
        return []
    record = s.json(saved, RECORD)
    removed = []
    if record.get("clsact"):
        s.run(["tc", "qdisc", "del", "dev", record["dev"], "clsact"], check=False)
        removed.append(f"the capture mirror's filters on {record['dev']}")
    if s.run(["ip", "link", "del", record["mirror"]], check=False).returncode == 0:
        removed.append(f"interface {record['mirror']}")
    return removed
