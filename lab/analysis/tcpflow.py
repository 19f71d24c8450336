"""Turns a capture into TCP connections and labels each segment with what it means.

Labels follow Wireshark's TCP analysis where the two agree, and Linux's behaviour where they differ:
a 0- or 1-byte segment at SND.NXT - 1 is a keep-alive probe when the peer's window is open and a
zero-window probe when it is closed (Wireshark calls both keep-alive); a 1-byte segment of new data
at SND.NXT into a closed window is the RFC 1122 / BSD zero-window probe. Old data is a retransmission,
or, as Wireshark has it, out of order when it comes within one handshake RTT of newer data (a segment
overtaken on the way, as a bridge under load may do) and no duplicate ACKs asked for it. In the
sender's own capture nothing is overtaken: there such a segment was resent by SACK recovery within
an RTT, and the label still follows Wireshark's timing rule (count both where resending is meant).

The analysis is columnar: each flow's segments are numpy arrays, and every label is computed for all
segments at once (a running maximum gives SND.NXT, forward fills give each side's last window), so
a capture of a million packets takes about a second. Event objects are built only when asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np

from .pcap import ACK, FIN, RST, SYN, Segment, SegmentTable, read_table

MOD = 1 << 32
CLIENT, SERVER = "client", "server"

# Segment labels, each one bit of Flow.labels
LABELS = [
    "syn", "syn_ack", "data", "ack", "fin", "rst", "keepalive", "keepalive_ack", "zero_window",
    "zero_window_probe", "zero_window_probe_ack", "window_update", "retransmission", "window_full",
    "rfc_zero_window_probe", "out_of_order",
    # Timers behind a segment (lab/analysis/tcpflow.py's _timer_labels): not Wireshark's, except that
    # all three kinds of resend below are also its `retransmission`, and a fast one its `fast_retransmission`.
    "syn_retransmission", "tail_loss_probe", "rto_retransmission", "fast_retransmission", "delayed_ack", "nagle_held",
]
BIT = {name: 1 << i for i, name in enumerate(LABELS)}
(SYN_, SYN_ACK, DATA, PURE_ACK, FIN_, RST_, KEEPALIVE, KEEPALIVE_ACK, ZERO_WINDOW,
 ZERO_WINDOW_PROBE, ZERO_WINDOW_PROBE_ACK, WINDOW_UPDATE, RETRANSMISSION, WINDOW_FULL,
 RFC_ZERO_WINDOW_PROBE, OUT_OF_ORDER, SYN_RETRANSMISSION, TAIL_LOSS_PROBE, RTO_RETRANSMISSION, FAST_RETRANSMISSION,
 DELAYED_ACK, NAGLE_HELD) = LABELS

# Wireshark's out-of-order window when the handshake was not seen (packet-tcp.c: 3 ms).
DEFAULT_REORDER_WINDOW = 0.003
# Wireshark's fast retransmission: at least two duplicate ACKs, and the segment within 20 ms of the last.
FAST_RETRANSMIT_DUPACKS, FAST_RETRANSMIT_WITHIN = 2, 0.020
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
                    self.rel_ack[keep], self.window[keep], self.labels[keep])

    def event(self, k: int) -> Event:
        bits = int(self.labels[k])
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
    """Flows in order of first appearance, each with every segment labelled."""
    if not len(table):
        return []
    a = (table.src << 16) | table.sport
    b = (table.dst << 16) | table.dport
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if len(table.addresses) < 1 << 15:
        key = (lo << 32) | hi  # one 64-bit key per connection
        if (key == key[0]).all():  # a capture of one 4-tuple: the common case, no sort needed
            return [_flow(table, part) for part in _connections(table, np.arange(len(key)))]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(np.stack([lo, hi], axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
    return [_flow(table, part) for f in np.argsort(first)  # in order of first appearance
            for part in _connections(table, order[bounds[f] : bounds[f + 1]])]


def _connections(t: SegmentTable, rows: np.ndarray) -> list[np.ndarray]:
    """The rows of one 4-tuple, split where a SYN with a new ISN starts a new connection (port reuse)."""
    pure_syn = np.nonzero((t.flags[rows] & (SYN | ACK)) == SYN)[0]
    if len(pure_syn) < 2:
        return [rows]
    isn = t.seq[rows[pure_syn]]
    starts = pure_syn[1:][isn[1:] != isn[:-1]]
    return [part for part in np.split(rows, starts) if len(part)]


def _flow(t: SegmentTable, rows: np.ndarray) -> Flow:
    flags = t.flags[rows]
    # The client is the SYN's sender (or the SYN-ACK's receiver); with neither in the capture, whoever speaks first.
    syn_at = np.nonzero((flags & (SYN | ACK)) == SYN)[0]
    synack_at = np.nonzero((flags & (SYN | ACK)) == (SYN | ACK))[0]
    if len(syn_at):
        i0, sender_is_client = rows[syn_at[0]], True
    elif len(synack_at):
        i0, sender_is_client = rows[synack_at[0]], False
    else:
        i0, sender_is_client = rows[0], True
    a = (t.addresses[t.src[i0]], int(t.sport[i0]))
    b = (t.addresses[t.dst[i0]], int(t.dport[i0]))
    client, server = (a, b) if sender_is_client else (b, a)
    plen, seq, ack, win = t.plen[rows], t.seq[rows], t.ack[rows], t.win[rows]
    sent_by_i0 = (t.src[rows] == t.src[i0]) & (t.sport[rows] == t.sport[i0])
    from_server = ~sent_by_i0 if sender_is_client else sent_by_i0
    m = len(rows)
    pos = np.arange(m)
    sides = (~from_server, from_server)
    is_syn = (flags & SYN) != 0
    has_ack = (flags & ACK) != 0
    synfin = (flags & (SYN | FIN)) != 0

    # Per side: ISN, unwrapped relative sequence, window scale.
    rel_seq = np.zeros(m, dtype=np.int64)
    isn, scale, syn_seen = [0, 0], [-1, -1], [False, False]
    for d, mine in enumerate(sides):
        idx = np.nonzero(mine)[0]
        if not len(idx):
            continue
        syns = idx[is_syn[idx]]
        isn[d] = int(seq[syns[0]]) if len(syns) else int(seq[idx[0]])
        syn_seen[d] = bool(len(syns))
        if len(syns):
            scale[d] = int(t.wscale[rows[syns[0]]])
        rel_seq[idx] = _unwrap((seq[idx] - isn[d]) % MOD)
    rel_ack = np.zeros(m, dtype=np.int64)
    for d, mine in enumerate(sides):
        idx = np.nonzero(mine & has_ack)[0]
        if len(idx):
            rel_ack[idx] = _unwrap((ack[idx] - isn[1 - d]) % MOD)
    # Window scale per side, as Wireshark does: a side's own SYN (or SYN-ACK) option sets its scale;
    # a SYN seen without the option means neither side scales. A side whose SYN is not in the capture
    # has an unknown scale (its windows are shown unscaled, and "window full" is not judged against it).
    no_scaling = bool(len(syn_at)) and int(t.wscale[rows[syn_at[0]]]) < 0
    shift_of = [0 if no_scaling else max(scale[d], 0) for d in (0, 1)]
    scale_known = [no_scaling or syn_seen[d] for d in (0, 1)]
    shift = np.where(from_server, shift_of[1], shift_of[0])
    window = np.where(is_syn, win, win << shift)

    rst = (flags & RST) != 0
    ack_only = has_ack & ((flags & (SYN | FIN | RST)) == 0)
    # Each side's last advertised window before a segment (RSTs advertise nothing), its last
    # acknowledgement, and the previous segment of the same side.
    last_win = [_last_before(mine & ~rst, window, pos) for mine in sides]
    last_ack = [_last_before(mine & has_ack, rel_ack, pos) for mine in sides]
    peer_win = np.where(from_server, last_win[0], last_win[1])
    own_win = np.where(from_server, last_win[1], last_win[0])
    peer_ack = np.where(from_server, last_ack[0], last_ack[1])
    prev_same = np.where(from_server, _prev_index(from_server, pos), _prev_index(~from_server, pos))
    prev_peer = np.where(from_server, _prev_index(~from_server, pos), _prev_index(from_server, pos))

    # SND.NXT before each segment: the running maximum of what the side sent before it. A probe at
    # SND.NXT - 1 never raises it; a byte pushed into a closed window (the RFC probe) must not either.
    pushed_into_zero = ack_only & (plen == 1) & (peer_win == 0)
    end = rel_seq + plen + synfin
    nxt_before = np.zeros(m, dtype=np.int64)
    nxt_time = np.full(m, -np.inf)  # when the segment that set SND.NXT was sent
    ts = t.ts[rows]
    for mine in sides:
        idx = np.nonzero(mine)[0]
        if len(idx):
            counted = np.where(pushed_into_zero[idx], 0, end[idx])
            running = np.maximum.accumulate(counted)
            nxt_before[idx[1:]] = running[:-1]
            raised = np.ones(len(idx), dtype=bool)
            raised[1:] = counted[1:] > running[:-1]
            setter = np.maximum.accumulate(np.where(raised, np.arange(len(idx)), -1))
            nxt_time[idx[1:]] = ts[idx[setter[:-1]]]

    probe = ack_only & (plen <= 1) & (nxt_before > 0) & (rel_seq == nxt_before - 1)
    rfc_probe = pushed_into_zero & (rel_seq == nxt_before)
    labels = np.zeros(m, dtype=np.int64)
    labels |= np.where(is_syn & ~has_ack, BIT[SYN_], 0)
    labels |= np.where(is_syn & has_ack, BIT[SYN_ACK], 0)
    labels |= np.where(rst, BIT[RST_], 0)
    labels |= np.where((flags & FIN) != 0, BIT[FIN_], 0)
    labels |= np.where(probe & (peer_win != 0), BIT[KEEPALIVE], 0)
    labels |= np.where((probe & (peer_win == 0)) | rfc_probe, BIT[ZERO_WINDOW_PROBE], 0)
    labels |= np.where(rfc_probe, BIT[RFC_ZERO_WINDOW_PROBE], 0)
    any_probe = probe | rfc_probe
    moves = ~any_probe & ((plen > 0) | synfin)
    # Old data (Wireshark's "not advanced": it starts below SND.NXT, except one byte back with more
    # behind it), or data the peer has already acknowledged.
    behind = (nxt_before > 0) & (rel_seq < nxt_before) & ~((plen > 1) & (rel_seq == nxt_before - 1))
    acked_already = (plen > 0) & (peer_ack > 0) & (rel_seq + plen <= peer_ack)
    # Old data soon after newer data is a segment reordered on the way, not sent twice (Wireshark's
    # out-of-order): within one handshake RTT of the segment that set SND.NXT, and not a fast
    # retransmission (the peer's duplicate ACKs ask for exactly it).
    peer_dupacks = np.where(from_server, *[_last_before(mine, _dupack_runs(t, rows, mine, rel_seq, window, nxt_before), pos)
                                           for mine in sides])
    peer_ack_time = np.where(from_server, *[_last_before(mine & has_ack, ts, pos) for mine in sides])
    fast = ((peer_dupacks >= FAST_RETRANSMIT_DUPACKS) & (peer_ack == rel_seq)
            & (ts - peer_ack_time < FAST_RETRANSMIT_WITHIN))
    reorder = _reorder_window(flags, ts)
    reordered = (moves & behind & ~acked_already & ~fast & (ts - nxt_time < reorder)
                 & (nxt_before != end))
    labels |= np.where(reordered, BIT[OUT_OF_ORDER], 0)
    labels |= np.where(moves & (behind | acked_already) & ~reordered, BIT[RETRANSMISSION], 0)
    labels |= np.where(moves & (plen > 0), BIT[DATA], 0)
    # The segment fills the window the peer last offered exactly (the sender must now wait). Known
    # only once the peer's SYN was seen, since the window's scale comes from it.
    peer_syn_seen = np.where(from_server, scale_known[0], scale_known[1])
    fills = (plen > 0) & ~(synfin | rst) & (peer_ack >= 0) & (peer_win >= 0) & (rel_seq + plen == peer_ack + peer_win)
    labels |= np.where(fills & peer_syn_seen, BIT[WINDOW_FULL], 0)

    # Bare ACKs: a window update (the window changed, nothing else did), else the answer to the
    # peer's last probe, else a plain ACK.
    bare = ack_only & (plen == 0) & ~any_probe
    has_prev = prev_same >= 0
    ps = np.where(has_prev, prev_same, 0)
    same_place = has_prev & (rel_seq == nxt_before) & (rel_ack == rel_ack[ps])
    update = bare & same_place & (window != 0) & (own_win >= 0) & (window != own_win)
    labels |= np.where(update, BIT[WINDOW_UPDATE], 0)
    pp = np.where(prev_peer >= 0, prev_peer, 0)
    after_peer_probe = (prev_peer >= 0) & any_probe[pp]
    answers = bare & ~update & after_peer_probe
    labels |= np.where(answers & (window == 0), BIT[ZERO_WINDOW_PROBE_ACK], 0)
    labels |= np.where(answers & (window != 0), BIT[KEEPALIVE_ACK], 0)
    labels |= np.where(bare & ~answers & ~update, BIT[PURE_ACK], 0)
    labels |= np.where((window == 0) & ~(synfin | rst), BIT[ZERO_WINDOW], 0)
    labels |= np.where((labels & BIT[RETRANSMISSION] != 0) & fast, BIT[FAST_RETRANSMISSION], 0)
    labels |= _timer_labels(t, rows, from_server, flags, ts, plen, rel_seq, rel_ack, labels, end, nxt_before, nxt_time,
                            peer_ack, float(reorder[-1]))
    return Flow(client, server, t, rows, from_server, rel_seq, rel_ack, window, labels)


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
      resend in the spell (no new acknowledgement between them) is an RTO retransmission;
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
    out = np.zeros(len(rows), dtype=np.int64)
    syn_only = (flags & (SYN | ACK)) == SYN
    resent = (labels & BIT[RETRANSMISSION]) != 0
    out |= np.where(syn_only & resent, BIT[SYN_RETRANSMISSION], 0)

    # Resends of data or FIN, by spell: one side, no new acknowledgement from the peer since.
    fast = (labels & BIT[FAST_RETRANSMISSION]) != 0
    candidates = np.flatnonzero(resent & ~syn_only & ~fast & ((flags & RST) == 0))
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
            out[k] |= BIT[RTO_RETRANSMISSION]

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


def _reorder_window(flags: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per segment, how soon after newer data old data counts as reordered: the first RTT (from the
    last SYN to the first ACK without SYN) once that ACK has gone by, else Wireshark's 3 ms."""
    window = np.full(len(ts), DEFAULT_REORDER_WINDOW)
    syns = np.flatnonzero((flags & (SYN | ACK)) == SYN)
    if not len(syns):
        return window
    acks = np.flatnonzero(((flags & (SYN | ACK)) == ACK) & (np.arange(len(ts)) > syns[0]))
    if len(acks):
        k = int(acks[0])
        last_syn = int(syns[syns < k][-1])
        window[k + 1:] = ts[k] - ts[last_syn]
    return window


def _dupack_runs(t: SegmentTable, rows: np.ndarray, mine: np.ndarray, rel_seq: np.ndarray, window: np.ndarray,
                 nxt_before: np.ndarray) -> np.ndarray:
    """For one side, after each of its segments, how many duplicate ACKs it has sent in a row for the
    same acknowledgement (Wireshark's dupacknum: no data, same window and ack, at SND.NXT)."""
    out = np.zeros(len(rows), dtype=np.int64)
    idx = np.flatnonzero(mine)
    if len(idx) < 2:
        return out
    flags, ack = t.flags[rows[idx]], t.ack[rows[idx]]
    plen, win, at_nxt = t.plen[rows[idx]], window[idx], rel_seq[idx] == nxt_before[idx]
    dup = np.zeros(len(idx), dtype=bool)
    dup[1:] = ((plen[1:] == 0) & (win[1:] != 0) & (win[1:] == win[:-1]) & (ack[1:] == ack[:-1])
               & ((flags[1:] & (SYN | FIN | RST)) == 0) & at_nxt[1:])
    new_ack = np.ones(len(idx), dtype=bool)
    new_ack[1:] = ack[1:] != ack[:-1]
    count = np.cumsum(dup)
    group_start = np.maximum.accumulate(np.where(new_ack, np.arange(len(idx)), 0))
    out[idx] = count - count[group_start]  # a new ack is never a duplicate, so its own count is not in it
    return out


def _unwrap(rel: np.ndarray) -> np.ndarray:
    """Relative sequence numbers past 2**32 keep growing (a flow can carry more than 4 GB)."""
    if len(rel) < 2:
        return rel
    step = np.diff(rel)
    step = (step + (MOD >> 1)) % MOD - (MOD >> 1)
    return np.concatenate([rel[:1], rel[0] + np.cumsum(step)])


def _prev_index(mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each position, the index of the last earlier position where mask holds, or -1."""
    marked = np.where(mask, pos, -1)
    running = np.maximum.accumulate(marked)
    out = np.full(len(pos), -1, dtype=np.int64)
    out[1:] = running[:-1]
    return out


def _last_before(mask: np.ndarray, values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each position, the value at the last earlier position where mask holds, or -1."""
    prev = _prev_index(mask, pos)
    return np.where(prev >= 0, values[np.maximum(prev, 0)], -1)
