"""Checks for the persist timer: zero window, window probes, reopening, and the stream's integrity.

The probe schedule is compared with the kernel (tcp_send_probe0: max(RTO, 200 ms), doubling, capped
at 120 s; a 0-byte segment at SND.UNA - 1) and shown beside the textbook's 5, 10, 20, 40, 60 s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import PersistModel, textbook_persist_schedule
from ..errors import MissingInput
from ..spec.functions import check
from .result import CheckResult, count, counted, either, seconds, spaced, times


@dataclass
class Stall:
    """The longest period in which the server advertised a zero window."""

    flow: tf.Flow
    closed: tf.Event  # the server's first zero-window segment of the period
    reopened: Optional[tf.Event]  # the server's first segment after it with an open window
    probes: list  # the client's zero-window probes in between
    replies: list  # the server's answers to them

    @property
    def seconds(self) -> Optional[float]:
        return self.reopened.ts - self.closed.ts if self.reopened else None

    @property
    def resumed(self) -> Optional[tf.Event]:
        """The client's first new data once the window reopened (after the stall, retransmissions aside)."""
        if self.reopened is None:
            return None
        return self.flow.first(tf.DATA, tf.CLIENT, since=self.reopened.ts, without=(tf.RETRANSMISSION,))


def observe_stall(ctx: Context, capture: str, client: str) -> Stall:
    flow = ctx.client_flow(capture, client)
    srv = flow.where(sender=tf.SERVER, without=(tf.RST_, tf.SYN_ACK))
    zero = (flow.window[srv] == 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], zero, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # ends: the first open window after each run
    if not len(starts):
        raise MissingInput(f"{capture}.pcap shows no zero window from the server on {flow}")
    last_ts = flow.ts[-1]
    lengths = [(flow.ts[srv[e]] if e < len(srv) else last_ts) - flow.ts[srv[a]] for a, e in zip(starts, ends)]
    longest = int(np.argmax(lengths))
    closed = flow.event(int(srv[starts[longest]]))
    e = ends[longest]
    reopened = flow.event(int(srv[e])) if e < len(srv) else None
    until = reopened.ts if reopened else None
    probes = flow.pick(tf.ZERO_WINDOW_PROBE, tf.CLIENT, after=closed.ts, before=until)
    replies = flow.pick(tf.ZERO_WINDOW_PROBE_ACK, tf.SERVER, after=closed.ts, before=until)
    return Stall(flow, closed, reopened, probes, replies)


def persist_model(ctx: Context, client: str) -> PersistModel:
    blocked = [e for e in ctx.events(client) if e["event"] == "blocked"]
    if not blocked:
        raise MissingInput(f"{client}.log has no 'blocked' event, so the RTO in force during the stall is unknown")
    longest = max(blocked, key=lambda e: e["seconds"])
    return PersistModel(longest["rto_us"] / 1e6, ctx.hz)


@check
def zero_window_advertised(ctx: Context, capture: str, client: str) -> CheckResult:
    """The receiver's buffer filled and it advertised a zero window."""
    s = observe_stall(ctx, capture, client)
    zero = len(s.flow.where(tf.ZERO_WINDOW, tf.SERVER))
    lasted = f"{s.seconds:.3f} s" if s.seconds is not None else "until the end of the capture"
    return CheckResult(
        "zero_window_advertised", zero > 0,
        expected="the server advertises window 0 once its receive buffer is full",
        observed=f"{count(zero, 'zero-window segment')} from the server; the longest closed period lasted {lasted}",
    )


@check
def window_probes(ctx: Context, capture: str, client: str) -> CheckResult:
    """During the stall the sender probes: 0-byte segments at SND.UNA - 1, at max(RTO, 200 ms), then doubling."""
    s = observe_stall(ctx, capture, client)
    m = persist_model(ctx, client)
    stall = s.seconds if s.seconds is not None else float(s.flow.ts[-1]) - s.closed.ts
    at = [p.ts - s.closed.ts for p in s.probes]
    intervals = [b - a for a, b in zip([0.0] + at, at)]
    problems = []
    counts = m.probe_counts(stall)
    if len(s.probes) not in counts:
        problems.append(f"{count(len(s.probes), 'probe')} in a {stall:.3f} s stall where {either(counts)} were due")
    wrong_form = [p for p in s.probes if p.seg.plen != 0 or p.rel_seq != s.closed.rel_ack - 1]
    if wrong_form:
        problems.append(f"{count(len(wrong_form), 'probe')} not in Linux's form (0 bytes at SND.UNA - 1 = {s.closed.rel_ack - 1})")
    # An answer to a probe re-arms the timer from its arrival (tcp_ack_probe), so an interval may also
    # hold one probe-to-answer delay: microseconds on a bridge, the RTT where latency is added.
    delay = max((r.ts - p.ts for p in s.probes for r in s.replies if 0 <= r.ts - p.ts < 1.0), default=0.0)
    for k, iv in enumerate(intervals):
        w = m.interval(k)
        if not w.low <= iv <= w.high + delay:
            what = "first probe" if k == 0 else f"probe {k + 1}"
            problems.append(f"{what} {iv:.3f} s after the previous event, outside {w.low:.3f}..{w.high:.3f}")
    textbook = textbook_persist_schedule(stall)
    if textbook:
        compare = f"the textbook's 1-byte probes every 5, 10, 20, 40, 60 s would be at {seconds(textbook)} s"
    else:
        compare = f"the textbook's 1-byte probes every 5, 10, 20, 40, 60 s would not have started in a {stall:.1f} s stall"
    return CheckResult(
        "window_probes", not problems,
        expected=(
            f"{counted(counts, 'probe')} of 0 bytes at SND.UNA - 1, {times('at', m.schedule(stall)) or 'none due'} after the window closed "
            f"(RTO {m.rto * 1000:.0f} ms, floor 200 ms, doubling; each interval may run one timer slot + one jiffy late); {compare}"
        ),
        observed=(
            "; ".join(filter(None, [" ".join(filter(None, [count(len(s.probes), "probe"), times("at", at)])), spaced("interval", intervals)]))
            + f"; {len(s.replies)} answered (the receiver rate-limits its replies, so not every probe is)"
        ),
        detail="; ".join(problems),
    )


@check
def window_reopened(ctx: Context, capture: str, client: str) -> CheckResult:
    """The receiver reopens its window after the stall and the sender resumes within one probe interval."""
    s = observe_stall(ctx, capture, client)
    m = persist_model(ctx, client)
    problems = []
    resumed = s.resumed
    if s.reopened is None:
        problems.append("the window never reopened in the capture")
    else:
        limit = m.interval(len(s.probes)).high
        if resumed is None:
            problems.append("no new data from the client after the window reopened")
        elif resumed.ts - s.reopened.ts > limit:
            problems.append(f"new data came {resumed.ts - s.reopened.ts:.3f} s after the reopening, over one probe interval ({limit:.3f} s)")
    observed = "window never reopened" if s.reopened is None else (
        f"reopened to {s.reopened.window} bytes after {s.seconds:.3f} s"
        + (f"; new data {resumed.ts - s.reopened.ts:.4f} s later" if resumed else "; no new data")
    )
    return CheckResult(
        "window_reopened", not problems,
        expected="a window update from the server after the stall, then new data from the client within one probe interval",
        observed=observed, detail="; ".join(problems),
    )


@check
def stream_intact(ctx: Context, capture: str, client: str, server: str) -> CheckResult:
    """Every byte the client sent reached the server, in order and unchanged."""
    sent, got = ctx.event(client, "done"), ctx.event(server, "closed")
    if sent is None or got is None:
        raise MissingInput(f"{client}.log needs a 'done' event and {server}.log a 'closed' event")
    flow = ctx.client_flow(capture, client)
    server = flow.where(sender=tf.SERVER)
    acked = int(flow.rel_ack[server].max()) if len(server) else 0
    # The server's last ACK covers the SYN, every byte and the FIN.
    wire = acked - 2 if flow.first(tf.FIN_, tf.CLIENT) else acked - 1
    retrans = len(flow.where(tf.RETRANSMISSION, tf.CLIENT))
    problems = []
    if sent["bytes"] != got["bytes"]:
        problems.append(f"the client sent {sent['bytes']} bytes, the server received {got['bytes']}")
    if sent["sha256"] != got["sha256"]:
        problems.append("the SHA-256 of what was received differs from what was sent")
    if wire != sent["bytes"]:
        problems.append(f"the capture shows {wire} bytes acknowledged, not {sent['bytes']}")
    return CheckResult(
        "stream_intact", not problems,
        expected=f"the server receives all {sent['bytes']} bytes the client sent, with the same SHA-256, all acknowledged on the wire",
        observed=f"{got['bytes']} bytes received, SHA-256 {'equal' if sent['sha256'] == got['sha256'] else 'different'}; "
                 f"{wire} bytes acknowledged in the capture; {count(retrans, 'retransmission')}",
        detail="; ".join(problems),
    )
