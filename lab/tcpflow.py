"""Turns a capture into TCP connections and labels each segment with what it means.

Labels follow Wireshark's TCP analysis where the two agree, and Linux's behaviour where they differ:
a 0-byte segment at SND.NXT - 1 is a keep-alive probe when the peer's window is open and a
zero-window probe when it is closed (Wireshark calls both keep-alive).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .pcap import ACK, FIN, RST, SYN, Segment, read_segments

MOD = 1 << 32

# Segment labels
SYN_ = "syn"
SYN_ACK = "syn_ack"
DATA = "data"
PURE_ACK = "ack"
FIN_ = "fin"
RST_ = "rst"
KEEPALIVE = "keepalive"
KEEPALIVE_ACK = "keepalive_ack"
ZERO_WINDOW = "zero_window"
ZERO_WINDOW_PROBE = "zero_window_probe"
ZERO_WINDOW_PROBE_ACK = "zero_window_probe_ack"
WINDOW_UPDATE = "window_update"
RETRANSMISSION = "retransmission"

CLIENT, SERVER = "client", "server"


@dataclass(frozen=True)
class Event:
    seg: Segment
    sender: str  # CLIENT (the side that sent the SYN, or spoke first) or SERVER
    labels: frozenset
    rel_seq: int  # sequence number relative to the sender's ISN
    rel_ack: int  # acknowledgement relative to the receiver's ISN
    window: int  # advertised window in bytes, scaled

    @property
    def ts(self) -> float:
        return self.seg.ts

    def has(self, label: str) -> bool:
        return label in self.labels


@dataclass
class _Side:
    isn: Optional[int] = None
    nxt: int = 0  # highest relative sequence sent + 1
    wscale: Optional[int] = None
    window: Optional[int] = None  # last advertised, scaled
    last_seq: Optional[int] = None
    last_ack: Optional[int] = None
    last_was_probe: bool = False


@dataclass
class Flow:
    client: tuple[str, int]
    server: tuple[str, int]
    events: list[Event] = field(default_factory=list)
    _sides: dict = field(default_factory=lambda: {CLIENT: _Side(), SERVER: _Side()}, repr=False)

    def sent_by(self, sender: str) -> list[Event]:
        return [e for e in self.events if e.sender == sender]

    def labelled(self, label: str, sender: Optional[str] = None) -> list[Event]:
        return [e for e in self.events if label in e.labels and (sender is None or e.sender == sender)]

    def __str__(self) -> str:
        return f"{self.client[0]}:{self.client[1]} -> {self.server[0]}:{self.server[1]}"


def analyze_file(path: Path) -> list[Flow]:
    return analyze(read_segments(path))


def analyze(segments: Iterable[Segment]) -> list[Flow]:
    """Flows in order of first appearance, each with every segment labelled."""
    flows: dict[tuple, Flow] = {}
    for seg in segments:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if a <= b else (b, a)
        flow = flows.get(key)
        if flow is None:
            # The SYN's sender is the client; without a SYN in the capture, whoever speaks first.
            if seg.flags & SYN and seg.flags & ACK:
                flow = Flow(client=b, server=a)
            else:
                flow = Flow(client=a, server=b)
            flows[key] = flow
        _label(flow, seg)
    return list(flows.values())


def _label(flow: Flow, seg: Segment) -> None:
    sender = CLIENT if (seg.src, seg.sport) == flow.client else SERVER
    me = flow._sides[sender]
    peer = flow._sides[SERVER if sender == CLIENT else CLIENT]
    flags = seg.flags
    labels = set()

    if flags & SYN:
        me.isn = seg.seq
        me.wscale = seg.wscale
        labels.add(SYN_ACK if flags & ACK else SYN_)
    if me.isn is None:
        me.isn = seg.seq  # capture started mid-connection
    rel_seq = (seg.seq - me.isn) % MOD
    rel_ack = (seg.ack - peer.isn) % MOD if peer.isn is not None and flags & ACK else 0

    # Scaling applies only once both SYNs carried the option, and never to a SYN's own window.
    scale = me.wscale if (me.wscale is not None and peer.wscale is not None and not flags & SYN) else 0
    window = seg.win << scale

    control = flags & (SYN | FIN | RST)
    ack_only = flags & ACK and not control
    if flags & RST:
        labels.add(RST_)
    if flags & FIN:
        labels.add(FIN_)

    probe_form = ack_only and seg.plen <= 1 and me.nxt > 0 and rel_seq == (me.nxt - 1) % MOD
    if probe_form:
        labels.add(ZERO_WINDOW_PROBE if peer.window == 0 else KEEPALIVE)
    elif seg.plen > 0 or flags & (SYN | FIN):
        end = rel_seq + seg.plen + (1 if flags & (SYN | FIN) else 0)
        if me.nxt and end <= me.nxt and not flags & SYN:
            labels.add(RETRANSMISSION)
        if seg.plen > 0:
            labels.add(DATA)
    elif ack_only:
        if peer.last_was_probe:
            labels.add(ZERO_WINDOW_PROBE_ACK if window == 0 else KEEPALIVE_ACK)
        elif me.window is not None and window != me.window and rel_seq == me.last_seq and rel_ack == me.last_ack:
            labels.add(WINDOW_UPDATE)
        else:
            labels.add(PURE_ACK)
    if window == 0 and not flags & (SYN | FIN | RST):
        labels.add(ZERO_WINDOW)

    if not probe_form:
        me.nxt = max(me.nxt, rel_seq + seg.plen + (1 if flags & (SYN | FIN) else 0))
    if not flags & RST:
        me.window = window
    me.last_seq, me.last_ack = rel_seq, rel_ack
    me.last_was_probe = bool(probe_form)
    peer.last_was_probe = False  # only the first reply after a probe answers it
    flow.events.append(Event(seg, sender, frozenset(labels), rel_seq, rel_ack, window))
