"""Checks for retransmission-timeout: data in flight to a peer that went silent, against RetransmitModel.

Every time counts from the send of the request nobody acknowledged (the client's last segment of new
data). The model's inputs are what the client's kernel said just before that send (TCP_INFO's RTO and
smoothed RTT, in the client's log) and the namespace's sysctls recorded when the run began.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import TCP_RTO_MAX, TCP_RTO_MIN, RetransmitModel, vcpu_stall
from ..errors import MissingInput
from ..spec.functions import check
from .hints import Step, events_of, hint_for, step_watching
from .keepalive import WAKEUP_SLACK
from .result import CheckResult, count, counted, seconds, spaced, times

@dataclass
class Observed:
    client: str  # the program, whose host's sysctls the model reads
    flow: tf.Flow
    lost: tf.Event  # the request nobody acknowledged
    probes: list  # tail loss probes after it
    rtos: list  # RTO retransmissions after it
    resent: list  # every resend after it, in order
    rst: Optional[tf.Event]
    sent: dict  # the client's log entry for the lost request (with TCP_INFO's figures)
    error: Optional[dict]  # what recv() failed with

    def at(self, event: tf.Event) -> float:
        return event.ts - self.lost.ts

    @property
    def first_rto(self) -> Optional[float]:
        return self.at(self.rtos[0]) if self.rtos else None


def observe(ctx: Context, capture: str, client: str) -> Observed:
    flow = ctx.client_flow(capture, client)
    lost = flow.last(tf.DATA, tf.CLIENT, without=(tf.RETRANSMISSION, tf.OUT_OF_ORDER))
    if lost is None:
        raise MissingInput(f"{capture}.pcap has no data from the client on {flow}")
    if flow.first(sender=tf.SERVER, after=lost.ts) is not None and not flow.pick(tf.RETRANSMISSION, tf.CLIENT, after=lost.ts):
        raise MissingInput(f"{capture}.pcap: the server answered the client's last request, so nothing was lost (was the port dropped?)")
    sent = [e for e in ctx.events(client) if e.get("event") == "sent"]
    if not sent and not ctx.unlogged(client):
        raise MissingInput(f"{client}.log has no 'sent' event, so the RTO in force at the lost request is unknown")
    errors = [e for e in ctx.events(client) if e.get("event") == "error"]
    return Observed(
        client, flow, lost,
        flow.pick(tf.TAIL_LOSS_PROBE, tf.CLIENT, after=lost.ts),
        flow.pick(tf.RTO_RETRANSMISSION, tf.CLIENT, after=lost.ts),
        flow.pick(tf.RETRANSMISSION, tf.CLIENT, after=lost.ts),
        flow.first(tf.RST_, tf.CLIENT, after=lost.ts),
        sent[-1] if sent else {},
        errors[-1] if errors else None,
    )


def model_for(ctx: Context, o: Observed, retries2, user_timeout) -> RetransmitModel:
    if "rto_us" not in o.sent:
        raise MissingInput("client.log: the last 'sent' event has no rto_us (TCP_INFO), so the RTO in force is unknown; "
                           "run the exercise's client.py, which logs it before each request")
    host = ctx.program_host(o.client)  # the client's namespace: its sysctls are the kernel's for the lost data
    rto_min = ctx.sysctl(host, "net.ipv4.tcp_rto_min_us")
    rto_max = ctx.sysctl(host, "net.ipv4.tcp_rto_max_ms")  # 6.15 and later; 120 s fixed before
    early = ctx.sysctl(host, "net.ipv4.tcp_early_retrans")
    return RetransmitModel(
        rto=o.sent["rto_us"] / 1e6, srtt=o.sent.get("rtt_us", 0) / 1e6, retries2=int(retries2), user_timeout_ms=int(user_timeout),
        hz=ctx.hz, rto_min=rto_min / 1e6 if rto_min else TCP_RTO_MIN, rto_max=rto_max / 1000 if rto_max else TCP_RTO_MAX,
        tlp=early is None or early >= 3, stall=vcpu_stall(o.flow.handshake_rtt()),
    )


def _stall_said(m: RetransmitModel) -> str:
    return f"; plus {m.stall * 1000:.1f} ms, the handshake's round trip: this machine's vCPUs stall" if m.stall >= 0.001 else ""


def _boundary(m: RetransmitModel) -> str:
    if m.user_timeout_ms > 0:
        return f"TCP_USER_TIMEOUT={m.user_timeout_ms} ms"
    return f"tcp_retries2={m.retries2}: ((2 << {m.retries2}) - 1) x 200 ms = {m.boundary:.1f} s" if m.retries2 <= 9 else \
        f"tcp_retries2={m.retries2}: {m.boundary:.1f} s of modelled backoff"


@check
def tail_loss_probe(ctx: Context, capture: str, client: str) -> CheckResult:
    """Before any RTO retransmission, one tail loss probe resends the lost request after the PTO:
    2 x SRTT plus the RTO floor with one segment out, no later than the RTO."""
    name = "tail_loss_probe"
    o = observe(ctx, capture, client)
    m = model_for(ctx, o, 15, 0)
    problems = []
    first = o.resent[0] if o.resent else None
    if not m.tlp:
        expected = "no tail loss probe (net.ipv4.tcp_early_retrans < 3 on the client's host): the first resend is an RTO retransmission"
        if o.probes:
            problems.append(f"a tail loss probe at {o.at(o.probes[0]):.3f} s although tcp_early_retrans turns them off")
    else:
        w = m.probe()
        expected = (f"one tail loss probe resending the request {w} after it was sent "
                    f"(PTO = min(2 x SRTT {m.srtt * 1000:.3f} ms in whole jiffies + {m.rto_min * 1000:g} ms, RTO {m.rto * 1000:g} ms))")
        if not o.probes:
            problems.append("no tail loss probe" + (f": the first resend at {o.at(first):.3f} s is an RTO retransmission" if first else ", no resend at all"))
        else:
            if len(o.probes) > 1:
                problems.append(f"{len(o.probes)} tail loss probes where one is sent")
            if first is not o.probes[0] and first.seg.index != o.probes[0].seg.index:
                problems.append("the probe is not the first resend")
            if not w.holds(o.at(o.probes[0])):
                problems.append(f"probe at {o.at(o.probes[0]):.3f} s, outside {w.low:.3f}..{w.high:.3f}")
            if o.probes[0].rel_seq != o.lost.rel_seq or o.probes[0].seg.plen != o.lost.seg.plen:
                problems.append("the probe does not resend the lost request (the tail)")
    observed = (f"tail loss probe at {o.at(o.probes[0]):.3f} s" if o.probes else "no tail loss probe") + \
        (f"; first resend at {o.at(first):.3f} s" if first is not None and not o.probes else "")
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


@check
def rto_backoff(ctx: Context, capture: str, client: str, retries2, user_timeout=0) -> CheckResult:
    """RTO retransmissions: the first an RTO (from TCP_INFO) after the probe, each later one after twice
    the interval before (capped at the RTO maximum), as many as fit before the abort's boundary."""
    name = "rto_backoff"
    o = observe(ctx, capture, client)
    m = model_for(ctx, o, retries2, user_timeout)
    counts = m.retransmission_counts()
    n = max(counts)
    start = o.probes[0] if o.probes and m.tlp else o.lost
    marks = [start] + o.rtos
    gaps = [b.ts - a.ts for a, b in zip(marks, marks[1:])]
    nominal = m.intervals(len(gaps) + (1 if m.tlp else 0))[1 if m.tlp else 0:]
    problems = []
    if len(o.rtos) not in counts:
        problems.append(f"{count(len(o.rtos), 'RTO retransmission')} where {' or '.join(map(str, counts))} fit before the abort ({_boundary(m)})")
    for k, (gap, nom) in enumerate(zip(gaps, nominal), 1):
        w = m.interval(nom)
        if not w.holds(gap):
            problems.append(f"retransmission {k} came {gap:.3f} s after the {'probe' if k == 1 and start is not o.lost else 'previous one' if k > 1 else 'request'}, "
                            f"outside {w.low:.3f}..{w.high:.3f}")
    sysctl = ctx.sysctl(ctx.program_host(client), "net.ipv4.tcp_retries2")
    if int(user_timeout) <= 0 and sysctl is not None and sysctl != int(retries2):
        problems.append(f"the client's namespace had tcp_retries2={sysctl}, not {retries2}")
    return CheckResult(
        name, not problems,
        expected=(f"{counted(counts, 'RTO retransmission')} ({_boundary(m)}), at {seconds(m.retransmission_times(n))} s after the request: "
                  f"intervals {seconds(m.intervals(n + (1 if m.tlp else 0))[1 if m.tlp else 0:])} s from RTO {m.rto * 1000:g} ms, "
                  f"doubling, each up to its timer's slack late ({f'HZ={ctx.hz}' if ctx.hz else 'HZ unknown: widest tolerance'}"
                  f"{_stall_said(m)})"),
        observed="; ".join(filter(None, [" ".join(filter(None, [count(len(o.rtos), "RTO retransmission"), times("at", [o.at(r) for r in o.rtos])])),
                                         spaced("interval", gaps)])),
        detail="; ".join(problems),
    )


@check
def retransmission_abort(ctx: Context, capture: str, client: str, retries2, user_timeout=0) -> CheckResult:
    """The kernel gives up without an RST at the first RTO expiry past the boundary (tcp_retries2's time,
    or first RTO retransmission + TCP_USER_TIMEOUT), and recv() fails with ETIMEDOUT then; nothing more
    leaves the client, and a later send() fails with EPIPE."""
    name = "retransmission_abort"
    o = observe(ctx, capture, client)
    m = model_for(ctx, o, retries2, user_timeout)
    problems = []
    if o.first_rto is None:
        return CheckResult(name, False, expected=f"an abort after the RTO retransmissions ({_boundary(m)})",
                           observed="no RTO retransmission", detail="no RTO retransmission, so the kernel's clock for the abort never started")
    counts = m.retransmission_counts()
    w = m.abort(len(o.rtos) if len(o.rtos) in counts else max(counts), o.first_rto)
    if o.rst is not None:
        problems.append(f"an RST from the client at {o.at(o.rst):.3f} s: an abort on retransmissions sends none")
    err, later = o.error, None
    if ctx.unlogged(client):
        problems.append(f"{client}.log is missing, so the abort (which puts nothing on the wire) cannot be timed")
    elif err is None:
        problems.append(f"{client}.log has no 'error' event: recv() did not fail")
    else:
        at = err["wall"] - o.lost.ts
        if err.get("error") != "ETIMEDOUT":
            problems.append(f"recv() failed with {err.get('error')}, not ETIMEDOUT")
        if not w.low <= at <= w.high + WAKEUP_SLACK:
            problems.append(f"ETIMEDOUT at {at:.3f} s, outside {w.low:.3f}..{w.high + WAKEUP_SLACK:.3f} (the abort's window plus {WAKEUP_SLACK} s to wake the reader)")
        later = [e for e in o.flow.pick(sender=tf.CLIENT) if e.ts > err["wall"]]
        if later:
            problems.append(f"{count(len(later), 'segment')} from the client after the abort")
        after = next((e for e in ctx.events(client) if e.get("event") == "send_after_error"), None)
        if after is not None and after.get("error") != "EPIPE":
            problems.append(f"a send() after the abort gave {after.get('error')}, not EPIPE")
    observed = "; ".join(filter(None, [
        f"ETIMEDOUT at {err['wall'] - o.lost.ts:.3f} s" if err and err.get("error") == "ETIMEDOUT" else
        f"recv() -> {err.get('error')} at {err['wall'] - o.lost.ts:.3f} s" if err else "no error from recv()",
        f"first RTO retransmission at {o.first_rto:.3f} s",
        "RST sent" if o.rst else "no RST",
    ]))
    return CheckResult(
        name, not problems,
        expected=f"ETIMEDOUT at {w} after the request ({_boundary(m)}, counted from the first RTO retransmission), no RST, then EPIPE",
        observed=observed, detail="; ".join(problems),
    )


# --- hints: what a person most likely did wrong, said on a failure of these checks (lab/checks/hints.py) ---
@hint_for("tail_loss_probe", "rto_backoff", "retransmission_abort")
def hint(ctx: Context, r: CheckResult, hands: dict, steps: list[Step], by_kind: dict[str, Step]) -> Optional[str]:
    """The usual mistakes after the drop: the client stopped, or `finish`, before its kernel gave up. Earlier
    ones (the drop before the first exchange, on the wrong host or port) the general hints say."""
    events = events_of(ctx, "client")
    if not events or any(e.get("event") == "error" for e in events) or by_kind.get("drop_rule") is None:
        return None
    end = step_watching(steps, "error", "client")
    if any(e.get("event") == "interrupted" for e in events):
        return f"the client was stopped (Ctrl-C?) before its kernel gave up: leave it blocked in recv() until it fails with ETIMEDOUT ({end})"
    try:
        o = observe(ctx, "source", "client")
        m = model_for(ctx, o, (ctx.manifest.get("parameters") or {}).get("retries2", 15), (ctx.manifest.get("parameters") or {}).get("user_timeout", 0))
    except MissingInput:
        return None
    finished = ctx.finish_began("source")
    if finished is None or o.first_rto is None:
        return None
    due = m.abort(max(m.retransmission_counts()), o.first_rto).nominal
    return (f"`invoke finish` came {finished - o.lost.ts:.1f} s after the lost request; its kernel was due to give up at "
            f"{due:.1f} s: wait for {end} (`invoke watch` shows each resend)")
