"""What the timers did on one connection of anyone's capture, in words a person can act on, each finding
with the frames it rests on and what the kernel model (lab/analysis/kernel_model.py) says.

Read from the wire alone, with Linux's timers as the model: keepalive probes and the settings they
imply (KEEPIDLE, KEEPINTVL, KEEPCNT or a user timeout), zero windows and the persist timer's probes,
retransmission timeouts and their backoff, tail loss probes, fast retransmissions, SYN retries, and
how the connection ended. The machine's HZ is not known from a capture: every window is the widest
any HZ allows, unless the capture is a results folder's (its manifest records HZ and the kernel). Times are
from the capture's clock, wherever it was taken: each window is widened by the path's round trip.
"""
from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import kernel_model as km
from . import tcpflow as tf
from .connections import Connection
from .pcap import ACK, FIN, RST, SYN

KERNELS = ("host", "6.1", "6.12", "6.18")
# A gap this much larger than the one before is not the backoff's doubling (1.5 to 2.5 times is).
DOUBLING = (1.5, 2.5)
# A segment seen again this soon after it was first sent was not resent by any timer (Linux's shortest
# is the 200 ms RTO floor, a route's rto_min a few milliseconds at least): the capture saw it twice
# (a mirror port copying both directions, two interfaces, a capture on a bridge and its ports).
DUPLICATE_WITHIN = 0.001
# Linux's shortest TCP_KEEPIDLE is 1 s: a segment of keep-alive's form sooner after the last one
# received was not sent by the keepalive timer (Wireshark still calls it keep-alive).
KEEPALIVE_AT_LEAST = 0.9


@dataclass
class Finding:
    kind: str  # syn_retries, keepalive, zero_window, retransmission, fast_retransmission, losses, end
    side: str  # who the timer belongs to: client or server
    text: str  # one line, the reading
    frames: list[int]  # the frames it rests on
    model: str = ""  # what the kernel model says, where it says something
    settings: dict = field(default_factory=dict)  # the settings the finding implies (JSON)
    comments: dict = field(default_factory=dict)  # frame -> a packet comment for --annotate

    def to_dict(self) -> dict:
        return {"kind": self.kind, "side": self.side, "text": self.text, "frames": self.frames,
                "model": self.model, "settings": self.settings}


def kernel_version(kernel: str) -> tuple[int, int]:
    """(major, minor) of --kernel: host is this machine's running kernel; a release ("6.1.0-28-amd64") its version."""
    if kernel == "host":
        return km.release_version(platform.release()) or (6, 1)
    return km.release_version(kernel) or (6, 1)


def findings(conn: Connection, kernel: str = "host", capture_end: Optional[float] = None,
             hz: Optional[int] = None) -> list[Finding]:
    """Every finding on one connection, in the order things happened. `hz`: the sender's HZ where known
    (a results folder records it), else every window is the widest any HZ allows."""
    version = kernel_version(kernel)
    view = _View(conn, hz)
    out: list[Finding] = []
    for side in (tf.CLIENT, tf.SERVER):
        out += _syn_retries(view, side, version)
        out += _keepalive(view, side)
        out += _zero_window(view, side)
        out += _retransmissions(view, side, capture_end)
        out += _losses(view, side)
    out += _duplicates(view)
    out += _end(view, capture_end)
    return sorted(out, key=lambda f: f.frames[0] if f.frames else 1 << 62)


class _View:
    """A connection's kept segments as columns, with the timer labels worked out (tcpflow.resend_timers)."""

    def __init__(self, conn: Connection, hz: Optional[int] = None):
        r = conn.rows
        self.hz = hz
        self.conn = conn
        self.frame, self.ts, self.flags, self.plen = r["index"], r["ts"], r["flags"], r["plen"]
        self.server = r["from_server"].astype(bool)
        self.peer_ts, self.window = r["peer_ts"], r["window"]
        end = r["rel_seq"] + r["plen"] + ((r["flags"] & (SYN | FIN)) != 0)
        resent = (r["labels"] & tf.BIT[tf.RETRANSMISSION]) != 0
        self.duplicate = resent & (r["ts"] - r["nxt_time"] < DUPLICATE_WITHIN) & (end == r["nxt_before"])
        # ... or a resend seen twice: the same segment as the side's kept row before it, as soon
        for side in (False, True):
            mine = np.flatnonzero(self.server == side)
            if len(mine) > 1:
                a, b = mine[:-1], mine[1:]
                same = ((r["rel_seq"][a] == r["rel_seq"][b]) & (r["plen"][a] == r["plen"][b]) & (r["flags"][a] == r["flags"][b])
                        & (r["ts"][b] - r["ts"][a] < DUPLICATE_WITHIN))
                self.duplicate[b[same & resent[b]]] = True
        labels = np.where(self.duplicate, r["labels"] & ~tf.BIT[tf.RETRANSMISSION], r["labels"])
        self.labels = labels | tf.resend_timers(self.server, r["flags"], labels, r["ts"], r["rel_seq"], end,
                                                r["nxt_before"], r["nxt_time"], r["peer_ack"])
        for name, bit in tf.WIRESHARK_ONLY.items():
            self.labels |= np.where(r["ws"] & bit, tf.BIT[name], 0)
        self.t0 = conn.summary["first_ts"]
        self.rtt = conn.summary["first_rtt"] or 0.0

    def pick(self, label: str, side: Optional[str] = None) -> np.ndarray:
        m = ((self.labels & tf.BIT[label]) != 0) & ~self.duplicate
        if side is not None:
            m &= self.server == (side == tf.SERVER)
        return np.flatnonzero(m)

    def frames(self, ks) -> list[int]:
        return [int(self.frame[k]) for k in ks]

    def at(self, k: int) -> str:
        return f"{self.ts[k] - self.t0:.3f} s"


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def _s(values, digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _holds(window: km.Window, measured: float, rtt: float) -> bool:
    """The model's window, widened by the path's round trip either way: a capture taken away from the
    sender sees its segments, and those it answers, up to a round trip off the sender's own clock."""
    return window.low - rtt <= measured <= window.high + rtt


def _doubled(measured: float, factor: int, hz: Optional[int]) -> km.Window:
    """A timer `factor` times one measured at `measured`: that one's nominal was up to its lateness
    shorter, so this one's is too, and this one may fire late by its own."""
    low = factor * (measured - km.timer_lateness(measured, hz))
    high = min(factor * measured, km.TCP_RTO_MAX)
    return km.Window(min(factor * measured, km.TCP_RTO_MAX), min(low, km.TCP_RTO_MAX) - 0.001, high + km.timer_lateness(high, hz) + 0.001)


def _model(w: km.Window, rtt: float) -> str:
    """A window for a packet comment, widened by the path's round trip as _holds does."""
    return f"model {w.low - rtt:.3f}..{w.high + rtt:.3f} s"


def _whole_seconds(measured: float, window_of, rtt: float) -> Optional[int]:
    """The whole-second setting whose model window holds the measured time (keepalive's are whole
    seconds); of several, the largest: a timer fires late, never early."""
    for guess in range(math.ceil(measured), max(1, math.floor(measured * 0.9)) - 1, -1):
        if _holds(window_of(guess), measured, rtt):
            return guess
    return None


def _syn_retries(v: _View, side: str, version: tuple[int, int]) -> list[Finding]:
    label = tf.SYN_ if side == tf.CLIENT else tf.SYN_ACK
    syns = v.pick(label, side)
    if len(syns) < 2:
        return []
    times = [float(v.ts[k] - v.ts[syns[0]]) for k in syns]
    resends = len(syns) - 1
    linear = 4 if version >= (6, 5) else 0
    # the tcp_syn_retries (or TCP_SYNCNT) values whose connect() resends this many SYNs before it fails
    fitting = [r for r in range(1, 16) if km.SynRetryModel(r, linear, 0, v.hz).outcome()[0] == resends]
    model = km.SynRetryModel(fitting[0] if fitting else max(resends - linear, 1), linear, 0, v.hz)
    expected = [t for t in (model.rto(k) for k in range(1, resends + 1))]
    expected = list(np.cumsum(expected))
    gaps = _gaps(times)

    def schedule_fits(lin: int) -> bool:
        m = km.SynRetryModel(model.syn_retries, lin, 0, v.hz)
        return all(_holds(m.interval(k + 1), g, v.rtt) for k, g in enumerate(gaps))

    fits = schedule_fits(linear) if side == tf.CLIENT else True
    other = 0 if linear else 4
    other_fits = side == tf.CLIENT and not fits and schedule_fits(other)
    what = "SYN" if side == tf.CLIENT else "SYN-ACK"
    answered = len(v.pick(tf.SYN_ACK if side == tf.CLIENT else tf.PURE_ACK, tf.SERVER if side == tf.CLIENT else tf.CLIENT))
    text = (f"{what} sent {len(syns)} times: resent {_s(times[1:], 2)} s after the first"
            + ("" if side == tf.SERVER else (", answered" if answered else ", never answered")))
    comments = {int(v.frame[k]): f"{what} retransmission {i} of {resends}, {times[i]:.3f} s after the first"
                + (f", {gaps[i - 1]:.3f} s after the one before; {_model(model.interval(i), v.rtt)}" if side == tf.CLIENT else "")
                for i, k in enumerate(syns[1:], start=1)}
    modeltext = ""
    settings = {"resends": resends, "times": times, "fits_linux": fits or other_fits, "fits_kernel": fits}
    if side == tf.CLIENT:
        kernel = f"Linux {version[0]}.{version[1]}"
        modeltext = (f"{kernel}: resends at {_s(expected, 0)} s (the SYN timer starts at 1 s"
                     + (f", stays there for {linear} resends" if linear else "") + ", then doubles)"
                     + ("" if fits else "; these gaps fit Linux " + ("before 6.5 (doubling from 1 s)" if other == 0 else
                                                                      "6.5 and later (4 linear timeouts)") if other_fits
                        else "; these gaps fit no Linux schedule: another stack, or a BPF program setting the SYN's RTO"))
        if not answered and fitting:
            fail = model.failure()
            settings["tcp_syn_retries"] = fitting
            modeltext += (f"; {resends} resends and no answer: tcp_syn_retries (or TCP_SYNCNT) "
                          f"{' or '.join(map(str, fitting))}, connect() failing {fail.low:.2f}..{fail.high:.2f} s after the first SYN "
                          "(ETIMEDOUT, nothing on the wire)")
    return [Finding("syn_retries", side, text, v.frames(syns), modeltext, settings, comments)]


def _keepalive(v: _View, side: str) -> list[Finding]:
    probes = v.pick(tf.KEEPALIVE, side)
    probes = probes[(v.peer_ts[probes] == 0) | (v.ts[probes] - v.peer_ts[probes] >= KEEPALIVE_AT_LEAST)]
    if not len(probes):
        return []
    # Runs: probes with the same last segment from the peer before them (none answered in between).
    runs: list[list[int]] = []
    for k in probes.tolist():
        if runs and v.peer_ts[k] == v.peer_ts[runs[-1][0]]:
            runs[-1].append(k)
        else:
            runs.append([k])
    idle = [float(v.ts[r[0]] - v.peer_ts[r[0]]) for r in runs if v.peer_ts[r[0]] > 0]
    spacing = [g for r in runs for g in _gaps([float(v.ts[k]) for k in r])]
    keepidle = _whole_seconds(min(idle), lambda t: km.KeepaliveModel(t, 1, 1, 0, v.hz).first_probe(), v.rtt) if idle else None
    keepintvl = (_whole_seconds(float(np.median(spacing)), lambda i: km.KeepaliveModel(1, i, 1, 0, v.hz).interval(), v.rtt)
                 if spacing else None)
    # answered: the peer's next segment after the probe is its keep-alive ACK
    peer_rows = np.flatnonzero(v.server != (side == tf.SERVER))
    answered = 0
    for k in probes.tolist():
        after = peer_rows[peer_rows > k]
        answered += bool(len(after)) and bool(v.labels[after[0]] & tf.BIT[tf.KEEPALIVE_ACK])
    last = runs[-1]
    rst = [k for k in np.flatnonzero((v.flags & RST) != 0).tolist()
           if bool(v.server[k]) == (side == tf.SERVER) and v.ts[k] > v.ts[last[-1]] and v.peer_ts[k] == v.peer_ts[last[0]]]
    settings: dict = {"probes": len(probes), "answered": answered}
    parts = [f"{len(probes)} keepalive probe{'s' if len(probes) != 1 else ''} from the {side}"
             + (f", {answered} answered" if answered else ", none answered")]
    if idle:
        when = f"{idle[0]:.3f} s" if len(idle) == 1 or max(idle) - min(idle) < 0.0005 else f"{min(idle):.3f}..{max(idle):.3f} s"
        lead = ("the first" if len(idle) == 1 else "each" if all(len(r) == 1 for r in runs)
                else f"the first of each of {len(runs)} runs")
        nearest = round(min(idle))
        early = nearest - min(idle)
        if nearest >= 1 and 0 < early < 0.05 and keepidle != nearest:
            # a whole second just missed, early: Linux's timer never fires early, another stack's may
            keepidle = None
            note = (f" (about {nearest} s, {early * 1000:.0f} ms early for Linux's keepalive timer, which never fires "
                    "early: another stack's timer)")
        elif keepidle:
            note = f" (KEEPIDLE {keepidle} s)"
        else:
            note = " (no whole-second KEEPIDLE fits: not Linux's keepalive timer?)"
        parts.append(f"{lead} {when} after the last segment received" + note)
        settings["idle"] = idle[0]
        if keepidle:
            settings["keepidle"] = keepidle
    if spacing:
        parts.append(f"unanswered ones {_s(spacing[:6])} s apart" + (f" (KEEPINTVL {keepintvl} s)" if keepintvl else ""))
        settings["intervals"] = spacing
        if keepintvl:
            settings["keepintvl"] = keepintvl
    model = ""
    if rst:
        after = float(v.ts[rst[0]] - v.peer_ts[last[0]])
        parts.append(f"then a RST {after:.3f} s after the last segment received: keepalive gave up after {len(last)} "
                     f"unanswered probe{'s' if len(last) != 1 else ''}")
        settings["abort"] = after
        if keepidle and keepintvl:
            m = km.KeepaliveModel(keepidle, keepintvl, len(last), 0, v.hz)
            w = m.abort(len(last))
            if _holds(w, after, v.rtt):
                settings["keepcnt"] = len(last)
                model = f"KEEPCNT {len(last)}: abort {w.low:.3f}..{w.high:.3f} s after the last segment received"
            else:
                u = round(after * 1000)
                settings["user_timeout_ms"] = u
                model = (f"not KEEPCNT's abort ({w.low:.3f}..{w.high:.3f} s): a user timeout (TCP_USER_TIMEOUT) "
                         f"of about {u} ms ended it")
    if keepidle and keepintvl and not model:
        m = km.KeepaliveModel(keepidle, keepintvl, max(len(last), 1), 0, v.hz)
        model = (f"first probe {m.first_probe().low:.3f}..{m.first_probe().high:.3f} s after the last segment received, "
                 f"each next {m.interval().low:.3f}..{m.interval().high:.3f} s after the one before")
    comments = {}
    for r in runs:
        for i, k in enumerate(r):
            since = (f"{v.ts[k] - v.peer_ts[k]:.3f} s after the last segment received" if i == 0
                     else f"{v.ts[k] - v.ts[r[i - 1]]:.3f} s after probe {i}")
            setting = keepidle if i == 0 else keepintvl
            if setting:
                m = km.KeepaliveModel(keepidle or 1, keepintvl or 1, len(r), 0, v.hz)
                since += f"; {_model(m.first_probe() if i == 0 else m.interval(), v.rtt)}"
            comments[int(v.frame[k])] = f"keepalive probe {i + 1} of {len(r)}, {since}"
    for k in rst:
        comments[int(v.frame[k])] = f"keepalive abort: RST after {len(last)} unanswered probes"
    return [Finding("keepalive", side, "; ".join(parts), v.frames(probes.tolist() + rst), model, settings, comments)]


def _zero_window(v: _View, side: str) -> list[Finding]:
    """Zero windows the `side` advertised, and the other side's probes while it stayed closed."""
    prober = tf.SERVER if side == tf.CLIENT else tf.CLIENT
    zero = v.pick(tf.ZERO_WINDOW, side)
    if not len(zero):
        return []
    reopen = [k for k in np.flatnonzero((v.window > 0) & ~v.server if side == tf.CLIENT else (v.window > 0) & v.server).tolist()
              if (v.flags[k] & (SYN | RST)) == 0]
    probes = v.pick(tf.ZERO_WINDOW_PROBE, prober)
    out = []
    start = int(zero[0])
    while start is not None:
        ends = [k for k in reopen if v.ts[k] > v.ts[start]]
        end = ends[0] if ends else None
        inside = [k for k in probes.tolist() if v.ts[k] > v.ts[start] and (end is None or v.ts[k] < v.ts[end])]
        times = [float(v.ts[start])] + [float(v.ts[k]) for k in inside]
        gaps = _gaps(times)
        closed = (float(v.ts[end]) if end is not None else float(v.ts[-1])) - float(v.ts[start])
        text = (f"zero window from the {side} at {v.at(start)}, "
                + (f"reopened {closed:.3f} s later (frame {int(v.frame[end])})" if end is not None else "still closed at the capture's end")
                + (f"; {len(inside)} zero-window probe{'s' if len(inside) != 1 else ''} from the {prober}, "
                   f"{_s(gaps[:8])} s apart" if inside else f"; no probe from the {prober}"))
        settings: dict = {"closed_for": closed, "probes": len(inside), "intervals": gaps}
        model = ""
        if len(gaps) >= 2:
            doubling = all(DOUBLING[0] <= b / a <= DOUBLING[1] for a, b in zip(gaps, gaps[1:]) if a > 0 and b < km.TCP_RTO_MAX * 0.99)
            base = gaps[0]
            settings["doubling"] = doubling
            model = (f"the persist timer: first probe one RTO after the window closed ({base:.3f} s here), each interval "
                     f"twice the one before, at most {km.TCP_RTO_MAX:g} s" + ("" if doubling else "; these intervals do not double"))
        comments = {int(v.frame[start]): f"zero window: the {side}'s receive buffer is full"}
        for i, k in enumerate(inside):
            comments[int(v.frame[k])] = (f"zero-window probe {i + 1} of {len(inside)}, {gaps[i]:.3f} s after "
                                         + ("the zero window" if i == 0 else f"probe {i}; "
                                            + _model(_doubled(gaps[0], 1 << i, v.hz), v.rtt)
                                            + f" (the persist timer doubling from {gaps[0]:.3f} s)"))
        if end is not None:
            comments[int(v.frame[end])] = f"window reopened after {closed:.3f} s closed"
        out.append(Finding("zero_window", side, text, [int(v.frame[start])] + v.frames(inside) + ([int(v.frame[end])] if end is not None else []),
                           model, settings, comments))
        later = [int(k) for k in zero if end is not None and v.ts[k] > v.ts[end]]
        start = later[0] if later else None
        if len(out) >= 20:  # a connection that closes its window all the time: its first twenty say it
            break
    return out


def _retransmissions(v: _View, side: str, capture_end: Optional[float]) -> list[Finding]:
    """Timeout-driven resends by spell (no new acknowledgement in between): a tail loss probe, RTO
    retransmissions doubling from the RTO, and, where the sender went quiet, when it gave up."""
    timed = np.flatnonzero(((v.labels & (tf.BIT[tf.TAIL_LOSS_PROBE] | tf.BIT[tf.RTO_RETRANSMISSION])) != 0)
                           & (v.server == (side == tf.SERVER)))
    if not len(timed):
        return []
    spells: list[list[int]] = []
    acked = v.conn.rows["peer_ack"]
    for k in timed.tolist():
        if spells and acked[k] == acked[spells[-1][0]]:
            spells[-1].append(k)
        else:
            spells.append([k])
    out = []
    for spell in spells[:20]:
        first = spell[0]
        sent = float(v.conn.rows["nxt_time"][first])
        tlp = bool(v.labels[first] & tf.BIT[tf.TAIL_LOSS_PROBE])
        rto = spell[1:] if tlp else spell
        recovery = [k for k in np.flatnonzero((v.labels & tf.BIT[tf.RETRANSMISSION]) != 0).tolist()
                    if bool(v.server[k]) == (side == tf.SERVER) and acked[k] == acked[first] and k not in spell]
        times = [float(v.ts[k]) for k in spell]
        gaps = _gaps([sent] + times)
        parts = []
        if tlp:
            parts.append(f"a tail loss probe {gaps[0]:.3f} s after the last send"
                         + (" (sooner than Linux's 10 ms floor for one: not its probe timer)" if gaps[0] < 0.010 else ""))
        rto_gaps = gaps[1:] if tlp else gaps
        if rto:
            since = "the probe" if tlp else "the last send"
            parts.append(f"1 RTO retransmission, {rto_gaps[0]:.3f} s after {since}" if len(rto) == 1 else
                         f"{len(rto)} RTO retransmissions: the first {rto_gaps[0]:.3f} s after {since}, then {_s(rto_gaps[1:10])} s apart")
            doubles = len(rto_gaps) < 2 or all(DOUBLING[0] <= b / a <= DOUBLING[1] for a, b in zip(rto_gaps, rto_gaps[1:])
                                                if a > 0 and b < km.TCP_RTO_MAX * 0.99)
            if rto_gaps[0] < km.TCP_RTO_MIN - v.rtt - 0.002:
                parts[-1] += (f" ({rto_gaps[0] * 1000:.0f} ms: sooner than Linux's 200 ms RTO floor; another stack's timer, "
                              "a route's lowered rto_min, or no timer at all)")
            else:
                parts[-1] += f" (an RTO of {rto_gaps[0] * 1000:.0f} ms" + (", doubling" if len(rto) > 1 and doubles else "") + ")"
        settings: dict = {"tail_loss_probe": tlp, "rto_retransmissions": len(rto), "intervals": gaps}
        if rto:
            settings["rto"] = rto_gaps[0]
        model = ""
        if len(rto_gaps) >= 2:
            doubling = all(DOUBLING[0] <= b / a <= DOUBLING[1] for a, b in zip(rto_gaps, rto_gaps[1:]) if a > 0 and b < km.TCP_RTO_MAX * 0.99)
            model = ("the retransmission timer: each RTO twice the one before, at most 120 s"
                     + ("" if doubling else "; these intervals do not double"))
        if recovery:
            parts.append(f"{len(recovery)} more segment{'s' if len(recovery) != 1 else ''} resent with "
                         + ("it" if len(spell) == 1 else "them") + " (slow start after the timeout)")
        ended = _gave_up(v, spell, rto, rto_gaps, capture_end)
        if ended:
            parts.append(ended[0])
            model = (model + "; " if model else "") + ended[1]
            settings.update(ended[2])
        else:
            after = [k for k in range(spell[-1] + 1, len(v.ts)) if bool(v.server[k]) != (side == tf.SERVER)]
            parts.append("then acknowledged" if after else "")
        comments = {}
        for i, k in enumerate(spell):
            if tlp and i == 0:
                comments[int(v.frame[k])] = f"tail loss probe, {gaps[0]:.3f} s after the last send"
            else:
                n = i if tlp else i + 1
                comments[int(v.frame[k])] = f"RTO retransmission {n} of {len(rto)}, {gaps[i]:.3f} s after the " + (
                    "last send" if i == 0 else "probe" if (tlp and i == 1) else "one before")
                if n >= 2:  # each expiry twice the one before it
                    comments[int(v.frame[k])] += "; " + _model(_doubled(gaps[i - 1], 2, v.hz), v.rtt)
        timed_out = bool(rto_gaps) and rto_gaps[0] >= km.TCP_RTO_MIN - v.rtt - 0.002
        out.append(Finding("retransmission", side, f"the {side} resent " + ("after a timeout: " if timed_out else "unacknowledged data: ")
                           + "; ".join(p for p in parts if p),
                           v.frames(spell), model, settings, comments))
    return out


def _gave_up(v: _View, spell: list[int], rto: list[int], rto_gaps: list[float],
             capture_end: Optional[float]) -> Optional[tuple[str, str, dict]]:
    """Where the sender went quiet after its last RTO retransmission while the capture ran on past the
    next expiry: it gave up there (ETIMEDOUT, no RST on the wire). Which tcp_retries2 fits."""
    if len(rto) < 2 or capture_end is None:
        return None
    last = spell[-1]
    side_is_server = bool(v.server[last])
    if any(bool(v.server[k]) == side_is_server for k in range(last + 1, len(v.ts))):
        return None  # it sent more after: not given up
    next_gap = min(2 * rto_gaps[-1], km.TCP_RTO_MAX)
    first_rto = float(v.ts[rto[0]])
    if capture_end - float(v.ts[last]) < next_gap * 1.05:
        return None  # the capture ended before the next retransmission was due
    abort = float(v.ts[last]) + next_gap - first_rto
    sent = float(v.ts[last]) - first_rto
    fits = [r for r in range(1, 31) if sent < km.backoff_boundary(r, km.TCP_RTO_MIN) <= abort + 1e-6]
    text = (f"no retransmission after the last one, though the capture ran {capture_end - float(v.ts[last]):.1f} s on: "
            f"the {('server' if side_is_server else 'client')} gave up about {abort:.1f} s after the first RTO retransmission")
    settings = {"gave_up_after_first_rto": abort}
    if fits:
        settings["tcp_retries2"] = fits
        model = (f"tcp_retries2={' or '.join(map(str, fits))} with a 200 ms RTO floor aborts "
                 f"{km.backoff_boundary(fits[0], km.TCP_RTO_MIN):.1f} s after the first RTO retransmission "
                 "(ETIMEDOUT, no RST); or a TCP_USER_TIMEOUT of about that")
    else:
        model = "no tcp_retries2 fits: a TCP_USER_TIMEOUT, or the application closed"
    return text, model, settings


def _losses(v: _View, side: str) -> list[Finding]:
    """Fast retransmissions, spurious ones, and what the capture itself missed."""
    fast = v.pick(tf.FAST_RETRANSMISSION, side)
    spurious = v.pick(tf.SPURIOUS_RETRANSMISSION, side)
    lost = v.pick(tf.LOST_SEGMENT, side)
    dup = v.conn.summary["server" if side == tf.CLIENT else "client"]["duplicate_acks"]
    out = []
    if len(fast):
        out.append(Finding("fast_retransmission", side,
                           f"{len(fast)} fast retransmission{'s' if len(fast) != 1 else ''} from the {side}, each after duplicate ACKs",
                           v.frames(fast[:50]), "fast retransmit: three duplicate ACKs (or SACK) resend at once, no timer",
                           {"count": len(fast)}, {int(v.frame[k]): "fast retransmission, after duplicate ACKs" for k in fast}))
    if len(spurious):
        out.append(Finding("spurious_retransmission", side,
                           f"{len(spurious)} spurious retransmission{'s' if len(spurious) != 1 else ''} from the {side}: "
                           "data the peer had already acknowledged (a timer too short for the path, or ACKs lost)",
                           v.frames(spurious[:50]), "", {"count": len(spurious)},
                           {int(v.frame[k]): "spurious retransmission: already acknowledged" for k in spurious}))
    if len(lost):
        out.append(Finding("losses", side,
                           f"{len(lost)} gap{'s' if len(lost) != 1 else ''} in the {side}'s sequence numbers: segments "
                           "this capture did not see (lost before the capture point, or dropped by the capture)",
                           v.frames(lost[:50]), "", {"gaps": len(lost), "duplicate_acks_from_peer": dup}))
    return out


def _duplicates(v: _View) -> list[Finding]:
    dup = np.flatnonzero(v.duplicate)
    if not len(dup):
        return []
    return [Finding("duplicates", "capture", f"{len(dup)} frame{'s' if len(dup) != 1 else ''} repeat a segment less than "
                    f"{DUPLICATE_WITHIN * 1000:g} ms after it was sent: the capture saw them twice (a mirror port, two "
                    "interfaces), no timer resent them; Wireshark calls them retransmissions",
                    v.frames(dup[:50]), "", {"count": len(dup)},
                    {int(v.frame[k]): "the same segment captured twice, not resent by a timer" for k in dup})]


def _end(v: _View, capture_end: Optional[float]) -> list[Finding]:
    """How the connection ended: FIN (who first), RST (who, after what), or silence."""
    s = v.conn.summary
    fins = np.flatnonzero((v.flags & FIN) != 0)
    rsts = np.flatnonzero((v.flags & RST) != 0)
    if len(rsts):
        k = int(rsts[0])
        who = tf.SERVER if v.server[k] else tf.CLIENT
        # the RST sender's own segments since the peer's last one: its unanswered probes or resends, if any
        peer = np.flatnonzero(v.server[:k] != v.server[k])
        since = np.arange((int(peer[-1]) + 1) if len(peer) else 0, k)
        own = v.labels[since[v.server[since] == v.server[k]]]
        answered_syn = (v.flags[k] & ACK) and len(np.flatnonzero((v.labels[:k] & tf.BIT[tf.SYN_ACK]) != 0)) == 0 \
            and len(np.flatnonzero((v.labels[:k] & tf.BIT[tf.SYN_]) != 0)) > 0
        peer_frame, peer_ts = int(v.conn.rows["peer_frame"][k]), float(v.peer_ts[k])
        at = int(np.searchsorted(v.frame, peer_frame))
        peer_kept = at < len(v.frame) and int(v.frame[at]) == peer_frame  # the peer's last segment, if it was flagged
        if answered_syn:
            why = "to the SYN: nothing listens on that port (connection refused)"
        elif peer_frame and not (v.flags[k] & ACK) and 0 <= v.ts[k] - peer_ts < 0.1:
            # Linux answers a segment for a connection it has no socket for with a bare RST (seq = the
            # segment's ACK, no ACK bit: tcp_v4_send_reset); an application's abort sends RST+ACK.
            what = "keepalive probe" if peer_kept and v.labels[at] & tf.BIT[tf.KEEPALIVE] else "segment"
            why = (f"in answer to the {'client' if who == tf.SERVER else 'server'}'s {what} (frame {peer_frame}): "
                   f"the {who} has no socket for this connection any more (half-open: it rebooted, or forgot it)")
        elif (own & tf.BIT[tf.KEEPALIVE]).any():
            why = "after its unanswered keepalive probes: keepalive gave up"
        elif (own & (tf.BIT[tf.RTO_RETRANSMISSION] | tf.BIT[tf.TAIL_LOSS_PROBE])).any():
            why = ("after its unanswered retransmissions (on Linux an application's abort: Linux's own timeout sends no RST; "
                   "Windows resets when it gives up)")
        elif len(fins) and fins[0] < k:
            why = "after a FIN (data arrived after close, or linger 0)"
        else:
            why = "with no timer before it (an application's abort: SO_LINGER 0, a process killed, or a firewall)"
        text = f"reset by the {who} at {v.at(k)}, {why}"
        return [Finding("end", who, text, [int(v.frame[k])], "", {"how": "rst", "by": who},
                        {int(v.frame[k]): f"RST from the {who}: {why}"})]
    if len(v.pick(tf.SYN_)) and not len(v.pick(tf.SYN_ACK)):
        syns = v.pick(tf.SYN_)
        return [Finding("end", tf.CLIENT, f"never established: no answer to {len(syns)} SYN{'s' if len(syns) != 1 else ''}",
                        v.frames(syns[-1:]), "", {"how": "unanswered"})]
    if len(fins):
        k = int(fins[0])
        who = tf.SERVER if v.server[k] else tf.CLIENT
        both = len({bool(v.server[j]) for j in fins}) == 2
        text = f"closed by the {who} (FIN at {v.at(k)})" + (", the other side's FIN followed" if both else ", the other side never sent its FIN")
        return [Finding("end", who, text, v.frames(fins[:4]), "", {"how": "fin", "by": who})]
    quiet = (capture_end - s["last_ts"]) if capture_end is not None else 0.0
    last_side = tf.SERVER if s["server"]["last_ts"] >= s["client"]["last_ts"] else tf.CLIENT
    text = (f"no FIN or RST: the last segment (from the {last_side}) is {quiet:.1f} s before the capture ends"
            if quiet > 0 else f"no FIN or RST: open when the capture ended (the last segment from the {last_side})")
    return [Finding("end", last_side, text, [], "", {"how": "silence", "quiet_for": quiet})]
