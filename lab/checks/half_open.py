"""Checks for the half-open exercise: the server's host forgot the connection (a reboot, which the lab
stands for by destroying dest's socket with `ss -K` while dest's outgoing packets of the port are
dropped), and the idle client learns it only from the RST that answers its next segment.

What the kernel does (measured on 6.18, and the same code in 6.1 and 6.12: tcp_keepalive_timer, and
tcp_v4_send_reset for a segment that finds no socket):
- nothing crosses while the client idles; with SO_KEEPALIVE its first probe leaves KEEPIDLE after the
  last segment it received (KeepaliveModel.first_probe), without keepalive only its next write does;
- dest has no socket for the segment, so it answers from the softirq that receives it with a bare RST
  (no ACK flag) whose seq is the segment's ack (RFC 793's reset generation for a closed port);
- the RST makes the client's blocked recv() fail with ECONNRESET at once (tcp_reset wakes the reader).

Each check reads one host's files, so every time it compares is on one clock: dest's capture with the
server's log (forgotten_quietly), the client's capture with the client's log (the other two).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import KeepaliveModel, Window
from ..analysis.pcap import ACK as _ACK
from ..errors import MissingInput
from ..spec.functions import check
from .keepalive import WAKEUP_SLACK
from .hints import Step, hint_for, step_watching
from .result import CheckResult, count

# The RST is an answer from dest's kernel in the softirq that receives the segment, the same as the
# SYN-ACK is to the SYN: so it comes about one handshake round trip after the segment that drew it.
# Allowed: twice the handshake's round trip (measured in the same capture, so a VM's slower path counts)
# plus RESET_MARGIN for scheduling on a loaded host, which stays far below the shortest TCP timer that
# could send a later answer (the 40 ms delayed ACK; the 200 ms RTO).
RESET_MARGIN = 0.010
# The client writes again when its select() times out after send_after: a user-space timer, late by
# process scheduling (poll() rounds its timeout up to the next millisecond, and Python adds its own
# bookkeeping), never early; the data then leaves at once (nothing is in flight, so Nagle holds nothing).
WRITE_SLACK = 0.050
# pcap timestamps and the clocks the programs read do not line up to the microsecond.
MEASURE_SLACK = 0.001
PROBE, DATA = "probe", "data"


@dataclass(frozen=True)
class HalfOpenModel:
    """What draws the RST on an idle connection whose peer forgot it, and when, from the last segment
    the client received: the first keepalive probe at KEEPIDLE (with keepalive), or the write at
    send_after (counted from the client's 'waiting', `lead` seconds after that segment), whichever
    comes first; both where their windows overlap."""

    keepalive: bool
    keepidle: float
    keepintvl: float
    keepcnt: int
    send_after: float
    hz: Optional[int]

    @property
    def keepalive_model(self) -> KeepaliveModel:
        return KeepaliveModel(self.keepidle, self.keepintvl, self.keepcnt, 0, self.hz)

    def probe(self) -> Window:
        return self.keepalive_model.first_probe()

    def write(self, lead: float = 0.0) -> Window:
        s = self.send_after + lead
        return Window(s, s - MEASURE_SLACK, s + WRITE_SLACK)

    def due(self, lead: float = 0.0) -> list[str]:
        """What may draw the RST: PROBE, DATA, or both where the kernel's and the program's timers overlap."""
        if not self.keepalive:
            return [DATA]
        probe, write = self.probe(), self.write(lead)
        if probe.high < write.low:
            return [PROBE]
        if write.high < probe.low:
            return [DATA]
        return [PROBE, DATA]

    def expected(self, kind: str, lead: float = 0.0) -> Window:
        return self.probe() if kind == PROBE else self.write(lead)

    def nominal(self, lead: float = 0.0) -> float:
        """When the client should learn, from the last received segment (the first of what is due)."""
        return min(self.expected(k, lead).nominal for k in self.due(lead))


def model_for(ctx: Context, keepalive, keepidle, keepintvl, keepcnt, send_after) -> HalfOpenModel:
    return HalfOpenModel(bool(int(keepalive)), float(keepidle), float(keepintvl), int(keepcnt), float(send_after), ctx.hz)


def reset_bound(flow: tf.Flow) -> float:
    """How soon after the segment that drew it the RST must come: see RESET_MARGIN."""
    return 2 * flow.handshake_rtt() + RESET_MARGIN


@dataclass
class Observed:
    """The client's side of the end of the connection, in one capture."""

    flow: tf.Flow
    idle_from: float  # when the client began to idle: its 'waiting' event, else the server's last data
    reset: Optional[tf.Event]  # the first RST from the server after that
    drawer: Optional[tf.Event]  # the client's last segment before the RST
    anchor: Optional[tf.Event]  # the last segment the client received before the drawer
    answered: int  # keepalive probes the server answered while the client idled (it had not forgotten yet)

    @property
    def lead(self) -> float:
        """How long after the last segment it received the client began to idle (its send_after counts from there)."""
        return max(self.idle_from - self.anchor.ts, 0.0) if self.anchor else 0.0

    def kind(self) -> str:
        d = self.drawer
        if d is None:
            return "nothing"
        if d.has(tf.KEEPALIVE):
            return PROBE
        if d.has(tf.DATA):
            return DATA
        return "other"

    def said(self) -> str:
        return {PROBE: "a keepalive probe", DATA: "data", "nothing": "nothing"}.get(self.kind(), "a segment that was neither probe nor data")


def observe(ctx: Context, capture: str, client: str) -> Observed:
    flow = ctx.client_flow(capture, client)
    data = flow.last(tf.DATA, tf.SERVER)
    if data is None:
        raise MissingInput(f"{capture}.pcap shows no reply from the server on {flow}")
    waiting = None if ctx.unlogged(client) else ctx.event(client, "waiting")
    idle_from = float(waiting["wall"]) if waiting else data.ts
    reset = flow.first(tf.RST_, tf.SERVER, since=data.ts)
    drawer = flow.last(sender=tf.CLIENT, before=reset.ts, without=(tf.RST_,)) if reset else None
    if drawer is not None and drawer.ts < idle_from:
        drawer = None  # the RST came while the client idled, before it sent anything: nothing drew it
    anchor = flow.last(sender=tf.SERVER, before=drawer.ts) if drawer else None
    end = drawer.ts if drawer else (reset.ts if reset else float("inf"))
    answered = len(flow.where(tf.KEEPALIVE_ACK, tf.SERVER, after=idle_from, before=end))
    return Observed(flow, idle_from, reset, drawer, anchor, answered)


@check
def forgotten_quietly(ctx: Context, capture: str, client: str, server: str) -> CheckResult:
    """dest lost its socket (the server's recv() failed with ECONNABORTED) and sent nothing about it: from
    that moment to the client's next segment, dest's capture shows nothing leaving dest."""
    name = "forgotten_quietly"
    flow = ctx.client_flow(capture, client)
    last_data = flow.last(tf.DATA, tf.SERVER)
    if last_data is None:
        raise MissingInput(f"{capture}.pcap shows no reply from the server on {flow}")
    expected = ("the server's recv() fails with ECONNABORTED (its socket destroyed) after the exchange, and from then "
                f"nothing leaves dest on the connection until the client's next segment arrives ({capture}.pcap, dest's clock)")
    problems: list[str] = []
    unknown = ""
    lost = None
    if ctx.unlogged(server):
        unknown = f"when dest forgot could not be known: {server}.log is missing; judged from its last reply on"
        since = last_data.ts
    else:
        events = ctx.events(server)
        lost = next((e for e in events if e.get("event") == "lost"), None)
        ended = next((e for e in events if e.get("event") in ("closed", "stopped")), None)
        if lost is None:
            problems.append(f"{server}.log has no 'lost' event: its socket was never destroyed"
                            + (f" (it logged '{ended['event']}' instead)" if ended else ""))
            since = last_data.ts
        else:
            since = float(lost["wall"])
            if lost.get("error") != "ECONNABORTED":
                problems.append(f"the server's recv() failed with {lost.get('error')}, not ECONNABORTED: the socket was not destroyed on dest")
            if since < last_data.ts:
                problems.append(f"the socket was destroyed {last_data.ts - since:.3f} s before the server's reply left")
    # The client's next segment after the forget, as dest received it; and everything dest sent after its
    # reply until then (tcp_abort's RST leaves before the server's recv() wakes to log 'lost').
    arrived = flow.first(sender=tf.CLIENT, after=since)
    until = arrived.ts if arrived else float("inf")
    sent = flow.pick(sender=tf.SERVER, after=last_data.ts, before=until)
    for e in sent:
        what = "an RST" if e.has(tf.RST_) else "a FIN" if e.has(tf.FIN_) else "data" if e.has(tf.DATA) else "a segment"
        dt = e.ts - since
        problems.append(f"dest sent {what} {abs(dt):.3f} s {'after' if dt >= 0 else 'before'} it forgot, before the client sent anything")
    if arrived is None:
        problems.append("nothing from the client reached dest after the forget")
    at = f"socket destroyed ({lost.get('error')}) {since - last_data.ts:.3f} s after the server's reply" if lost else (
        "no 'lost' event" if not unknown else "the forget not logged")
    nxt = f"the client's next segment {arrived.ts - since:.3f} s later" if arrived else "no segment from the client after it"
    observed = f"{at}; {count(len(sent), 'segment')} from dest in between; {nxt}"
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems + ([unknown] if unknown else [])))


@check
def probe_draws_reset(ctx: Context, capture: str, client: str, keepalive, keepidle, keepintvl, keepcnt, send_after) -> CheckResult:
    """With keepalive, the first probe KEEPIDLE after the last received segment (or, without, the data written
    send_after into the idle time) draws a bare RST from dest with seq = its ack, at once."""
    name = "probe_draws_reset"
    m = model_for(ctx, keepalive, keepidle, keepintvl, keepcnt, send_after)
    o = observe(ctx, capture, client)
    flow = o.flow
    lead = o.lead
    due = m.due(lead)
    bound = reset_bound(flow)
    said = {PROBE: f"the first keepalive probe at {m.probe()} after the last received segment",
            DATA: f"the data written at {m.write(lead)} after the last received segment (send_after={m.send_after:g} s)"}
    expected = (" or ".join(said[k] for k in due)
                + f"; it draws a bare RST from dest (seq = its ack) within {bound * 1000:.1f} ms"
                + ("; no probe (keepalive off)" if not m.keepalive else "; the probe is the first: no earlier ones"))
    problems: list[str] = []
    probes = flow.pick(tf.KEEPALIVE, tf.CLIENT, after=o.idle_from)
    if not m.keepalive and probes:
        problems.append(f"{count(len(probes), 'keepalive probe')} with keepalive off")
    if o.answered:
        problems.append(f"dest answered {count(o.answered, 'probe')} with an ACK: it had not forgotten the connection yet")
    if o.reset is None:
        problems.append("no RST from dest")
        observed = f"{count(len(probes), 'probe')}, no RST from dest"
        return CheckResult(name, False, expected=expected, observed=observed, detail="; ".join(problems))
    kind = o.kind()
    if o.drawer is None:
        problems.append("the RST came before the client sent anything: dest announced it (not a forgotten connection)")
        return CheckResult(name, False, expected=expected, observed=f"RST {o.reset.ts - o.idle_from:.3f} s into the idle time, drawn by nothing",
                           detail="; ".join(problems))
    at = o.drawer.ts - o.anchor.ts if o.anchor else float("nan")
    gap = o.reset.ts - o.drawer.ts
    if kind not in due:
        problems.append(f"{o.said()} drew the RST where {' or '.join(due)} was due")
    elif not m.expected(kind, lead).holds(at):
        w = m.expected(kind, lead)
        problems.append(f"{o.said()} at {at:.3f} s, outside {w.low:.3f}..{w.high:.3f}")
    if o.reset.seg.flags & _ACK:
        problems.append("the RST carries an ACK: not the bare RST a host without the socket sends")
    if o.reset.rel_seq != o.drawer.rel_ack:
        problems.append(f"RST seq {o.reset.rel_seq} (relative) is not the {kind}'s ack {o.drawer.rel_ack}")
    if not 0 <= gap <= bound:
        problems.append(f"the RST came {gap * 1000:.3f} ms after the {kind}, beyond {bound * 1000:.1f} ms")
    observed = (f"{o.said()} at {at:.3f} s after the last received segment"
                + (f" ({count(len(probes), 'probe')} in all)" if probes and kind != PROBE else "")
                + f"; RST {gap * 1000:.3f} ms later, seq {'= its ack' if o.reset.rel_seq == o.drawer.rel_ack else o.reset.rel_seq}"
                + (", with ACK" if o.reset.seg.flags & _ACK else ", no ACK"))
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


@check
def reset_reported(ctx: Context, capture: str, client: str) -> CheckResult:
    """The client's recv() (or send()) failed with ECONNRESET when the RST arrived, and not before."""
    name = "reset_reported"
    o = observe(ctx, capture, client)
    expected = f"recv() fails with ECONNRESET when the RST arrives (within {WAKEUP_SLACK * 1000:.0f} ms: waking the reader, no timer)"
    if ctx.unlogged(client):
        return CheckResult(name, False, expected=expected, observed="client.log missing",
                           detail=f"what the client saw could not be known: {client}.log is missing")
    err = ctx.event(client, "error")
    problems = []
    if o.reset is None:
        problems.append("no RST from dest in the capture")
    if err is None:
        problems.append(f"{client}.log has no 'error' event: the client never learnt the connection was gone")
        observed = "no error" + (f"; RST at {o.reset.ts - o.idle_from:.3f} s into the idle time" if o.reset else "")
        return CheckResult(name, False, expected=expected, observed=observed, detail="; ".join(problems))
    call = err.get("call", "recv")
    if err.get("error") != "ECONNRESET":
        problems.append(f"{call}() failed with {err.get('error')}, not ECONNRESET")
    late = float(err["wall"]) - o.reset.ts if o.reset else None
    if late is not None and not -MEASURE_SLACK <= late <= WAKEUP_SLACK:
        problems.append(f"{err.get('error')} reached the program {late * 1000:+.3f} ms from the RST (allowed 0..{WAKEUP_SLACK * 1000:.0f})")
    observed = f"{call}() -> {err.get('error')}" + (f" {late * 1000:.3f} ms after the RST" if late is not None else "")
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


# --- hints: what a person most likely did wrong, said on a failure of these checks (lab/checks/hints.py) ---
# Its checks' failures, said in terms of the step that makes dest forget (the one done when the server
# logs 'lost'); the details matched are lab/checks/half_open.py's own. Anything else falls to the general hints (lab/checks/hints.py).
@hint_for("forgotten_quietly", "probe_draws_reset", "reset_reported")
def hint(ctx: Context, r: CheckResult, hands: dict, steps: list[Step], by_kind: dict[str, Step]) -> Optional[str]:
    forget = step_watching(steps, "lost")
    if forget is None:
        return None
    d = r.detail
    if "dest sent an RST" in d or "the RST came before the client sent anything" in d:
        return (f"{forget}: `ss -K` alone sends an RST (the kernel's tcp_abort), which tells the client at once; drop dest's "
                f"outgoing packets of the port before it and lift the drop after, as the step's one command line does")
    if "dest sent a FIN" in d or "it logged 'stopped'" in d or "it logged 'closed'" in d:
        return (f"{forget}: the server was stopped (Ctrl-C?), and a socket that closes sends a FIN; leave the server running "
                f"and destroy its socket with the step's command")
    if "no 'lost' event" in d or "no RST from dest" in d:
        return f"{forget} was not seen done: dest still holds the connection" if forget.done_at is None else None
    if "had not forgotten" in d:
        keepidle = (ctx.manifest.get("parameters") or {}).get("keepidle")
        return (f"{forget} came after the client's first probe, which dest answered: type it while the client idles, "
                f"within {keepidle} s of the reply")
    return None
