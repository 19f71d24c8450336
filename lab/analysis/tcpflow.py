"""Turns a capture into TCP connections and labels each segment with what it means.

The segments and Wireshark's analysis of them come from one compiled pass (lab/analysis/tcpscan.pyx,
the same state machine as Wireshark 4.0's, flag for flag). Labels follow Wireshark where the two
agree, and Linux's behaviour where they differ: a 0- or 1-byte segment at SND.NXT - 1 is a keep-alive
probe when the peer's window is open and a zero-window probe when it is closed (Wireshark calls both
keep-alive); a 1-byte segment of new data at SND.NXT into a closed window is the RFC 1122 / BSD
zero-window probe. `Flow.wireshark` keeps Wireshark's own flags beside them.

On top, this module names the timer behind a segment (_timer_labels), columnar over each flow's numpy
arrays: a SYN resent, a tail loss probe, RTO retransmissions, a delayed ACK, a segment Nagle held.
Event objects are built only when asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .pcap import ACK, FIN, RST, SYN, Segment, SegmentTable, read_table
from .capture import WS_FLAGS

CLIENT, SERVER = "client", "server"

# Segment labels, each one bit of Flow.labels
LABELS = [
    "syn", "syn_ack", "data", "ack", "fin", "rst", "keepalive", "keepalive_ack", "zero_window",
    "zero_window_probe", "zero_window_probe_ack", "window_update", "retransmission", "window_full",
    "rfc_zero_window_probe", "out_of_order",
    # Timers behind a segment (lab/analysis/tcpflow.py's _timer_labels): not Wireshark's, except that
    # all three kinds of resend below are also its `retransmission`, and a fast one its `fast_retransmission`.
    "syn_retransmission", "tail_loss_probe", "rto_retransmission", "fast_retransmission", "delayed_ack", "nagle_held",
    # Wireshark's, as they are (tcpscan.pyx's flags).
    "spurious_retransmission", "duplicate_ack", "lost_segment", "ack_lost_segment",
]
BIT = {name: 1 << i for i, name in enumerate(LABELS)}
(SYN_, SYN_ACK, DATA, PURE_ACK, FIN_, RST_, KEEPALIVE, KEEPALIVE_ACK, ZERO_WINDOW,
 ZERO_WINDOW_PROBE, ZERO_WINDOW_PROBE_ACK, WINDOW_UPDATE, RETRANSMISSION, WINDOW_FULL,
 RFC_ZERO_WINDOW_PROBE, OUT_OF_ORDER, SYN_RETRANSMISSION, TAIL_LOSS_PROBE, RTO_RETRANSMISSION, FAST_RETRANSMISSION,
 DELAYED_ACK, NAGLE_HELD, SPURIOUS_RETRANSMISSION, DUPLICATE_ACK, LOST_SEGMENT, ACK_LOST_SEGMENT) = LABELS
WIRESHARK_ONLY = {name: 1 << WS_FLAGS.index(name) for name in LABELS[-4:]}

# Wireshark's out-of-order window when the handshake was not seen (packet-tcp.c: 3 ms).
DEFAULT_REORDER_WINDOW = 0.003
# A pure ACK of data is "delayed" when it left at least this long (beyond the first round trip) after
# the data it acknowledges: Linux's shortest delayed-ACK timer is TCP_DELACK_MIN, 40 ms (HZ/25 jiffies at
# any HZ), and a timer never fires early; the margin below 40 ms is for the capture's clock.
DELAYED_ACK_AT_LEAST = 0.035
# A small segment held by Nagle leaves as soon as the ACK of the earlier small segment arrives: within
# this long of it in the sender's capture (the time to wake the sender's softirq), or one first round
# trip later where the capture was taken elsewhere.
NAGLE_RELEASE_WITHIN = 0.002
# A first resend followed by the next one this much later or sooner than twice its own delay is not the
# start of an RTO doubling: a tail loss probe (whose timer, the PTO, is about the RTO with one segment
# out), not the first RTO retransmission.
RTO_DOUBLING_AT_LEAST = 1.5


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
class Flow:
    """One connection: its segments in capture order, as columns."""

    client: tuple[str, int]
    server: tuple[str, int]
    table: SegmentTable = field(repr=False)
    rows: np.ndarray = field(repr=False)  # this flow's rows of the table
    from_server: np.ndarray = field(repr=False)  # bool per segment
    rel_seq: np.ndarray = field(repr=False)
    rel_ack: np.ndarray = field(repr=False)
    window: np.ndarray = field(repr=False)  # scaled
    labels: np.ndarray = field(repr=False)  # bit mask per segment, see BIT
    wireshark: np.ndarray = field(repr=False, default=None)  # Wireshark's flags per segment, bit i for WS_FLAGS[i]
    # Told the frame number of every segment made an Event (the few a check reports on): the results
    # folder's view records which frames each check judged (lab/analysis/context.py).
    observer: Optional[Callable[[int], None]] = field(repr=False, default=None, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def ts(self) -> np.ndarray:
        return self.table.ts[self.rows]

    @cached_property
    def plen(self) -> np.ndarray:
        return self.table.plen[self.rows]

    @cached_property
    def flags(self) -> np.ndarray:
        return self.table.flags[self.rows]

    def where(self, label: Optional[str] = None, sender: Optional[str] = None, *, without: tuple = (),
              after: Optional[float] = None, since: Optional[float] = None, before: Optional[float] = None) -> np.ndarray:
        """Positions of the segments that match: a label, a sender, labels to exclude, and a time range
        (after: strictly later; since: at or later; before: strictly earlier)."""
        m = np.ones(len(self.rows), dtype=bool)
        if label is not None:
            m &= (self.labels & BIT[label]) != 0
        for name in without:
            m &= (self.labels & BIT[name]) == 0
        if sender is not None:
            m &= self.from_server == (sender == SERVER)
        if after is not None:
            m &= self.ts > after
        if since is not None:
            m &= self.ts >= since
        if before is not None:
            m &= self.ts < before
        return np.flatnonzero(m)

    def before(self, t: float) -> "Flow":
        """The flow's segments captured before `t`, labelled as they were: every label is computed from
        what came before a segment, so nothing later changes it."""
        keep = self.ts < t
        if keep.all():
            return self
        return Flow(self.client, self.server, self.table, self.rows[keep], self.from_server[keep], self.rel_seq[keep],
                    self.rel_ack[keep], self.window[keep], self.labels[keep], self.wireshark[keep], self.observer)

    def event(self, k: int) -> Event:
        bits = int(self.labels[k])
        if self.observer is not None:
            self.observer(int(self.table.index[self.rows[k]]))
        return Event(
            self.table.segment(int(self.rows[k])), SERVER if self.from_server[k] else CLIENT,
            frozenset(name for name in LABELS if bits & BIT[name]),
            int(self.rel_seq[k]), int(self.rel_ack[k]), int(self.window[k]),
        )

    def pick(self, *args, **kw) -> list[Event]:
        """The matching segments as events (for the few a check reports on; see `where`)."""
        return [self.event(int(k)) for k in self.where(*args, **kw)]

    def first(self, *args, **kw) -> Optional[Event]:
        pos = self.where(*args, **kw)
        return self.event(int(pos[0])) if len(pos) else None

    def last(self, *args, **kw) -> Optional[Event]:
        pos = self.where(*args, **kw)
        return self.event(int(pos[-1])) if len(pos) else None

    def handshake_rtt(self) -> float:
        """The round trip the handshake took where this capture saw it (the client's SYN to the server's
        SYN-ACK; 0 where either is missing): tens of microseconds on a bridge, milliseconds between
        emulated VMs, whose vCPUs stall."""
        syn, synack = self.first(SYN_, CLIENT), self.first(SYN_ACK, SERVER)
        return max(synack.ts - syn.ts, 0.0) if syn and synack else 0.0

    def __str__(self) -> str:
        return f"{self.client[0]}:{self.client[1]} -> {self.server[0]}:{self.server[1]}"


def analyze_file(path: Path) -> list[Flow]:
    return analyze(read_table(path))


def analyze(table: SegmentTable) -> list[Flow]:
    """Flows in order of first appearance, each with every segment labelled: the scanner's labels
    (Wireshark's analysis, lab/analysis/tcpscan.pyx) and the timers behind segments (_timer_labels)."""
    if not len(table):
        return []
    cols = table.columns
    conv = cols["conv"]
    order = np.argsort(conv, kind="stable")
    bounds = np.searchsorted(conv[order], np.arange(table.scan.connections + 1))
    flows = []
    for c in range(table.scan.connections):
        rows = order[bounds[c]:bounds[c + 1]]
        if len(rows):
            flows.append(_flow(table, c, rows))
    return flows


def _flow(t: SegmentTable, conv: int, rows: np.ndarray) -> Flow:
    cols = t.columns
    client, server = t.scan.endpoints(conv)
    from_server = cols["from_server"][rows].astype(bool)
    rel_seq, rel_ack = cols["rel_seq"][rows], cols["rel_ack"][rows]
    ws = cols["ws"][rows]
    labels = cols["labels"][rows].copy()
    for name, bit in WIRESHARK_ONLY.items():
        labels |= np.where(ws & bit, BIT[name], 0)
    flags, plen, ts = t.flags[rows], t.plen[rows], t.ts[rows]
    end = rel_seq + plen + ((flags & (SYN | FIN)) != 0)
    rtt = t.scan.summary(conv)["first_rtt"]
    labels |= _timer_labels(t, rows, from_server, flags, ts, plen, rel_seq, rel_ack, labels, end, cols["nxt_before"][rows],
                            cols["nxt_time"][rows], cols["peer_ack"][rows], rtt if rtt else DEFAULT_REORDER_WINDOW)
    return Flow(client, server, t, rows, from_server, rel_seq, rel_ack, cols["window"][rows], labels, ws)


def _timer_labels(t: SegmentTable, rows: np.ndarray, from_server: np.ndarray, flags: np.ndarray, ts: np.ndarray,
                  plen: np.ndarray, rel_seq: np.ndarray, rel_ack: np.ndarray, labels: np.ndarray, sent_end: np.ndarray,
                  nxt_before: np.ndarray, nxt_time: np.ndarray, peer_ack: np.ndarray, handshake: float) -> np.ndarray:
    """The labels that name the timer behind a segment: a SYN resent (the SYN timer), a tail loss probe
    and RTO retransmissions (the retransmission timer), a delayed ACK (the receiver's delayed-ACK
    timer), and a small segment Nagle held until the peer acknowledged the one before it.

    Read from the wire alone, as Linux sends them (tcp_timer.c, tcp_output.c):
    - after a silent spell, the first resend of data is a tail loss probe when it resends the last
      segment sent (the PTO resends the tail; an RTO resends SND.UNA) and either that is not the first
      unacknowledged byte, or the next resend follows it sooner than an RTO doubling would; every other
      resend of the first unacknowledged byte in the spell (no new acknowledgement between them) is an RTO
      retransmission, and the other segments resent with it are the recovery's, not an expiry's;
    - a pure ACK of the peer's data is delayed when it left DELAYED_ACK_AT_LEAST after that data, less
      the path's round trip (the smallest of the handshake's and of any pure ACK's of data: a round trip never
      takes less, so a delayed ACK is never missed where round trips vary), with nothing sent by its side
      in between;
    - a small data segment is Nagle-held when the side's previous segment of new data was small and
      unacknowledged, and it left right after the pure ACK that acknowledged exactly up to it, within
      twice the time that ACK had taken to come after the small segment before (a
      write that merely came after a quick ACK, with TCP_NODELAY, looks the same on the wire: the
      checks read the label together with the delayed ACK before it).
    """
    out = resend_timers(from_server, flags, labels, ts, rel_seq, sent_end, nxt_before, nxt_time, peer_ack)
    resent = (labels & BIT[RETRANSMISSION]) != 0

    # The rest works on its candidates alone (pure ACKs, small segments of new data), each finding the
    # segment it answers by a binary search among that side's: a bulk capture has few of them to look at.
    data = (labels & BIT[DATA]) != 0
    new_data = data & ~resent & ((labels & BIT[OUT_OF_ORDER]) == 0)
    pure = (labels & (BIT[PURE_ACK] | BIT[WINDOW_UPDATE])) != 0
    has_ack = (flags & ACK) != 0
    data_end = rel_seq + plen

    # Delayed ACKs: each pure ACK against the peer's last data segment before it.
    acks = np.flatnonzero(pure)
    peer_data = _before_each(acks, from_server, ~from_server & data, from_server & data)
    found = peer_data >= 0
    acks, peer_data = acks[found], peer_data[found]
    own_prev = _before_each(acks, from_server, from_server, ~from_server)  # the ACK's side's own segment before it
    covers = (rel_ack[acks] >= data_end[peer_data]) & (own_prev < peer_data)
    acks, peer_data = acks[covers], peer_data[covers]
    gaps = ts[acks] - ts[peer_data]
    rtt = min([g for g in (handshake, float(gaps.min()) if len(gaps) else 0.0) if g > 0], default=0.0)
    out[acks[gaps - rtt >= DELAYED_ACK_AT_LEAST]] |= BIT[DELAYED_ACK]

    # Nagle: the MSS is the smaller of the two SYNs' options (unknown without both: no label).
    mss_seen = t.mss[rows][(flags & SYN) != 0]
    mss_seen = mss_seen[mss_seen > 0]
    if len(mss_seen) >= 2:
        mss = int(mss_seen.min())
        small = np.flatnonzero(new_data & (plen < mss))
        prev = _before_each(small, from_server, from_server & new_data, ~from_server & new_data)  # the side's new data before
        pa = _before_each(small, from_server, ~from_server & has_ack, from_server & has_ack)  # the peer's last ACK before
        keep = (prev >= 0) & (pa >= 0)
        small, prev, pa = small[keep], prev[keep], pa[keep]
        # The peer's ACK before that one: it had not yet acknowledged the previous small segment.
        pa_before = _before_each(pa, from_server, from_server & has_ack, ~from_server & has_ack)
        nagle = ((plen[prev] < mss) & pure[pa] & (pa > prev) & (rel_ack[pa] == rel_seq[small])
                 & ((pa_before < 0) | (rel_ack[np.maximum(pa_before, 0)] < rel_seq[small]) | (pa_before < prev))
                 & (ts[small] - ts[pa] <= NAGLE_RELEASE_WITHIN + rtt)
                 # it waited for that ACK at least half as long as it took to follow it: held, not merely written
                 # well after it (where the capture sits midway, both are about a round trip)
                 & (ts[pa] - ts[prev] >= 0.5 * (ts[small] - ts[pa])))
        out[small[nagle]] |= BIT[NAGLE_HELD]
    return out


def resend_timers(from_server: np.ndarray, flags: np.ndarray, labels: np.ndarray, ts: np.ndarray, rel_seq: np.ndarray,
                  sent_end: np.ndarray, nxt_before: np.ndarray, nxt_time: np.ndarray, peer_ack: np.ndarray) -> np.ndarray:
    """The timer behind each resend (SYN retransmission, tail loss probe, RTO retransmission), read from the
    resends alone: the rows may be a whole flow, or only its flagged segments (lab/analysis/connections.py)."""
    out = np.zeros(len(ts), dtype=np.int64)
    syn_only = (flags & (SYN | ACK)) == SYN
    resent = (labels & BIT[RETRANSMISSION]) != 0
    out |= np.where(syn_only & resent, BIT[SYN_RETRANSMISSION], 0)

    # Resends of data or FIN, by spell: one side, no new acknowledgement from the peer since. (A SYN-ACK
    # sent again answers a SYN sent again, or its own timer: not the retransmission timer's.)
    fast = (labels & BIT[FAST_RETRANSMISSION]) != 0
    candidates = np.flatnonzero(resent & ((flags & SYN) == 0) & ~fast & ((flags & RST) == 0))
    spells: dict[tuple[bool, int], list[int]] = {}
    for k in candidates.tolist():
        spells.setdefault((bool(from_server[k]), int(peer_ack[k])), []).append(k)
    for (_, acked), ks in spells.items():
        first = ks[0]
        tail = sent_end[first] == nxt_before[first]  # it ends at SND.NXT: the last segment sent
        head = rel_seq[first] <= max(acked, 0)
        probe = False
        if tail and not head:
            probe = True
        elif tail and len(ks) > 1:
            waited = ts[first] - nxt_time[first]
            probe = waited > 0 and ts[ks[1]] - ts[first] < RTO_DOUBLING_AT_LEAST * waited
        out[first] |= BIT[TAIL_LOSS_PROBE] if probe else BIT[RTO_RETRANSMISSION]
        for k in ks[1:]:
            # an expiry resends SND.UNA; what goes with it (slow start after the timeout) is no expiry
            if acked < 0 or rel_seq[k] <= acked:
                out[k] |= BIT[RTO_RETRANSMISSION]

    return out


def _before_each(at: np.ndarray, from_server: np.ndarray, if_server: np.ndarray, if_client: np.ndarray) -> np.ndarray:
    """For each position in `at`, the last earlier position where `if_server` holds (for a segment the
    server sent) or `if_client` holds (for one the client sent); -1 where there is none."""
    out = np.full(len(at), -1, dtype=np.int64)
    mine = from_server[at]
    for which, mask in ((mine, if_server), (~mine, if_client)):
        marks = np.flatnonzero(mask)
        k = np.searchsorted(marks, at[which]) - 1
        out[which] = np.where(k >= 0, marks[np.maximum(k, 0)] if len(marks) else -1, -1)
    return out
