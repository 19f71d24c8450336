"""Checks for the keepalive exercises, against the kernel model in lab.kernel_model.

Every time is measured from the last segment the client received before its probes: that is where
the kernel's idle clock starts (keepalive_time_elapsed uses the last received data or ACK).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import KeepaliveModel
from ..analysis.pcap import FIN, SYN
from ..errors import MissingInput
from ..spec.functions import check
from .result import CheckResult, count, counted, either, seconds, spaced, times

# recv() returns ETIMEDOUT when the kernel wakes the blocked reader right after sending the RST;
# the gap between the two is process scheduling, not a TCP timer.
WAKEUP_SLACK = 0.25


@dataclass
class Observed:
    flow: tf.Flow
    anchor: tf.Event  # the last segment the client received before its unanswered probes
    probes: list  # the client's keepalive probes after the anchor
    answered: int  # probes before the anchor (answered ones)
    rst: Optional[tf.Event]

    def offsets(self) -> list[float]:
        return [p.ts - self.anchor.ts for p in self.probes]

    def intervals(self) -> list[float]:
        return [b.ts - a.ts for a, b in zip(self.probes, self.probes[1:])]


def observe(ctx: Context, capture: str, client: str) -> Observed:
    return observe_flow(ctx.client_flow(capture, client), capture)


def observe_flow(flow: tf.Flow, capture: str) -> Observed:
    """The client's probes on a connection whose peer went silent, and its abort (`capture` names the file, for the error)."""
    anchor = flow.last(sender=tf.SERVER)
    if anchor is None:
        raise MissingInput(f"{capture}.pcap shows nothing from the server on {flow}")
    probes = flow.pick(tf.KEEPALIVE, tf.CLIENT, after=anchor.ts)
    answered = len(flow.where(tf.KEEPALIVE, tf.CLIENT)) - len(probes)
    rst = flow.first(tf.RST_, tf.CLIENT, after=anchor.ts)
    return Observed(flow, anchor, probes, answered, rst)


def model_for(ctx: Context, keepidle, keepintvl, keepcnt, user_timeout) -> KeepaliveModel:
    return KeepaliveModel(float(keepidle), float(keepintvl), int(keepcnt), int(user_timeout), ctx.hz)


def _why_count(m: KeepaliveModel) -> str:
    if m.user_timeout_ms:
        return f"the user timeout decides: max(1, ceil((U-T)/I)) with U={m.user_timeout_ms} ms, T={m.keepidle:g} s, I={m.keepintvl:g} s"
    return f"KEEPCNT={m.keepcnt}"


@check
def connection_established(ctx: Context, capture: str, client: str, exchange: bool = True) -> CheckResult:
    """The three-way handshake, and (with exchange) the client's request and the server's reply, are on the wire."""
    name = "connection_established"
    flow = ctx.client_flow(capture, client)
    syn = flow.first(tf.SYN_, tf.CLIENT)
    synack = flow.first(tf.SYN_ACK, tf.SERVER)
    ack = flow.first(sender=tf.CLIENT, since=synack.ts, without=(tf.SYN_,)) if synack else None
    t0 = syn.ts if syn else None

    def at(event) -> str:
        return f"{event.ts - t0:.3f} s" if event is not None and t0 is not None else "missing"

    ok = bool(syn and synack and ack)
    expected = f"SYN, SYN-ACK, ACK on {flow}"
    observed = f"SYN {'at 0.000 s' if syn else 'missing'}, SYN-ACK {at(synack)}, ACK {at(ack)}"
    detail = ""
    if exchange and ctx.unlogged(client):
        data = [flow.where(tf.DATA, side, without=(tf.RETRANSMISSION,)) for side in (tf.CLIENT, tf.SERVER)]
        ok = ok and all(len(d) for d in data)
        expected += "; a request from the client and a reply from the server"
        observed += "; " + ", ".join(f"{int(flow.plen[d].sum())} bytes from the {side}" for d, side in zip(data, ("client", "server")))
        detail = f"{client}.log is missing, so the sizes could not be held against what the client sent and read"
    elif exchange:
        sent, reply = ctx.event(client, "sent"), ctx.event(client, "reply")
        req = flow.where(tf.DATA, tf.CLIENT, without=(tf.RETRANSMISSION,))
        rep = flow.where(tf.DATA, tf.SERVER, without=(tf.RETRANSMISSION,))
        req_bytes, rep_bytes = int(flow.plen[req].sum()), int(flow.plen[rep].sum())
        want_req = sent["bytes"] if sent else None
        want_rep = reply["bytes"] if reply else None
        ok = ok and bool(sent and reply) and req_bytes == want_req and rep_bytes == want_rep
        first_req = flow.event(int(req[0])) if len(req) else None
        first_rep = flow.event(int(rep[0])) if len(rep) else None
        expected += f"; request of {want_req} bytes from the client; reply of {want_rep} bytes from the server"
        observed += f"; request {req_bytes} bytes {at(first_req)}; reply {rep_bytes} bytes {at(first_rep)}"
        detail = "" if (sent and reply) else f"{client}.log lacks the 'sent' or 'reply' event"
    return CheckResult(name, ok, expected=expected, observed=observed, detail=detail)


@check
def keepalive_probes(ctx: Context, capture: str, client: str, keepidle, keepintvl, keepcnt, user_timeout=0) -> CheckResult:
    """After the peer goes silent: how many probes, the first KEEPIDLE after the last received segment, then every KEEPINTVL."""
    name = "keepalive_probes"
    m = model_for(ctx, keepidle, keepintvl, keepcnt, user_timeout)
    o = observe(ctx, capture, client)
    counts = m.probe_counts()
    first, gap = m.first_probe(), m.interval()
    offsets, intervals = o.offsets(), o.intervals()
    problems = []
    if len(o.probes) not in counts:
        problems.append(f"{count(len(o.probes), 'probe')} where {either(counts)} were due")
    if offsets and not first.holds(offsets[0]):
        problems.append(f"first probe at {offsets[0]:.3f} s, outside {first.low:.3f}..{first.high:.3f}")
    for k, iv in enumerate(intervals, 2):
        if not gap.holds(iv):
            problems.append(f"probe {k} came {iv:.3f} s after the previous one, outside {gap.low:.3f}..{gap.high:.3f}")
    n = max(counts)
    return CheckResult(
        name,
        not problems,
        expected=(
            f"{counted(counts, 'probe')} ({_why_count(m)}), at {seconds(m.probe_times(n))} s after the last received segment: "
            f"first within {first.low:.3f}..{first.high:.3f} s, then every {gap.low:.3f}..{gap.high:.3f} s ({f'HZ={ctx.hz}' if ctx.hz else 'HZ unknown: widest tolerance'})"
        ),
        observed="; ".join(filter(None, [" ".join(filter(None, [count(len(o.probes), "probe"), times("at", offsets)])), spaced("interval", intervals)])),
        detail="; ".join(problems + ([f"{count(o.answered, 'answered probe')} before the peer went silent"] if o.answered else [])),
    )


@check
def keepalive_abort(ctx: Context, capture: str, client: str, keepidle, keepintvl, keepcnt, user_timeout=0) -> CheckResult:
    """The kernel gives up: an RST from the client at T + n*I, and recv() fails with ETIMEDOUT at that moment."""
    name = "keepalive_abort"
    m = model_for(ctx, keepidle, keepintvl, keepcnt, user_timeout)
    o = observe(ctx, capture, client)
    counts = m.probe_counts()
    n = len(o.probes) if len(o.probes) in counts else max(counts)
    window = m.abort(n)
    err = ctx.event(client, "error")
    problems = []
    if o.rst is None:
        problems.append("no RST from the client after the last received segment")
    else:
        at = o.rst.ts - o.anchor.ts
        if not window.holds(at):
            problems.append(f"RST at {at:.3f} s, outside {window.low:.3f}..{window.high:.3f}")
        # Linux's keepalive reset carries seq = SND.NXT: one past the probes' SND.UNA - 1.
        f = o.flow
        before = f.where(sender=tf.CLIENT, before=o.rst.ts, without=(tf.KEEPALIVE, tf.RST_))
        ends = f.rel_seq[before] + f.plen[before] + ((f.flags[before] & (SYN | FIN)) != 0)
        nxt = int(ends.max()) if len(before) else 0
        if o.rst.rel_seq != nxt:
            problems.append(f"RST seq {o.rst.rel_seq} (relative) is not SND.NXT {nxt}")
    unknown = ""
    if ctx.unlogged(client):
        unknown = f"what recv() returned could not be known: {client}.log is missing"
    elif err is None:
        problems.append(f"{client}.log has no 'error' event: recv() did not fail")
    elif err.get("error") != "ETIMEDOUT":
        problems.append(f"recv() failed with {err.get('error')}, not ETIMEDOUT")
    elif o.rst is not None and abs(err["wall"] - o.rst.ts) > WAKEUP_SLACK:
        problems.append(f"ETIMEDOUT reached the program {err['wall'] - o.rst.ts:+.3f} s from the RST (allowed ±{WAKEUP_SLACK})")
    observed_at = f"RST at {o.rst.ts - o.anchor.ts:.3f} s" if o.rst else "no RST"
    observed_err = (
        f"recv() -> {err.get('error')} at {err['wall'] - o.anchor.ts:.3f} s" if err else
        "recv() not logged" if unknown else "no error from recv()"
    )
    return CheckResult(
        name,
        not problems,
        expected=f"after {count(n, 'probe')}: RST (seq = SND.NXT) and ETIMEDOUT at {window} after the last received segment",
        observed=f"{observed_at}; {observed_err}",
        detail="; ".join(problems + ([unknown] if unknown else [])),
    )


@check
def user_timeout_decides(ctx: Context, capture: str, client: str, keepidle, keepintvl, keepcnt, user_timeout) -> CheckResult:
    """With TCP_USER_TIMEOUT set, the probe count follows the user timeout and KEEPCNT is ignored."""
    name = "user_timeout_decides"
    m = model_for(ctx, keepidle, keepintvl, keepcnt, user_timeout)
    o = observe(ctx, capture, client)
    seen = len(o.probes)
    without = KeepaliveModel(m.keepidle, m.keepintvl, m.keepcnt, 0, m.hz)
    if m.user_timeout_ms > 0:
        expected = (f"{counted(m.probe_counts(), 'probe')} from U={m.user_timeout_ms} ms, not KEEPCNT={m.keepcnt} "
                    f"(KEEPCNT alone would abort at {without.abort(m.keepcnt).nominal:.3f} s)")
    else:
        expected = f"a user timeout (U > 0) that sets the probe count instead of KEEPCNT={m.keepcnt}"
    problems = []
    if m.user_timeout_ms <= 0:
        problems.append("no user timeout was set, so there is nothing to decide; set user_timeout > 0")
    elif m.keepcnt in m.probe_counts():
        problems.append(
            f"these parameters give {m.keepcnt} probes with and without the user timeout, so the packets cannot show which decided; "
            f"choose user_timeout so that ceil((U-T)/I) differs from keepcnt"
        )
    else:
        if seen not in m.probe_counts():
            problems.append(f"{count(seen, 'probe')}, not the {either(m.probe_counts())} the user timeout allows")
        if seen == m.keepcnt:
            problems.append(f"{count(seen, 'probe')} is KEEPCNT: the count decided, not the user timeout")
    abort = f", abort at {o.rst.ts - o.anchor.ts:.3f} s" if o.rst else ", no abort seen"
    return CheckResult(name, not problems, expected=expected, observed=f"{count(seen, 'probe')}{abort}", detail="; ".join(problems))
