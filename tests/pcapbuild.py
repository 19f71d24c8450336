"""Builds small TCP captures with scapy, for tests of the analyzer and the checks."""
from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

CLIENT = ("10.0.1.1", 40000)
SERVER = ("10.0.1.2", 8990)


class Conversation:
    """One TCP connection; sequence numbers are tracked so segments come out as a real stack sends them."""

    def __init__(self, t0: float = 1_000_000.0, wscale: int = 7):
        self.t0, self.wscale = t0, wscale
        self.packets = []
        self.cseq, self.sseq = 1000, 50000  # next sequence number of each side
        self.cwin = self.swin = 512  # raw (scaled) windows

    def _add(self, t: float, from_client: bool, flags: str, payload: bytes = b"", seq=None, win=None, options=None):
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        own, peer = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=own if seq is None else seq,
                  ack=peer if "A" in flags else 0,
                  window=(self.cwin if from_client else self.swin) if win is None else win,
                  options=options or [])
        pkt = Ether() / IP(src=src[0], dst=dst[0]) / tcp
        if payload:
            pkt = pkt / Raw(payload)
        pkt.time = self.t0 + t
        self.packets.append(pkt)
        advance = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        if seq is None:
            if from_client:
                self.cseq += advance
            else:
                self.sseq += advance
        return pkt

    def handshake(self, t: float = 0.0):
        self._add(t, True, "S", win=64240, options=[("MSS", 1460), ("WScale", self.wscale)])
        self._add(t + 0.0001, False, "SA", win=65160, options=[("MSS", 1460), ("WScale", self.wscale)])
        self._add(t + 0.0002, True, "A")

    def client_data(self, t: float, data: bytes, **kw):
        return self._add(t, True, "PA", data, **kw)

    def server_data(self, t: float, data: bytes, **kw):
        return self._add(t, False, "PA", data, **kw)

    def client_ack(self, t: float, **kw):
        return self._add(t, True, "A", **kw)

    def server_ack(self, t: float, **kw):
        return self._add(t, False, "A", **kw)

    def client_probe(self, t: float, payload: bytes = b""):
        """Linux's keepalive or window probe: SND.UNA - 1, no data."""
        return self._add(t, True, "A", payload, seq=self.cseq - 1)

    def client_rst(self, t: float, seq_offset: int = 0):
        return self._add(t, True, "RA", seq=self.cseq + seq_offset)

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.packets)
        return path


def keepalive_results(
    folder: Path,
    probes: list[float],
    rst: float | None,
    params: dict,
    error: str = "ETIMEDOUT",
    checks: list[str] = ("connection_established", "keepalive_probes", "keepalive_abort"),
    hz: int | None = 250,
    rst_seq_offset: int = 0,
) -> Path:
    """A results folder as `invoke up exercise1` leaves it: times are seconds after the server's reply."""
    folder.mkdir(parents=True, exist_ok=True)
    conv = Conversation()
    conv.handshake()
    conv.client_data(0.001, b"hello")
    conv.server_data(0.002, b"reply to hello")  # the last segment the client receives
    conv.client_ack(0.0021)
    base = 0.002
    for p in probes:
        conv.client_probe(base + p)
    if rst is not None:
        conv.client_rst(base + rst, rst_seq_offset)
    conv.write(folder / "source.pcap")
    wall = conv.t0
    events = [
        {"event": "connected", "wall": wall, "mono": 1.0, "local": f"{CLIENT[0]}:{CLIENT[1]}", "local_port": CLIENT[1]},
        {"event": "sent", "wall": wall + 0.001, "mono": 1.001, "bytes": 5},
        {"event": "reply", "wall": wall + 0.002, "mono": 1.002, "bytes": 14},
        {"event": "waiting", "wall": wall + 0.002, "mono": 1.002},
    ]
    if rst is not None and error:
        events.append({"event": "error", "wall": wall + base + rst + 0.0005, "mono": 1.0 + base + rst, "errno": 110, "error": error})
    (folder / "client.log").write_text("".join(json.dumps(e) + "\n" for e in events))
    spec_args = {k: "{" + k + "}" for k in ("keepidle", "keepintvl", "keepcnt", "user_timeout")}
    specs = []
    for name in checks:
        spec = {"check": name, "capture": "source", "client": "client"}
        if name != "connection_established":
            spec.update(spec_args)
        specs.append(spec)
    manifest = {"exercise": "exercise1", "backend": "netns", "parameters": params, "kernel": {"hz": hz}, "checks": specs}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
