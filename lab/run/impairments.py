"""Link impairments: one-way delay and loss between two hosts, applied at the bridge between them.

The bridge's host (the observer) is the middle box, as DUMMYNET's is in the seed: a frame from A to B
is delayed on its way through. Two methods there, and the manifest says which ran:

- `netem`, where the kernel has it: a netem qdisc on the bridge port that leads to B (delay, loss, rate).
- `delay-line`, where it does not (this project's build machines): lab/onhost/delayline.py relays the
  frames between the two ports from user space, holding each for its delay, while an nftables rule of
  the lab's own stops the bridge forwarding them itself.

Over SSH (machines of one's own, whose bridge the inventory does not describe) the delay is applied
as A sends instead: netem on A's own data-plane interface, for packets to B's address only
(Backend.egress_netem). The kernel there must have netem; the manifest says `netem` and where.

Never silently without: a requested delay that cannot be applied is an error.
"""
from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from ..backends.base import Backend, Process, bridge_forward_chain
from ..backends.labstate import LabState
from ..errors import LabError
from ..naming import nft_table
from ..onhost import delayline
from ..spec.topology import Impairment, Topology
from .processes import stop

DELAYLINE = Path(delayline.__file__)
RELAY_NAME = "delayline"


class Impairments:
    """The impairments in force on one lab; each change re-applies the whole set."""

    def __init__(self, backend: Backend, topology: Topology, state: LabState):
        self.backend, self.topology, self.state = backend, topology, state
        self.active: dict[tuple[str, str], Impairment] = {}
        self.netem: dict[str, bool] = {}  # host -> whether its kernel has netem, asked once a run
        self.relay: Optional[Process] = None
        self.relays = 0
        self.egress: set[tuple[str, str]] = set()  # (host, interface) holding an egress impairment
        self.history: list[dict] = []  # for the manifest: what was in force when, and how exact it was

    def set(self, items: list[Impairment]) -> dict:
        """Adds (or replaces) impairments; one of 0 ms, 0% loss and no rate removes that direction's
        instead, so a run at latency 0 has no delay line in its path at all."""
        for item in items:
            if item.nothing:
                self.active.pop((item.src, item.dst), None)
                continue
            if self.backend.impairs_at == "bridge":
                path = self.topology.bridge_path(item.src, item.dst)
                if any(self.topology.bridge_path(o.src, o.dst).port_out == path.port_out and (o.src, o.dst) != (item.src, item.dst)
                       for o in self.active.values()):
                    raise LabError(f"{item}: another impairment already leads out of {path.port_out}; one per receiving host")
            self.active[(item.src, item.dst)] = item
        return self._apply()

    def clear(self) -> Optional[dict]:
        if not self.active and self.relay is None and not self.egress:
            return None
        self.active.clear()
        return self._apply()

    def _apply(self) -> dict:
        if self.backend.impairs_at == "egress":
            return self._apply_egress()
        paths = {key: self.topology.bridge_path(*key) for key in self.active}
        hosts = {p.host for p in paths.values()} or {self.topology.bridge_path(*k).host for k in self._last_keys()}
        self._stop_relay()
        record: dict = {"at": time.time(), "impairments": [asdict(i) for i in self.active.values()]}
        method = "none"
        for host in hosts:
            if self._has_netem(host):
                method = "netem"
                self._netem(host, paths)
            else:
                method = "delay-line"
                self._delay_line(host, paths, record)
        record["method"] = method if self.active else "none"
        self.history.append(record)
        return record

    def _last_keys(self) -> list[tuple[str, str]]:
        last = self.history[-1]["impairments"] if self.history else []
        return [(i["src"], i["dst"]) for i in last]

    # --- netem -------------------------------------------------------------------------------------

    def _has_netem(self, host: str) -> bool:
        if host not in self.netem:
            self.netem[host] = self.backend.has_netem(host)
        return self.netem[host]

    def _netem(self, host: str, paths: dict) -> None:
        for port in {self.topology.bridge_path(*k).port_out for k in self._last_keys()}:
            self.backend.run(host, ["tc", "qdisc", "del", "dev", port, "root"], check=False)
        for key, item in self.active.items():
            self.backend.run(host, ["tc", "qdisc", "replace", "dev", paths[key].port_out, "root", "netem", *_netem_args(item)])

    # --- on the sender's own egress (SSH) ----------------------------------------------------------

    def _apply_egress(self) -> dict:
        interfaces, addresses = self.backend.interfaces(self.topology), self.backend.addresses()
        wanted: dict[tuple[str, str], tuple[str, Impairment]] = {}
        for (src, dst), item in self.active.items():
            dev, peer = interfaces.get(src), addresses.get(dst)
            if not dev or not peer:
                raise LabError(f"{item}: needs {src}'s data-plane interface and {dst}'s address (`interface`, `address` in the inventory)")
            if (src, dev) in wanted:
                raise LabError(f"{item}: {src} already delays what it sends to {wanted[(src, dev)][0]}; one receiving host per sender over SSH")
            wanted[(src, dev)] = (peer, item)
        record: dict = {"at": time.time(), "impairments": [asdict(i) for i in self.active.values()], "method": "none"}
        for host, dev in self.egress - set(wanted):
            self.backend.egress_clear(host, dev)
        where = []
        for (host, dev), (peer, item) in wanted.items():
            if not self._has_netem(host):
                raise LabError(f"{item}: {host}'s kernel has no netem (sch_netem), which a delay or loss over SSH needs: "
                               f"`modprobe sch_netem` there, or install its kernel's extra modules")
            self.backend.egress_netem(host, dev, peer, _netem_args(item))
            where.append(f"{host} {dev} egress to {peer}")
        self.egress = set(wanted)
        if wanted:
            record["method"], record["where"] = "netem", where
        self.history.append(record)
        return record

    # --- the user-space delay line -------------------------------------------------------------------

    def _delay_line(self, host: str, paths: dict, record: dict) -> None:
        table = nft_table(self.backend.lab) + "_delay"
        drop_table = ["nft", "delete", "table", "bridge", table]
        self.backend.run(host, drop_table, check=False)
        if not self.active:
            return
        try:
            for argv in bridge_forward_chain(table):
                self.backend.run(host, argv)
            args: list[str] = []
            for key, item in self.active.items():
                p = paths[key]
                self.backend.run(host, ["nft", "add", "rule", "bridge", table, "forward", "iifname", p.port_in, "oifname", p.port_out, "drop"])
                args += [p.port_in, p.port_out, f"{item.delay_ms:g}", f"{item.loss:g}", f"{item.rate_mbit:g}"]
            self.relays += 1
            name = f"{RELAY_NAME}{self.relays}"
            self.relay = self.backend.spawn(host, name, [*self.backend.python(host, DELAYLINE), *args], self.state)
            deadline = time.monotonic() + 10
            while b'"ready"' not in self.backend.read_file(host, self.relay.stdout):
                if self.relay.poll() is not None or time.monotonic() > deadline:
                    err = self.backend.read_file(host, self.relay.stderr).decode(errors="replace").strip().splitlines()
                    raise LabError(f"the delay line on {host} did not start: {err[-1] if err else 'no output'}")
                time.sleep(0.02)
        except LabError:
            # Never leave the bridge dropping frames with nothing relaying them.
            self._stop_relay()
            self.backend.run(host, drop_table, check=False)
            self.active.clear()
            raise
        record["relay"] = name

    def _stop_relay(self) -> None:
        if self.relay is None:
            return
        stop([self.relay], signal.SIGTERM, grace=3)
        out = self.backend.read_file(self.relay.host, self.relay.stdout).decode(errors="replace")
        summary = None
        for line in out.splitlines():
            if '"summary"' in line:
                try:
                    summary = json.loads(line)
                except ValueError:
                    summary = {"unreadable": line[:200]}  # cut short by a SIGKILL after the grace period
        for rec in reversed(self.history):
            if rec.get("relay") == self.relay.name:
                rec["summary"] = summary
                break
        self.relay = None


def _netem_args(item: Impairment) -> list[str]:
    argv = ["delay", f"{item.delay_ms}ms"]
    if item.loss:
        argv += ["loss", f"{item.loss}%"]
    if item.rate_mbit:
        argv += ["rate", f"{item.rate_mbit}mbit"]
    return argv
