"""Checks for the syn-retries exercise: connect() to a port nobody listens on (an RST at once,
ECONNREFUSED), then to a port whose packets are dropped (SYNs resent on the SYN timer until
connect() fails with ETIMEDOUT), against SynRetryModel in lab/analysis/kernel_model.py.

Times count from the attempt's first SYN in the capture. The client logs, for each attempt, the local
port it bound before connect() ("connecting") and how connect() ended ("closed_port", "silent_port"),
so each attempt's packets are found by that port.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import TCP_RTO_MAX, SynRetryModel, release_version, syn_linear_timeouts
from ..analysis.pcap import ACK, RST
from ..errors import MissingInput
from ..spec.functions import check
from .hints import Step, events_of, hint_for, step_watching, typed_otherwise, wrong_rule
from .keepalive import WAKEUP_SLACK
from .result import CheckResult, count, counted, seconds, spaced, times

# A port nobody listens on is answered by the peer's kernel at once: measured 0.05 ms on a bridge.
# The limit leaves room for a slower path (VMs), and is far below the 1 s a resent SYN would take.
REFUSED_WITHIN = 0.010
LINEAR_SYSCTL = "net.ipv4.tcp_syn_linear_timeouts"
# The kernel release that brought tcp_syn_linear_timeouts (ccce324dabfe "tcp: make the first N SYN RTO
# backoffs linear"), with its default: used only where a folder records neither the sysctl nor the client's reading.
LINEAR_SINCE, LINEAR_DEFAULT = (6, 5), 4
TARGETS = {"closed_port": "the closed port", "silent_port": "the silent port"}


@dataclass
class Attempt:
    """One connect() of the client: its packets on the wire and how the program saw it end."""

    target: str  # "closed_port" or "silent_port"
    flow: tf.Flow
    ended: Optional[dict]  # the program's event for it; None where the run left no log (by hand)
    unlogged: bool

    @property
    def syns(self) -> list[tf.Event]:
        return self.flow.pick(tf.SYN_, tf.CLIENT)

    @property
    def first_syn(self) -> tf.Event:
        syns = self.syns
        if not syns:
            raise MissingInput(f"the capture has no SYN from the client on {self.flow}")
        return syns[0]


def attempt(ctx: Context, capture: str, client: str, target: str, port) -> Attempt:
    """The client's connect() to `target` ("closed_port" or "silent_port") on `port`, found by the local
    port the client logged (without its log, a run by hand: the first connection to that port)."""
    port = int(port)
    flows = ctx.flows(capture)
    if ctx.unlogged(client):
        found = [f for f in flows if f.server[1] == port]
        if not found:
            raise MissingInput(f"{client}.log is missing, and {capture}.pcap has no TCP connection to port {port}")
        return Attempt(target, found[0], None, True)
    connecting = next((e for e in ctx.events(client) if e["event"] == "connecting" and e.get("target") == target), None)
    if connecting is None:
        raise MissingInput(f"{client}.log has no 'connecting' event for {TARGETS[target]}: the client never tried it")
    local = int(connecting["local_port"])
    for f in flows:
        if f.client[1] == local and f.server[1] == port:
            return Attempt(target, f, ctx.event(client, target), False)
    raise MissingInput(f"{capture}.pcap has no connection from the client's port {local} to port {port}")


def linear_timeouts(ctx: Context, client: str) -> tuple[int, str]:
    """tcp_syn_linear_timeouts as the client's kernel had it, and where that was read: the client's own
    reading at connect time, else the value recorded when the run began, else the kernel release's default."""
    if not ctx.unlogged(client):
        options = ctx.event(client, "options")
        if options is not None and "syn_linear_timeouts" in options:
            value = options["syn_linear_timeouts"]
            return syn_linear_timeouts(value), f"{client}.log" if value is not None else f"{client}.log: no such sysctl"
    host = ctx.program_host(client)
    recorded = ctx.manifest.get("sysctls") or {}
    if host in recorded:
        value = ctx.sysctl(host, LINEAR_SYSCTL)
        return syn_linear_timeouts(value), "the manifest" if value is not None else "the manifest: no such sysctl"
    version = release_version(ctx.kernel_release)
    if version is None:
        raise MissingInput(f"neither {client}.log's 'options' event nor manifest.json (sysctls, kernel.release) says whether the "
                           f"kernel has {LINEAR_SYSCTL}; run the exercise's client.py, which reads it")
    return (LINEAR_DEFAULT, f"Linux {version[0]}.{version[1]}'s default") if version >= LINEAR_SINCE else (0, f"Linux {version[0]}.{version[1]}")


def model_for(ctx: Context, client: str, syn_retries, syncnt, user_timeout) -> SynRetryModel:
    """The kernel's SYN timer for this run: TCP_SYNCNT where set (it replaces tcp_syn_retries for the socket)."""
    retries = int(syncnt) if int(syncnt) > 0 else int(syn_retries)
    linear, _ = linear_timeouts(ctx, client)
    # From 6.15 the RTO's cap is per namespace (tcp_rto_max_ms); the time limit's part past it is counted at it.
    host = ctx.program_host(client)
    rto_max_ms = ctx.sysctl(host, "net.ipv4.tcp_rto_max_ms")
    return SynRetryModel(retries, linear, int(user_timeout), ctx.hz, rto_max=rto_max_ms / 1000 if rto_max_ms else TCP_RTO_MAX)


def governs(syn_retries, syncnt) -> str:
    return f"TCP_SYNCNT={int(syncnt)}" if int(syncnt) > 0 else f"tcp_syn_retries={int(syn_retries)}"


def kernel_said(m: SynRetryModel, ctx: Context, client: str) -> str:
    _, where = linear_timeouts(ctx, client)
    if m.linear:
        return f"tcp_syn_linear_timeouts={m.linear} ({where}): the first {m.linear} resent SYNs keep the 1 s RTO"
    return f"no linear timeouts ({where}): the RTO doubles from the first resent SYN"


def _ended(a: Attempt) -> str:
    e = a.ended
    if e is None:
        return "not logged" if a.unlogged else "no end logged"
    return f"connect() -> {e.get('error') or 'connected'} after {float(e.get('elapsed', 0)):.3f} s"


@check
def connection_refused(ctx: Context, capture: str, client: str, closed_port) -> CheckResult:
    """A port nobody listens on: the peer's kernel answers the SYN with RST,ACK (seq 0, ack = ISN+1) at
    once, and connect() fails with ECONNREFUSED; no SYN is resent."""
    name = "connection_refused"
    a = attempt(ctx, capture, client, "closed_port", closed_port)
    f = a.flow
    syn = a.first_syn
    rst = f.first(tf.RST_, tf.SERVER)
    within = max(REFUSED_WITHIN, 3 * (ctx.path_rtt_ms or 0) / 1000)
    problems = []
    resent = f.where(tf.SYN_RETRANSMISSION, tf.CLIENT)
    if len(resent):
        problems.append(f"{count(len(resent), 'SYN')} resent: the first SYN went unanswered")
    if f.first(tf.SYN_ACK, tf.SERVER) is not None:
        problems.append(f"the server answered SYN-ACK: something listens on port {closed_port}")
    observed = "SYN at 0.000 s; "
    if rst is None:
        problems.append("no RST from the server")
        observed += "no RST"
    else:
        delay = rst.ts - syn.ts
        raw_seq = rst.seg.seq
        acked = rst.rel_ack  # relative to the client's ISN
        observed += (f"{'RST,ACK' if rst.seg.flags & ACK else 'RST'} {delay * 1000:.3f} ms later, seq {raw_seq}, "
                     f"ack ISN+{acked}")
        if not rst.seg.flags & ACK:
            problems.append("the RST carries no ACK")
        if acked != 1:
            problems.append(f"the RST acknowledges ISN+{acked}, not ISN+1 (the SYN)")
        if raw_seq != 0:
            problems.append(f"the RST's seq is {raw_seq}, not 0 (a reset for a segment without ACK starts at 0)")
        if delay > within:
            problems.append(f"the RST came {delay * 1000:.3f} ms after the SYN, beyond {within * 1000:.0f} ms")
    unknown = ""
    e = a.ended
    if a.unlogged:
        unknown = f"what connect() returned could not be known: {client}.log is missing"
    elif e is None:
        problems.append(f"{client}.log has no 'closed_port' event: connect() did not return")
    elif e.get("error") != "ECONNREFUSED":
        problems.append(f"connect() -> {e.get('error') or 'connected'}, not ECONNREFUSED")
    elif rst is not None and abs(float(e["wall"]) - rst.ts) > WAKEUP_SLACK:
        problems.append(f"ECONNREFUSED reached the program {float(e['wall']) - rst.ts:+.3f} s from the RST (allowed ±{WAKEUP_SLACK})")
    return CheckResult(
        name, not problems,
        expected=(f"port {closed_port}, where nothing listens: RST,ACK with seq 0 and ack = ISN+1 within {within * 1000:.0f} ms "
                  f"of the SYN, no SYN resent; connect() -> ECONNREFUSED at once"),
        observed=f"{observed}; {_ended(a)}",
        detail="; ".join(problems + ([unknown] if unknown else [])),
    )


@check
def syn_retransmissions(ctx: Context, capture: str, client: str, syn_retries, syncnt=0, user_timeout=0, port=None) -> CheckResult:
    """The silent port: how many SYNs the kernel resends and each interval, against the kernel model
    (linear timeouts, count and time limits, the user timeout), the textbook's schedule said beside it."""
    name = "syn_retransmissions"
    m, a, counts = silent_attempt(ctx, capture, client, syn_retries, syncnt, user_timeout, port)
    f, syns, t0 = a.flow, a.syns, a.first_syn.ts
    offsets = [s.ts - t0 for s in syns[1:]]
    intervals = [b.ts - x.ts for x, b in zip(syns, syns[1:])]
    problems = []
    unlabelled = len(syns) - 1 - len(f.where(tf.SYN_RETRANSMISSION, tf.CLIENT))
    if unlabelled:
        problems.append(f"{count(unlabelled, 'later SYN')} with a new ISN: not the same connect()")
    if len(offsets) not in counts:
        problems.append(f"{count(len(offsets), 'SYN')} resent where {' or '.join(map(str, counts))} were due")
    for k, iv in enumerate(intervals, 1):
        w = m.interval(k)
        if not w.holds(iv):
            problems.append(f"SYN {k + 1} came {iv:.3f} s after the one before, outside {w.low:.3f}..{w.high:.3f} (RTO {w.nominal:g} s)")
    answered = f.where(sender=tf.SERVER)
    if len(answered):
        problems.append(f"the server answered ({count(len(answered), 'segment')}): the port was not silent")
    n = max(counts)
    book = m.textbook()
    return CheckResult(
        name, not problems,
        expected=(f"{counted(counts, 'resent SYN')} ({m.why()}; {governs(syn_retries, syncnt)}; {kernel_said(m, ctx, client)}), "
                  f"at {seconds(m.syn_times(n)) or 'none'} s after the first SYN, each interval "
                  f"{', '.join(f'{m.interval(k).nominal:g}' for k in range(1, n + 1)) or '-'} s plus at most the timer wheel's slack "
                  f"({f'HZ={ctx.hz}' if ctx.hz else 'HZ unknown: widest tolerance'}); "
                  f"the textbook (tcp(7)) says {count(len(book), 'resent SYN')}, at {seconds(book) or 'none'} s"),
        observed="; ".join(filter(None, [" ".join(filter(None, [count(len(offsets), "resent SYN"), times("at", offsets)])),
                                         spaced("interval", intervals)])),
        detail="; ".join(problems),
    )


@check
def connect_timed_out(ctx: Context, capture: str, client: str, syn_retries, syncnt=0, user_timeout=0, port=None) -> CheckResult:
    """The silent port: connect() fails with ETIMEDOUT at the model's failure time after the resent SYNs,
    and the client sends nothing more (no RST: a connection in SYN-SENT has nothing to reset)."""
    name = "connect_timed_out"
    m, a, counts = silent_attempt(ctx, capture, client, syn_retries, syncnt, user_timeout, port)
    f, syns, t0 = a.flow, a.syns, a.first_syn.ts
    n = len(syns) - 1 if len(syns) - 1 in counts else max(counts)
    window = m.failure(n)
    problems = []
    after = f.where(sender=tf.CLIENT, after=syns[-1].ts)
    if len(after):
        kinds = sorted({("RST" if f.flags[k] & RST else "segment") for k in after})
        problems.append(f"the client sent {count(len(after), 'more segment')} ({', '.join(kinds)}) after its last SYN")
    e = a.ended
    unknown = ""
    if a.unlogged:
        unknown = f"when connect() failed could not be known: {client}.log is missing"
        observed_end = "connect() not logged"
    elif e is None:
        problems.append(f"{client}.log has no 'silent_port' event: connect() never returned")
        observed_end = "connect() never returned"
    else:
        at = float(e["wall"]) - t0
        observed_end = f"connect() -> {e.get('error') or 'connected'} at {at:.3f} s"
        if e.get("error") != "ETIMEDOUT":
            problems.append(f"connect() -> {e.get('error') or 'connected'}, not ETIMEDOUT")
        elif not window.low <= at <= window.high + WAKEUP_SLACK:
            problems.append(f"ETIMEDOUT at {at:.3f} s, outside {window.low:.3f}..{window.high:.3f} (+{WAKEUP_SLACK} s to wake the program)")
        if syns[-1].ts > float(e["wall"]):
            problems.append("a SYN left after connect() had failed")
    rst = "no RST" if not any(f.flags[k] & RST for k in after) else "an RST"
    return CheckResult(
        name, not problems,
        expected=(f"after {count(n, 'resent SYN')}: ETIMEDOUT at {window} after the first SYN ({m.why()}), and no RST; "
                  f"the textbook (tcp(7)) gives up at {m.textbook_failure():g} s"),
        observed=f"{observed_end}; {count(len(syns) - 1, 'resent SYN')}" + (f", the last at {syns[-1].ts - t0:.3f} s" if len(syns) > 1 else "")
                 + f"; {rst}",
        detail="; ".join(problems + ([unknown] if unknown else [])),
    )


def _port(ctx: Context) -> int:
    port = (ctx.manifest.get("parameters") or {}).get("port")
    if port is None:
        raise MissingInput("manifest.json: parameters.port is missing; give the check a port: field, or re-run the exercise")
    return int(port)


def silent_attempt(ctx: Context, capture: str, client: str, syn_retries, syncnt, user_timeout, port) -> tuple[SynRetryModel, Attempt, list[int]]:
    """The model, the connect() to the silent port, and the retransmission counts the model allows."""
    m = model_for(ctx, client, syn_retries, syncnt, user_timeout)
    a = attempt(ctx, capture, client, "silent_port", port if port is not None else _port(ctx))
    return m, a, m.retransmission_counts()


# --- hints: what a person most likely did wrong, said on a failure of these checks (lab/checks/hints.py) ---
# Its checks' failures, said in terms of the steps: the drop on dest, the client's two connects, and the wait for
# the kernel to give up. Read from the client's log (the events of lab/checks/syn_retries.py's client); anything
# these do not explain gets no hint rather than a keepalive exercise's.


@hint_for("connection_refused", "syn_retransmissions", "connect_timed_out")
def hint(ctx: Context, r: CheckResult, hands: dict, steps: list[Step], by_kind: dict[str, Step]) -> Optional[str]:
    typed = typed_otherwise(ctx, r, hands, lambda: None)
    if typed:
        return typed
    drop = by_kind.get("drop_rule")
    client, end = step_watching(steps, "closed_port"), step_watching(steps, "silent_port")
    if not (ctx.folder / "client.log").exists():
        return (f"{client}: the client's log is missing, so what connect() returned could not be known: start it from "
                f"`invoke shell {client.host or 'source'}` (its events then reach the lab)") if client else ""
    events = events_of(ctx, "client")
    p = ctx.manifest.get("parameters") or {}
    port, closed = p.get("port"), p.get("closed_port")
    refused = next((e for e in events if e.get("event") == "closed_port"), None)
    silent = next((e for e in events if e.get("event") == "silent_port"), None)
    if drop is not None:
        wrong = wrong_rule(hands, drop)
        if wrong:
            return f"{drop}: {wrong}"
    if r.name == "connection_refused" and refused is not None and refused.get("error") != "ECONNREFUSED":
        if refused.get("error") is None:
            return f"something listens on dest's port {closed}: stop it, or give the client a --closed-port nothing listens on"
        return f"port {closed} did not answer with an RST: a rule on dest drops it too; drop only port {port} ({drop})"
    if silent is not None and silent.get("error") in ("ECONNREFUSED", None):
        what = "was refused at once" if silent.get("error") else "was answered"
        tried = next((e for e in events if e.get("event") == "connecting" and e.get("target") == "silent_port"), None)
        if drop is not None and drop.done_at is not None and tried is not None and drop.done_at > float(tried["wall"]):
            return (f"the connect to port {port} {what}: {drop} came {drop.done_at - float(tried['wall']):.1f} s after the client "
                    f"had tried it; drop the port first, then run the client ({client})")
        return f"the connect to port {port} {what}: nothing dropped the port on dest; {drop} first, then {client}" if drop else ""
    if silent is None:
        if any(e.get("event") == "interrupted" for e in events):
            return f"the client was stopped (Ctrl-C?) before its kernel gave up: leave it until connect() fails with ETIMEDOUT ({end})"
        tried = next((e for e in events if e.get("event") == "connecting" and e.get("target") == "silent_port"), None)
        finished = ctx.finish_began("observer")
        finished = finished if finished is not None else hands.get("finished")
        if tried is None or not finished:
            return f"the run did not reach its end: {end}" if end else ""
        try:
            due = model_for(ctx, "client", p["syn_retries"], p.get("syncnt") or 0, p.get("user_timeout") or 0).failure().nominal
        except (KeyError, ValueError, TypeError, MissingInput):
            return f"`invoke finish` came {float(finished) - float(tried['wall']):.1f} s after the first SYN, before the end: wait for {end}"
        return (f"`invoke finish` came {float(finished) - float(tried['wall']):.1f} s after the first SYN; the kernel was due to give "
                f"up at {due:.1f} s: wait for {end} (`invoke watch` counts the SYNs sent again)")
    return ""
