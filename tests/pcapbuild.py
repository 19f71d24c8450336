"""Builds small TCP captures with scapy, for tests of the analyzer and the checks."""
from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.analysis.pcap import Segment, read_table
from lab.analysis.tcpflow import Event, Flow

# Every Ethernet header is given its addresses: scapy would otherwise look them up on this machine's network.
MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CLIENT = ("10.0.1.1", 40000)
SERVER = ("10.0.1.2", 8990)


def read_segments(path: Path) -> list[Segment]:
    """Every TCP segment in a small capture, one tuple each."""
    table = read_table(path)
    return [table.segment(i) for i in range(len(table))]


def events(flow: Flow) -> list[Event]:
    """Every segment of a small flow as an event (the checks ask for the few they report on)."""
    return [flow.event(k) for k in range(len(flow))]


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
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=(own if seq is None else seq) % 2**32,
                  ack=peer % 2**32 if "A" in flags else 0,
                  window=(self.cwin if from_client else self.swin) if win is None else win,
                  options=options or [])
        pkt = Ether(**MACS) / IP(src=src[0], dst=dst[0]) / tcp
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

    def client_rfc_probe(self, t: float):
        """The RFC 1122 / BSD probe: one new byte at SND.NXT into the closed window (not sent on)."""
        return self._add(t, True, "PA", b"z", seq=self.cseq)

    def client_fin(self, t: float):
        return self._add(t, True, "FA")

    def client_rst(self, t: float, seq_offset: int = 0):
        return self._add(t, True, "RA", seq=self.cseq + seq_offset)

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.packets)
        return path


def lost_request(resends: list[float], segments: int = 1) -> Conversation:
    """A request of `segments` segments nobody acknowledges, 1 s after a first exchange, then the same data
    again at `resends` (seconds after the request): the tail (last segment) first where more than one was sent."""
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"q" * 100)
    c.server_data(0.011, b"reply")
    start = c.cseq
    for k in range(segments):
        c.client_data(1.0 + k * 1e-5, bytes([97 + k]) * 100)
    for i, t in enumerate(resends):
        at = start + 100 * (segments - 1) if i == 0 and segments > 1 else start
        c.client_data(1.0 + t, b"r" * 100, seq=at)
    return c


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


def _write_logs(folder: Path, client: list[dict], server: list[dict]) -> None:
    (folder / "client.log").write_text("".join(json.dumps(e) + "\n" for e in client))
    (folder / "server.log").write_text("".join(json.dumps(e) + "\n" for e in server))


def _window_closed(folder: Path) -> tuple[Conversation, float]:
    """A connection whose receiver has just closed its window: the conversation, and when it closed."""
    folder.mkdir(parents=True, exist_ok=True)
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"x" * 1000)
    closed = 0.02
    c.server_ack(closed, win=0)
    return c, closed


PERSIST_CHECKS = [
    {"check": "connection_established", "capture": "source", "client": "client", "exchange": False},
    {"check": "zero_window_advertised", "capture": "source", "client": "client"},
    {"check": "window_probes", "capture": "source", "client": "client"},
    {"check": "window_reopened", "capture": "source", "client": "client"},
    {"check": "stream_intact", "capture": "source", "client": "client", "server": "server"},
]


def persist_results(
    folder: Path,
    probes: list[float] = (0.208, 0.624, 1.456, 3.12),  # seconds after the zero window
    reopen: float | None = 4.0,
    resume_gap: float = 0.0001,
    rto_us: int = 208000,
    probe_kind: str = "linux",  # linux | garbage (1 old byte) | rfc (1 new byte)
    received_sha: str = "same",
    hz: int | None = 250,
    logged_bytes: int | None = None,  # what both logs claim, if not what the capture carries
) -> Path:
    """A results folder as `invoke up persist-timer` leaves it, with a schedule of one's choosing."""
    c, zero_at = _window_closed(folder)
    for p in probes:
        t = zero_at + p
        {"linux": c.client_probe, "garbage": lambda t: c.client_probe(t, payload=b"x"), "rfc": c.client_rfc_probe}[probe_kind](t)
        c.server_ack(t + 0.0001, win=0)
    end = zero_at + (reopen if reopen is not None else (probes[-1] if probes else 0) + 1)
    if reopen is not None:
        c.server_ack(end, win=64)
        c.client_data(end + resume_gap, b"y" * 1000)
        c.server_ack(end + resume_gap + 0.0001)
    c.client_fin(end + resume_gap + 0.01)
    c.server_ack(end + resume_gap + 0.0101, win=64 if reopen is not None else 0)
    c.write(folder / "source.pcap")
    sent = logged_bytes if logged_bytes is not None else (2000 if reopen is not None else 1000)
    wall = c.t0
    _write_logs(
        folder,
        [
            {"event": "connected", "wall": wall, "mono": 1.0, "local_port": CLIENT[1]},
            {"event": "blocked", "wall": wall + end, "mono": 1.0 + end, "seconds": end - zero_at, "rto_us": rto_us},
            {"event": "done", "wall": wall + end + 0.01, "mono": 2.0, "bytes": sent, "sha256": "abc"},
        ],
        [{"event": "closed", "wall": wall + end + 0.02, "mono": 2.0, "bytes": sent,
          "sha256": "abc" if received_sha == "same" else "def"}],
    )
    manifest = {"exercise": "persist-timer", "backend": "netns", "parameters": {}, "kernel": {"hz": hz}, "checks": PERSIST_CHECKS}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


LOST_UPDATE_CHECKS = [
    {"check": "window_update_lost", "sent_capture": "dest", "seen_capture": "source", "client": "client"},
    {"check": "no_data_while_lost", "sent_capture": "dest", "seen_capture": "source", "client": "client"},
    {"check": "probe_reopens", "seen_capture": "source", "client": "client"},
    {"check": "data_resumes", "seen_capture": "source", "client": "client"},
]


def lost_update_results(
    folder: Path,
    update_at: float = 3.0,  # seconds after the zero window
    drop: tuple = (1.0, 6.0),  # the path drops open-window segments from ... to ...
    probes: list[float] = (0.208, 0.624, 1.456, 3.12, 6.448),
    leak_update: bool = False,  # the update reaches the sender anyway
    data_during_loss: bool = False,
    resume_gap: float = 0.0001,
    claimed_restore: float | None = None,  # what the manifest says, if not the real end of the drop
) -> Path:
    """Captures at both ends of a connection whose window update is lost on the path."""
    c, z = _window_closed(folder)
    lost = []  # packets dest sends that the path drops
    events = [(p, "probe") for p in probes] + [(update_at, "update")]
    window_open, reopened_seen = False, False
    for t, what in sorted(events):
        if what == "update":
            pkt = c.server_ack(z + t, win=64)
            window_open = True
            if not leak_update and drop[0] <= t < drop[1]:
                lost.append(pkt)
                if data_during_loss:
                    c.client_data(z + t + 0.5, b"d" * 10)
            else:  # the update gets through: the sender resumes at once
                reopened_seen = True
                c.client_data(z + t + 0.0001, b"y" * 1000)
                c.server_ack(z + t + 0.0002, win=64)
            continue
        c.client_probe(z + t)
        reply = c.server_ack(z + t + 0.0001, win=64 if window_open else 0)
        if window_open and drop[0] <= t < drop[1]:
            lost.append(reply)
        elif window_open and not reopened_seen:
            reopened_seen = True
            c.client_data(z + t + 0.0001 + resume_gap, b"y" * 1000)
            c.server_ack(z + t + 0.0002 + resume_gap, win=64)
    c.write(folder / "dest.pcap")
    c.packets = [p for p in c.packets if all(p is not q for q in lost)]
    c.write(folder / "source.pcap")
    wall = c.t0
    _write_logs(folder, [{"event": "connected", "wall": wall, "mono": 1.0, "local_port": CLIENT[1]}], [])
    timeline = [
        {"step": "bridge_drop", "started": wall + z + drop[0] - 0.01, "finished": wall + z + drop[0]},
        {"step": "bridge_restore", "started": wall + z + (claimed_restore if claimed_restore is not None else drop[1]),
         "finished": wall + z + (claimed_restore if claimed_restore is not None else drop[1]) + 0.01},
    ]
    manifest = {"exercise": "zero-window-probe", "backend": "netns", "parameters": {}, "kernel": {"hz": 250},
                "checks": LOST_UPDATE_CHECKS, "timeline": timeline}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
