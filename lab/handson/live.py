"""What `invoke watch` shows as it happens: the lab's capture told as events (a connection, the first
exchange, the peer gone silent, each keepalive probe with its time since the last received segment,
a zero window, window probes and their intervals, the window open again, a request nobody acknowledges
and its tail loss probe and RTO retransmissions, RST, FIN), and the kernel model's next expected event
beside them.

The same reading gives the lab server's page its live view of the wire (`wire`, in
docs/lab-server.md): the last connection's segments that matter, the model's next expected event
as wall-clock times, and the server's advertised window over time. The text `next` line is made
from that same expected event, so the two never disagree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..analysis import tcpflow as tf
from ..analysis.kernel_model import KeepaliveModel, PersistModel, RetransmitModel, SynRetryModel, syn_linear_timeouts

MAX_SEGMENTS = 500  # the wire's segments: the latest ones
MAX_WINDOW = 2000  # the wire's window points

# The kinds of segment the wire shows, and the label each one comes from. A segment with several labels
# takes the first: what it does to the connection (a resent SYN is still the handshake) before how it was sent.
KINDS = [
    ("rst", tf.RST_), ("syn-ack", tf.SYN_ACK), ("syn", tf.SYN_), ("fin", tf.FIN_),
    ("zero-window-probe", tf.ZERO_WINDOW_PROBE), ("keepalive", tf.KEEPALIVE), ("tail-loss-probe", tf.TAIL_LOSS_PROBE),
    ("rto-retransmission", tf.RTO_RETRANSMISSION), ("retransmission", tf.RETRANSMISSION), ("nagle-held", tf.NAGLE_HELD),
    ("data", tf.DATA), ("window-update", tf.WINDOW_UPDATE), ("keepalive-ack", tf.KEEPALIVE_ACK),
    ("zero-window", tf.ZERO_WINDOW), ("delayed-ack", tf.DELAYED_ACK),
]
MATTERS = sum(tf.BIT[label] for _, label in KINDS)
KEEPALIVE_PROBE, WINDOW_PROBE, ABORT = "keepalive", "window", "abort"
TAIL_PROBE, RTO_RESEND, SILENT_ABORT = "tail-loss-probe", "rto", "silent-abort"  # data in flight to a silent peer
SYN_AGAIN, CONNECT_FAILS = "syn", "connect-fails"  # a connect() nobody answers


@dataclass
class Told:
    ts: float  # wall clock, the capture's
    text: str


@dataclass(frozen=True)
class Expected:
    """The kernel model's next expected event. Times are seconds after `origin` (the last received
    segment for keepalive, the zero window for the persist timer, the lost request for the retransmission
    timer), computed as the text shows them."""

    event: str  # KEEPALIVE_PROBE, WINDOW_PROBE, ABORT, TAIL_PROBE, RTO_RESEND or SILENT_ABORT
    number: int  # which probe is due (1 = the first); 0 for the abort
    origin: float  # wall clock, the capture's
    nominal: float
    low: float
    high: float
    gap: float = 0.0  # the persist timer's nominal interval: after the last probe, or the zero window

    @property
    def what(self) -> str:
        return {KEEPALIVE_PROBE: f"keepalive probe {self.number}", WINDOW_PROBE: f"window probe {self.number}",
                ABORT: "abort (RST, ETIMEDOUT)", TAIL_PROBE: "tail loss probe", RTO_RESEND: f"RTO retransmission {self.number}",
                SILENT_ABORT: "abort (ETIMEDOUT, no RST)", SYN_AGAIN: f"SYN {self.number + 1} (resent {self.number})",
                CONNECT_FAILS: "connect() fails (ETIMEDOUT)"}[self.event]

    def text(self) -> str:
        """The `next` line `invoke watch` shows."""
        if self.event == WINDOW_PROBE:
            return (f"next window probe due {self.gap:.3f} s after the {'last probe' if self.number > 1 else 'zero window'}, "
                    f"at {self.nominal:.3f} s into the zero window (window {self.low:.3f}..{self.high:.3f})")
        if self.event in (TAIL_PROBE, RTO_RESEND, SILENT_ABORT):
            return f"{self.what} due at {self.nominal:.3f} s after the lost request (window {self.low:.3f}..{self.high:.3f})"
        if self.event in (SYN_AGAIN, CONNECT_FAILS):
            return f"{self.what} due at {self.nominal:.3f} s after the first SYN (window {self.low:.3f}..{self.high:.3f})"
        what = "next keepalive probe" if self.event == KEEPALIVE_PROBE else self.what
        return f"{what} due at {self.nominal:.2f} s after the last received segment, window {self.low:.3f}..{self.high:.3f}"

    def wall(self) -> dict[str, Any]:
        """The wire's `expect`: wall-clock times."""
        # To the microsecond, as the capture's own times are.
        return {"what": self.what, **{part: round(self.origin + getattr(self, part), 6) for part in ("nominal", "low", "high")}}


@dataclass
class Reading:
    """What one connection shows: its events, the model's next expected event, and the keepalive anchor."""

    told: list[Told]
    expected: Optional[Expected]
    anchor: Optional[float]  # the last segment the client received before its keepalive probes


def story(flows: list[tf.Flow], options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int],
          srtt: Optional[float] = None) -> tuple[list[Told], str]:
    """The events of every connection in the capture, in time order, and what the model expects next
    (for the last connection). options: the client's logged options; rto, srtt: its last logged RTO
    and smoothed RTT (s), from TCP_INFO."""
    told, last = _read_all(flows, options, rto, hz, srtt)
    return told, _next_text(last)


def view(flows: list[tf.Flow], options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int],
         window: bool = False, srtt: Optional[float] = None) -> dict[str, Any]:
    """The lab record's `live` (without `updated`): the events and the `next` line of `story`, and the
    wire of the last connection. window: a window exercise, whose wire shows the window even if it never closed."""
    told, last = _read_all(flows, options, rto, hz, srtt)
    return {"events": [[t.ts, t.text] for t in told], "next": _next_text(last),
            "wire": wire(flows[-1], last, window) if flows and last is not None else _no_wire()}


def _read_all(flows: list[tf.Flow], options: Optional[dict[str, Any]], rto: Optional[float],
              hz: Optional[int], srtt: Optional[float] = None) -> tuple[list[Told], Optional[Reading]]:
    told: list[Told] = []
    last = None
    for flow in flows:
        last = _flow(flow, options, rto, hz, srtt)
        told += last.told
    return sorted(told, key=lambda t: t.ts), last


def _next_text(reading: Optional[Reading]) -> str:
    return reading.expected.text() if reading is not None and reading.expected is not None else ""


def _flow(f: tf.Flow, options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int],
          srtt: Optional[float] = None) -> Reading:
    out: list[Told] = []
    name = f"{f.client[0]}:{f.client[1]} -> {f.server[0]}:{f.server[1]}"
    syn = f.first(tf.SYN_, tf.CLIENT)
    if syn is not None:
        synack = f.first(tf.SYN_ACK, tf.SERVER)
        out.append(Told(syn.ts, f"connection {name}: SYN" + (f", SYN-ACK {(synack.ts - syn.ts) * 1000:.3f} ms later" if synack else ", no SYN-ACK yet")))
        retries = len(f.where(tf.SYN_, tf.CLIENT)) - 1
        if retries and synack is None:
            out.append(Told(f.last(tf.SYN_, tf.CLIENT).ts, f"SYN sent again {retries} time(s): nothing answers {f.server[0]}:{f.server[1]}"))
    request = f.first(tf.DATA, tf.CLIENT)
    reply = f.first(tf.DATA, tf.SERVER, after=request.ts) if request else None
    if request is not None and reply is not None:
        out.append(Told(reply.ts, f"first exchange: {request.seg.plen} bytes from the client, {reply.seg.plen} back"))
    # Keepalive: each probe timed from the last segment the client had received before it.
    anchor = f.last(sender=tf.SERVER)
    probes = f.pick(tf.KEEPALIVE, tf.CLIENT, after=anchor.ts) if anchor else []
    for p in f.pick(tf.KEEPALIVE, tf.CLIENT, before=anchor.ts) if anchor else []:
        last = f.last(sender=tf.SERVER, before=p.ts)
        out.append(Told(p.ts, f"keepalive probe at {p.ts - last.ts:.3f} s after the last received segment" if last else "keepalive probe"))
    for ev in f.pick(tf.KEEPALIVE_ACK, tf.SERVER):
        out.append(Told(ev.ts, "the server answered the probe: it is alive, and the client's idle clock starts again"))
    if probes:
        out.append(Told(anchor.ts, "the server's last segment: from here on, nothing answers"))
    for k, p in enumerate(probes, 1):
        out.append(Told(p.ts, f"keepalive probe {k} unanswered, at {p.ts - anchor.ts:.3f} s after the last received segment"
                              + (f" ({p.ts - probes[k - 2].ts:.3f} s after the previous)" if k > 1 else "")))
    # The persist timer: zero window, probes, reopening.
    zero = f.first(tf.ZERO_WINDOW, tf.SERVER)
    wprobes = f.pick(tf.ZERO_WINDOW_PROBE, tf.CLIENT, after=zero.ts) if zero else []
    opened = _opened(f, zero)
    if zero is not None:
        out.append(Told(zero.ts, "zero window from the server: its receive buffer is full"))
        for k, p in enumerate(wprobes, 1):
            gap = p.ts - (wprobes[k - 2].ts if k > 1 else zero.ts)
            out.append(Told(p.ts, f"window probe {k}, {gap:.3f} s after the {'previous' if k > 1 else 'zero window'}"))
        if opened is not None:
            out.append(Told(opened.ts, f"window open again: {opened.window} bytes"))
    # Data nobody acknowledges: the tail loss probe and the RTO retransmissions, timed from the lost request.
    lost = _lost(f)
    tlps = f.pick(tf.TAIL_LOSS_PROBE, tf.CLIENT, after=lost.ts) if lost else []
    rtos = f.pick(tf.RTO_RETRANSMISSION, tf.CLIENT, after=lost.ts) if lost else []
    for p in tlps:
        out.append(Told(p.ts, f"tail loss probe: the request sent again {p.ts - lost.ts:.3f} s after it, nothing acknowledged it"))
    for k, p in enumerate(rtos, 1):
        before = rtos[k - 2] if k > 1 else (tlps[0] if tlps else lost)
        out.append(Told(p.ts, f"RTO retransmission {k}, {p.ts - lost.ts:.3f} s after the request ({p.ts - before.ts:.3f} s after the "
                              f"{'previous one' if k > 1 else 'probe' if tlps else 'request'})"))
    for ev in f.pick(tf.RST_):
        out.append(Told(ev.ts, f"RST from the {ev.sender}" + (f", {ev.ts - anchor.ts:.3f} s after the last received segment: the kernel gave up"
                                                              if anchor and ev.sender == tf.CLIENT and probes else "")))
    for ev in f.pick(tf.FIN_):
        out.append(Told(ev.ts, f"FIN from the {ev.sender}"))
    expected = _next_resend(lost, tlps, rtos, options, rto, srtt, hz) if lost is not None else None
    expected = expected or _next_syn(f, options, hz) or _next(f, anchor, probes, zero, opened, wprobes, options, rto, hz)
    # The anchor is where the keepalive clock runs from: shown once probes went out, or while the model awaits the first.
    counts_from_anchor = probes or (expected is not None and expected.event in (KEEPALIVE_PROBE, ABORT))
    return Reading(out, expected, anchor.ts if anchor is not None and counts_from_anchor else None)


def _lost(f: tf.Flow) -> Optional[tf.Event]:
    """The client's last new data, where the client resent it and the server has said nothing since."""
    lost = f.last(tf.DATA, tf.CLIENT, without=(tf.RETRANSMISSION, tf.OUT_OF_ORDER))
    if lost is None or f.first(sender=tf.SERVER, after=lost.ts) is not None or not len(f.where(tf.RETRANSMISSION, tf.CLIENT, after=lost.ts)):
        return None
    return lost


def _next_resend(lost: tf.Event, tlps: list[tf.Event], rtos: list[tf.Event], options: Optional[dict[str, Any]],
                 rto: Optional[float], srtt: Optional[float], hz: Optional[int]) -> Optional[Expected]:
    """The retransmission timer's next event, where the client logged what its kernel holds (tcp_retries2,
    TCP_USER_TIMEOUT and, from TCP_INFO, the RTO and SRTT): the probe, the next RTO retransmission, or the abort."""
    if not options or "retries2" not in options or rto is None:
        return None
    m = RetransmitModel(rto, srtt or 0.0, int(options["retries2"]), int(options.get("user_timeout") or 0), hz)
    if m.tlp and not tlps and not rtos:
        w = m.probe()
        return Expected(TAIL_PROBE, 1, lost.ts, w.nominal, w.low, w.high)
    k, last = len(rtos), (rtos[-1] if rtos else tlps[0] if tlps else lost)
    since = last.ts - lost.ts
    if k < max(m.retransmission_counts()):
        w = m.interval(m.intervals(k + 1 + (1 if m.tlp else 0))[-1])
        return Expected(RTO_RESEND, k + 1, lost.ts, since + w.nominal, since + w.low, since + w.high)
    if not rtos:
        return None
    w = m.abort(k, rtos[0].ts - lost.ts)
    return Expected(SILENT_ABORT, 0, lost.ts, w.nominal, w.low, w.high)


def _next_syn(f: tf.Flow, options: Optional[dict[str, Any]], hz: Optional[int]) -> Optional[Expected]:
    """The SYN timer's next event on a connect() nothing has answered, where the client logged what its
    kernel holds (tcp_syn_retries or TCP_SYNCNT, tcp_syn_linear_timeouts, TCP_USER_TIMEOUT)."""
    if not options or options.get("syn_retries") is None or len(f.where(sender=tf.SERVER)):
        return None
    syns = f.pick(tf.SYN_, tf.CLIENT)
    if not syns:
        return None
    retries = int(options.get("syncnt") or 0) or int(options["syn_retries"])
    m = SynRetryModel(retries, syn_linear_timeouts(options.get("syn_linear_timeouts")), int(options.get("user_timeout") or 0), hz)
    k, since = len(syns) - 1, syns[-1].ts - syns[0].ts
    if k < max(m.retransmission_counts()):
        w = m.interval(k + 1)
        return Expected(SYN_AGAIN, k + 1, syns[0].ts, since + w.nominal, since + w.low, since + w.high)
    w = m.failure(k)
    return Expected(CONNECT_FAILS, 0, syns[0].ts, w.nominal, w.low, w.high)


def _opened(f: tf.Flow, zero: Optional[tf.Event]) -> Optional[tf.Event]:
    """The server's first segment after the zero window that offers a window again."""
    if zero is None:
        return None
    after = f.where(sender=tf.SERVER, after=zero.ts)
    opens = after[f.window[after] > 0]
    return f.event(int(opens[0])) if len(opens) else None


def _next(f: tf.Flow, anchor: Optional[tf.Event], probes: list[tf.Event], zero: Optional[tf.Event], opened: Optional[tf.Event],
          wprobes: list[tf.Event], options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int]) -> Optional[Expected]:
    """The one place the model's next expected event is computed: `next` and the wire's `expect` both come from it."""
    if len(f.where(tf.RST_)) or len(f.where(tf.FIN_)):
        return None
    if zero is not None and opened is None:
        m = PersistModel(rto if rto is not None else 0.2, hz)
        k = len(wprobes)
        since = (wprobes[-1].ts if wprobes else zero.ts) - zero.ts
        w = m.interval(k)
        return Expected(WINDOW_PROBE, k + 1, zero.ts, since + w.nominal, since + w.low, since + w.high, gap=w.nominal)
    if not options or not options.get("keepalive") or anchor is None or not len(f.where(tf.DATA, tf.SERVER)):
        return None
    m = KeepaliveModel(float(options["keepidle"]), float(options["keepintvl"]), int(options["keepcnt"]), int(options.get("user_timeout") or 0), hz)
    n, counts = len(probes), m.probe_counts()
    first, gap = m.first_probe(), m.interval()
    # Each probe's timer is armed by the one before: the next is due one interval after the last one sent.
    since = probes[-1].ts - anchor.ts if probes else 0.0
    if n < max(counts):
        w = gap if probes else first
        return Expected(KEEPALIVE_PROBE, n + 1, anchor.ts, since + w.nominal, since + w.low, since + w.high)
    return Expected(ABORT, 0, anchor.ts, since + gap.nominal, since + gap.low, since + gap.high)


# --- the wire, for the lab server's page ---------------------------------------------------------------

def wire(f: tf.Flow, reading: Reading, window: bool = False) -> dict[str, Any]:
    """One connection's live view of the wire (docs/lab-server.md, `wire`), from its analysed columns.
    window: show the server's window even if it never closed (a window exercise)."""
    syns = f.where(tf.SYN_, tf.CLIENT)
    # Without its SYN in the capture, the connection's first segment is the timeline's zero.
    t0 = float(f.ts[syns[0]]) if len(syns) else float(f.ts[0]) if len(f) else None
    return {"t0": t0, "anchor": reading.anchor, "segments": segments(f),
            "expect": reading.expected.wall() if reading.expected is not None else None,
            "window": window_series(f) if window or len(f.where(tf.ZERO_WINDOW, tf.SERVER)) else []}


def _no_wire() -> dict[str, Any]:
    return {"t0": None, "anchor": None, "segments": [], "expect": None, "window": []}


def segments(f: tf.Flow, limit: int = MAX_SEGMENTS) -> list[dict[str, Any]]:
    """At most `limit` segments that matter, oldest first: {ts, from, kind, len, win, text}. Plain data
    gives way first (a reopened window floods the wire with it): every other segment that matters is
    kept, the latest first, and the room left goes to the latest data."""
    # One pass over the flow finds them; the kinds and the probes' numbers are worked out for those alone.
    pos = np.flatnonzero(f.labels & MATTERS)
    plain = (f.labels[pos] & MATTERS) == tf.BIT[tf.DATA]
    special = pos[~plain][-limit:]
    pos = np.union1d(special, pos[plain][len(pos[plain]) - (limit - len(special)):] if limit > len(special) else pos[:0])
    labels = f.labels[pos]
    kind = _kinds(labels)
    probe_no = _probe_numbers(f, pos)
    rows = zip(f.ts[pos].tolist(), f.from_server[pos].tolist(), kind.tolist(), f.plen[pos].tolist(),
               f.window[pos].tolist(), labels.tolist(), probe_no.tolist())
    return [{"ts": ts, "from": tf.SERVER if server else tf.CLIENT, "kind": KINDS[k][0], "len": n, "win": win,
             "text": _text(KINDS[k][0], n, win, bits, no)}
            for ts, server, k, n, win, bits, no in rows]


def _kinds(labels: np.ndarray) -> np.ndarray:
    """Per segment that matters, its index in KINDS."""
    return np.select([(labels & tf.BIT[label]) != 0 for _, label in KINDS], np.arange(len(KINDS)), -1)


def _probe_numbers(f: tf.Flow, pos: np.ndarray) -> np.ndarray:
    """For the segments at `pos`, each probe's number as the kernel counts it: keepalive probes and RTO
    retransmissions since the sender last received anything, window probes since the peer last offered a
    window; 0 for the rest."""
    rst = (f.labels & tf.BIT[tf.RST_]) != 0
    out = np.zeros(len(pos), dtype=np.int64)
    for label in (tf.KEEPALIVE, tf.ZERO_WINDOW_PROBE, tf.RTO_RETRANSMISSION):
        probe = (f.labels & tf.BIT[label]) != 0
        for side in (f.from_server, ~f.from_server):  # the side that probes; the other one answers
            peer = ~side & ~rst
            reset = peer & (f.window > 0) if label == tf.ZERO_WINDOW_PROBE else peer
            mine = probe & side
            at = mine[pos]
            out[at] = _count_since(np.flatnonzero(mine), np.flatnonzero(reset), pos[at])
    return out


def _count_since(marks: np.ndarray, resets: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each position in `at` (one of `marks`), how many `marks` there are since the last of `resets` before it, itself included."""
    k = np.searchsorted(resets, at)
    last = np.where(k > 0, resets[np.maximum(k - 1, 0)], -1)
    return np.searchsorted(marks, at, side="right") - np.searchsorted(marks, last, side="right")


def _text(kind: str, n: int, win: int, bits: int, number: int) -> str:
    if kind in ("syn", "syn-ack", "fin", "rst"):
        text = {"syn": "SYN", "syn-ack": "SYN-ACK", "fin": "FIN", "rst": "RST"}[kind]
        if bits & tf.BIT[tf.RETRANSMISSION]:
            text += " again"
        return text + (f" with {n} bytes" if n else "")
    if kind == "data":
        return f"{n} bytes" + (", out of order" if bits & tf.BIT[tf.OUT_OF_ORDER] else "") + (
            ", filling the window" if bits & tf.BIT[tf.WINDOW_FULL] else "")
    return {
        "keepalive": f"keepalive probe {number}",
        "keepalive-ack": "answers the keepalive probe",
        "zero-window-probe": f"window probe {number}",
        "zero-window": "zero window, answering the probe" if bits & tf.BIT[tf.ZERO_WINDOW_PROBE_ACK] else "zero window",
        "window-update": f"window update: {win} bytes",
        "retransmission": f"{n} bytes again",
        "tail-loss-probe": f"tail loss probe: {n} bytes again",
        "rto-retransmission": f"RTO retransmission {number}: {n} bytes again",
        "nagle-held": f"{n} bytes, held by Nagle until the ACK",
        "delayed-ack": "delayed ACK",
    }[kind]


def window_series(f: tf.Flow, limit: int = MAX_WINDOW) -> list[list[float]]:
    """The server's advertised window (bytes, scaled) over time, [[ts, window]], at most `limit` points."""
    pos = f.where(sender=tf.SERVER, without=(tf.RST_,))  # an RST offers no window
    ts, win = f.ts[pos], f.window[pos]
    keep = _thin(win, limit)
    return [[t, w] for t, w in zip(ts[keep].tolist(), win[keep].tolist())]


def _thin(win: np.ndarray, limit: int) -> np.ndarray:
    """Positions of at most `limit` points, every zero point among them (the latest, if they alone are more)."""
    n = len(win)
    if n <= limit:
        return np.arange(n)
    ends = np.zeros(n, dtype=bool)
    ends[[0, -1]] = True
    # A run of one value is drawn as well from its first and last points: those come before the rest.
    edges = ends.copy()
    edges[1:] |= win[1:] != win[:-1]
    edges[:-1] |= win[:-1] != win[1:]
    keep = np.zeros(n, dtype=bool)
    for tier, latest in (((win == 0) | ends, True), (edges, False), (np.ones(n, dtype=bool), False)):
        new = np.flatnonzero(tier & ~keep)
        room = limit - int(keep.sum())
        if room <= 0:
            break
        if len(new) <= room:
            keep[new] = True
            continue
        keep[new[-room:] if latest else new[np.linspace(0, len(new) - 1, room).astype(np.int64)]] = True
        break
    return np.flatnonzero(keep)
