"""Checks for nagle-delayed-ack: write, write, read on one connection, judged per request from the packets.

Each request is the client's new data after the server's previous reply; its latency runs from its
first byte on the wire to the server's reply. The kernel model (lab/analysis/kernel_model.py's
RequestModel) says which requests pay the receiver's delayed-ACK timer: Nagle holds the second small
write until the first is acknowledged, and the receiver, in ping-pong mode once it has replied, holds
that ACK for TCP_DELACK_MIN (40 ms, plus the timer wheel's lateness).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import TCP_PINGPONG_THRESH, RequestModel, Window
from ..errors import MissingInput
from ..spec.functions import check
from .result import CheckResult, count

PINGPONG_SYSCTL = "net.ipv4.tcp_pingpong_thresh"


@dataclass
class Request:
    """One request as the capture shows it."""

    n: int  # 1-based, in the order sent
    segments: list  # the client's new data segments of the request (tf.Event)
    first_ack: Optional[tf.Event]  # the server's first segment acknowledging the request's first segment
    reply: Optional[tf.Event]  # the server's first data segment after the request

    @property
    def start(self) -> float:
        return self.segments[0].ts

    @property
    def latency(self) -> Optional[float]:
        return self.reply.ts - self.start if self.reply is not None else None

    @property
    def answer(self) -> Optional[float]:
        """From the request's last segment to the reply: a round trip and the server's time to reply."""
        return self.reply.ts - self.segments[-1].ts if self.reply is not None else None

    @property
    def ack_wait(self) -> Optional[float]:
        return self.first_ack.ts - self.start if self.first_ack is not None else None

    @property
    def second(self) -> Optional[tf.Event]:
        return self.segments[1] if len(self.segments) > 1 else None


@dataclass
class Observed:
    flow: tf.Flow
    rtt: float  # the handshake's round trip, as the capture saw it
    requests: list  # Request


def observe(ctx: Context, capture: str, client: str) -> Observed:
    """The client's requests on its connection, each with its segments, the ACK of its first one and the reply."""
    flow = ctx.client_flow(capture, client)
    rtt = flow.handshake_rtt()
    sent = flow.where(tf.DATA, tf.CLIENT, without=(tf.RETRANSMISSION, tf.OUT_OF_ORDER))
    replies = flow.where(tf.DATA, tf.SERVER, without=(tf.RETRANSMISSION,))
    if not len(sent):
        raise MissingInput(f"{capture}.pcap shows no request from the client on {flow}")
    groups: list[list[int]] = []
    for k in sent.tolist():
        # A request starts with the client's first data after the server's reply to the one before.
        if not groups or any(groups[-1][-1] < r < k for r in replies.tolist()):
            groups.append([k])
        else:
            groups[-1].append(k)
    acks = flow.where(sender=tf.SERVER)
    out = []
    for n, ks in enumerate(groups, 1):
        first_end = int(flow.rel_seq[ks[0]] + flow.plen[ks[0]])
        ack = next((a for a in acks.tolist() if a > ks[0] and flow.rel_ack[a] >= first_end), None)
        reply = next((r for r in replies.tolist() if r > ks[-1]), None)
        out.append(Request(n, [flow.event(k) for k in ks], flow.event(ack) if ack is not None else None,
                           flow.event(reply) if reply is not None else None))
    return Observed(flow, rtt, out)


def request_bytes(o: Observed, r: Request) -> int:
    return int(sum(o.flow.plen[o.flow.where(tf.DATA, tf.CLIENT, since=r.start, before=(r.reply.ts if r.reply else float("inf")),
                                            without=(tf.RETRANSMISSION, tf.OUT_OF_ORDER))]))


def model_for(ctx: Context, nodelay, quickack, writes) -> RequestModel:
    """The model with the receiver's ping-pong threshold as its namespace had it (1 where the kernel has no sysctl)."""
    thresh = ctx.sysctl("dest", PINGPONG_SYSCTL)
    return RequestModel(int(writes), bool(int(nodelay)), bool(int(quickack)), ctx.hz,
                        thresh if thresh is not None else TCP_PINGPONG_THRESH)


def variant(m: RequestModel) -> str:
    """The variant in words, for the expectations."""
    parts = [f"{m.writes} write{'s' if m.writes > 1 else ''} per request", "TCP_NODELAY" if m.nodelay else "Nagle on",
             "TCP_QUICKACK before each recv()" if m.quickack else "no TCP_QUICKACK"]
    return ", ".join(parts)


def ranges(ns: list[int]) -> str:
    """'1', '2-10', '1, 3-4': request numbers, runs collapsed."""
    out, i = [], 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        out.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ", ".join(out)


def ms(values: list) -> str:
    """'43.4 ms', or '43.1..44.0 ms (median 43.8)' for several."""
    vals = [v * 1000 for v in values if v is not None]
    if not vals:
        return "none"
    if len(vals) == 1:
        return f"{vals[0]:.2f} ms"
    return f"{min(vals):.2f}..{max(vals):.2f} ms (median {statistics.median(vals):.2f})"


def _requests_word(ns: list[int]) -> str:
    return f"request{'s' if len(ns) != 1 else ''} {ranges(ns)}"


@check
def request_latency(ctx: Context, capture: str, client: str, nodelay, quickack, writes, requests, size) -> CheckResult:
    """Each request's latency from the packets (its first byte to the server's reply): the ones the model says
    pay the delayed-ACK timer within its window plus a round trip and the request's own answer (its last segment
    to the reply), the others below its minimum."""
    name = "request_latency"
    m = model_for(ctx, nodelay, quickack, writes)
    o = observe(ctx, capture, client)
    want = int(requests)
    delayed = [n for n in range(1, want + 1) if m.delayed(n)]
    fast = [n for n in range(1, want + 1) if not m.delayed(n)]
    d = m.ack_wait()
    problems = []
    if len(o.requests) != want:
        problems.append(f"{count(len(o.requests), 'request')} on the wire where {want} were sent")
    wrong_size = [r.n for r in o.requests if r.reply is not None and request_bytes(o, r) != int(size)]
    if wrong_size:
        problems.append(f"{_requests_word(wrong_size)} did not carry {size} bytes")
    slow_fast, quick_delayed, unanswered = [], [], []
    for r in o.requests:
        if r.latency is None:
            unanswered.append(r.n)
            continue
        w = m.latency(r.n, o.rtt, r.answer)
        if not w.holds(r.latency):
            (quick_delayed if m.delayed(r.n) else slow_fast).append(r)
    if unanswered:
        problems.append(f"no reply to {_requests_word(unanswered)}")
    # The answer is measured, not modelled, but it pays no timer: one as long as a delayed ACK is a stall
    # the model does not explain (the server holding its reply, say), whatever the rest of the request did.
    stalled = [r for r in o.requests if r.answer is not None and r.answer >= d.low]
    if stalled:
        problems.append(f"{_requests_word([r.n for r in stalled])}: from the last segment to the reply took "
                        f"{ms([r.answer for r in stalled])}, as long as a delayed ACK, where only a round trip and the "
                        f"server's reply belong")
    if slow_fast:
        problems.append(f"{_requests_word([r.n for r in slow_fast])} took {ms([r.latency for r in slow_fast])}, not below "
                        f"the delayed-ACK minimum {d.low * 1000:.1f} ms")
    for r in quick_delayed[:3]:
        w = m.latency(r.n, o.rtt, r.answer)
        problems.append(f"request {r.n} took {r.latency * 1000:.2f} ms, outside the delayed-ACK window {w.low * 1000:.1f}.."
                        f"{w.high * 1000:.1f} ms (with its answer, {r.answer * 1000:.2f} ms from its last segment to the reply)")
    if len(quick_delayed) > 3:
        problems.append(f"and {_requests_word([r.n for r in quick_delayed[3:]])} likewise")
    expected = [f"{variant(m)}, ping-pong after {count(m.pingpong_thresh, 'reply', 'replies')}:"]
    if fast:
        expected.append(f"{_requests_word(fast)} fast (below the delayed-ACK minimum, {d.low * 1000:.1f} ms);")
    if delayed:
        w = m.latency(delayed[0], o.rtt, 0.0)
        expected.append(f"{'and ' if fast else ''}{_requests_word(delayed)} each {d.nominal * 1000:.0f} ms of delayed-ACK timer "
                        f"plus a round trip ({w.low * 1000:.1f}..{w.high * 1000:.1f} ms at {f'HZ={ctx.hz}' if ctx.hz else 'HZ unknown'}), "
                        f"then its answer (from its last segment to the reply: a round trip and the server's reply, which "
                        f"no timer sets, measured per request, and below the delayed-ACK minimum)")
    seen_fast = [r.latency for r in o.requests if r.latency is not None and r.latency < d.low]
    seen_slow = [r.latency for r in o.requests if r.latency is not None and r.latency >= d.low]
    observed = "; ".join(filter(None, [
        f"{count(len(o.requests), 'request')}",
        f"{_requests_word([r.n for r in o.requests if r.latency is not None and r.latency < d.low])} {ms(seen_fast)}" if seen_fast else "",
        f"{_requests_word([r.n for r in o.requests if r.latency is not None and r.latency >= d.low])} {ms(seen_slow)}" if seen_slow else "",
    ]))
    return CheckResult(name, not problems, expected=" ".join(expected), observed=observed, detail="; ".join(problems))


@check
def nagle_holds_second_write(ctx: Context, capture: str, client: str, nodelay, quickack, writes, requests, size) -> CheckResult:
    """With two writes and Nagle on, the second small segment never leaves before the first is acknowledged,
    and where the receiver delays that ACK it leaves right after the delayed ACK (tcpflow's nagle_held after a
    delayed_ack). With TCP_NODELAY both leave at once (two unacknowledged small segments, which Nagle never
    allows); with one write there is nothing to hold."""
    name = "nagle_holds_second_write"
    m = model_for(ctx, nodelay, quickack, writes)
    o = observe(ctx, capture, client)
    d = m.ack_wait()
    problems = []
    held_after_delayed = [r for r in o.requests if r.second is not None and r.second.has(tf.NAGLE_HELD)
                          and r.first_ack is not None and r.first_ack.has(tf.DELAYED_ACK) and r.first_ack.ts <= r.second.ts]
    waited = [r for r in o.requests if r.second is not None and r.second.ts - r.start >= d.low]
    before_ack = [r for r in o.requests if r.second is not None and (r.first_ack is None or r.second.ts < r.first_ack.ts)]
    two = [r for r in o.requests if r.second is not None]
    if m.writes >= 2 and not m.nodelay:
        expected = ("Nagle on: each request's second write leaves only once the first is acknowledged; "
                    + (f"in {_requests_word([r.n for r in o.requests if m.delayed(r.n)])} right after the server's delayed ACK "
                       f"({d.low * 1000:.1f}..{d.high * 1000:.1f} ms after the first)" if any(m.delayed(r.n) for r in o.requests)
                       else "the server acknowledges at once, so it waits one round trip"))
        single = [r.n for r in o.requests if r.second is None]
        if single:
            problems.append(f"{_requests_word(single)} went out as one segment, not two writes")
        if before_ack:
            problems.append(f"the second segment of {_requests_word([r.n for r in before_ack])} left before the first was "
                            f"acknowledged: Nagle did not hold it")
        for r in o.requests:
            if m.delayed(r.n) and r.second is not None and r not in held_after_delayed:
                problems.append(f"request {r.n}'s second segment (after {(r.second.ts - r.start) * 1000:.2f} ms) does not follow a delayed ACK")
                break
            if m.delayed(r.n) and r.second is not None and not _timer_seen(d, r.second.ts - r.start, o.rtt):
                problems.append(f"request {r.n}'s second segment was held {(r.second.ts - r.start) * 1000:.2f} ms, outside the delayed ACK's "
                                f"{d.low * 1000:.1f}..{d.high * 1000:.1f} ms (plus a round trip)")
                break
        quick_waited = [r.n for r in waited if not m.delayed(r.n)]
        if quick_waited:
            problems.append(f"the second segment of {_requests_word(quick_waited)} waited for a delayed ACK the model does not expect")
    elif m.writes >= 2:
        expected = "TCP_NODELAY: both writes of every request leave at once, none waits for an ACK"
        if m.quickack or all(m.quick_acked(r.n) for r in o.requests):
            expected += " (the server acknowledges at once, so the wire cannot tell them from a held one)"
        else:
            expected += (f"; in {_requests_word([r.n for r in o.requests if not m.quick_acked(r.n)])} the second leaves before "
                         f"the server's (delayed) ACK of the first, two small segments unacknowledged, which Nagle never allows")
        if waited:
            problems.append(f"the second segment of {_requests_word([r.n for r in waited])} waited {ms([r.second.ts - r.start for r in waited])}")
        if held_after_delayed:
            problems.append(f"{_requests_word([r.n for r in held_after_delayed])}: the second segment followed a delayed ACK (nagle_held)")
        not_before = [r.n for r in two if not m.quick_acked(r.n) and r not in before_ack]
        if not_before:
            problems.append(f"the second segment of {_requests_word(not_before)} waited for the ACK of the first, as under Nagle")
        if len(two) < len(o.requests):
            problems.append(f"{_requests_word([r.n for r in o.requests if r.second is None])} went out as one segment, not two writes")
    else:
        expected = "one write per request: nothing for Nagle to hold, no segment waits for an ACK"
        held = [r.n for r in o.requests if any(s.has(tf.NAGLE_HELD) for s in r.segments)]
        if held:
            problems.append(f"a segment of {_requests_word(held)} was held (nagle_held)")
        if two:
            problems.append(f"{_requests_word([r.n for r in two])} went out as two segments, not one write")
        if waited:
            problems.append(f"{_requests_word([r.n for r in waited])} sent part of the request {ms([r.second.ts - r.start for r in waited])} after its start")
    observed = "; ".join(filter(None, [
        f"{count(len(two), 'request')} of {len(o.requests)} in two segments" if m.writes >= 2 else
        f"{count(len(o.requests) - len(two), 'request')} of {len(o.requests)} in one segment",
        f"second segment after {ms([r.second.ts - r.start for r in two])}" if two else "",
        f"nagle_held after a delayed_ack in {_requests_word([r.n for r in held_after_delayed])}" if held_after_delayed else "no nagle_held after a delayed_ack",
        f"second before the first's ACK in {_requests_word([r.n for r in before_ack])}" if before_ack else "",
    ]))
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


def _timer_seen(d: Window, wait: float, rtt: float) -> bool:
    """A wait on the client's wire that the delayed-ACK timer explains: the timer's window, plus the round
    trip the segment and its ACK took, which is never less than nothing and, on a machine whose vCPUs
    stall (emulated VMs), may be the handshake's round trip each way (so the lower bound subtracts none)."""
    return d.low <= wait <= d.high + 2 * rtt


@check
def quickack_at_start(ctx: Context, capture: str, client: str, nodelay, quickack, writes, requests, size) -> CheckResult:
    """The receiver's quick-ACK mode: the first request's first segment (the first `pingpong_thresh` of them, or
    every one with TCP_QUICKACK) is acknowledged at once; once the server has replied it is in ping-pong mode
    and, where Nagle waits for that ACK, delays it by the delayed-ACK timer."""
    name = "quickack_at_start"
    m = model_for(ctx, nodelay, quickack, writes)
    o = observe(ctx, capture, client)
    d = m.ack_wait()
    problems = []
    quick = [r for r in o.requests if m.quick_acked(r.n)]
    slow = [r for r in o.requests if m.delayed(r.n)]
    for r in quick:
        if r.ack_wait is None:
            problems.append(f"request {r.n}'s first segment was never acknowledged")
        elif r.first_ack.has(tf.DELAYED_ACK) or r.ack_wait >= d.low:
            problems.append(f"request {r.n}'s first segment was acknowledged after {r.ack_wait * 1000:.2f} ms, not at once")
    for r in slow:
        if r.ack_wait is None:
            problems.append(f"request {r.n}'s first segment was never acknowledged")
        elif not (r.first_ack.has(tf.DELAYED_ACK) and _timer_seen(d, r.ack_wait, o.rtt)):
            problems.append(f"request {r.n}'s first segment was acknowledged after {r.ack_wait * 1000:.2f} ms, not by the delayed-ACK "
                            f"timer ({d.low * 1000:.1f}..{d.high * 1000:.1f} ms)")
    if not o.requests:
        problems.append("no request on the wire")
    said_quick = ("with TCP_QUICKACK before each recv(), every request's first segment acknowledged at once" if m.quickack else
                  f"quick-ACK mode at the start: {_requests_word([n for n in range(1, m.pingpong_thresh + 1)])} acknowledged at once "
                  f"(ping-pong after {count(m.pingpong_thresh, 'reply', 'replies')}, {PINGPONG_SYSCTL}"
                  f"{'' if ctx.sysctl('dest', PINGPONG_SYSCTL) is not None else ' not recorded: the kernel default'})")
    said_slow = (f"; then, Nagle waiting for it, each later request's ACK held by the delayed-ACK timer "
                 f"({d.low * 1000:.1f}..{d.high * 1000:.1f} ms)" if slow else "")
    observed = "; ".join(f"request {r.n}: ACK after {r.ack_wait * 1000:.2f} ms{' (delayed_ack)' if r.first_ack.has(tf.DELAYED_ACK) else ''}"
                         if r.ack_wait is not None else f"request {r.n}: no ACK" for r in o.requests[:3])
    if len(o.requests) > 3:
        rest = [r.ack_wait for r in o.requests[3:] if r.ack_wait is not None]
        observed += f"; requests 4-{len(o.requests)}: {ms(rest)}"
    return CheckResult(name, not problems, expected=said_quick + said_slow, observed=observed, detail="; ".join(problems))
