"""Checks for the tcp-states exercise: the kernel's traced state transitions, each side's sequence
and causes, the handshake against the configured latency, and the trace against the packets (read
as lab/analysis/states.py lines them up)."""
from __future__ import annotations

from ..analysis import statetrace
from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.states import MATCH_MS, SHOWN, TIMELINE_COLUMNS, match_window_ms, packet_due, packet_for, peer_fin, sides, timeline
from ..errors import MissingInput
from ..spec.functions import check
from .result import CheckResult


def _label(t: statetrace.Transition) -> str:
    return f"{t.old}>{t.new} {t.cause}"


@check
def state_transitions(ctx: Context, side: str, program: str, expect: list, capture: str = "") -> CheckResult:
    """One side's transitions, in order, each with its cause (a received packet, a system call, a timer).
    With the side's capture, its timeline shows the segment behind each transition, and TIME_WAIT
    where the packets show it begins."""
    name = "state_transitions"
    try:
        s = sides(ctx, program, need=(side,))
    except MissingInput as e:  # named for its side, so the two sides' verdicts stay apart
        return CheckResult(f"{name} ({side})", False, "the inputs this check reads", "missing", str(e))
    got = s.client if side == "client" else s.server
    flow = ctx.client_flow(capture, program) if capture else None
    time_wait = peer_fin(ctx, capture, program, side) if capture else None
    observed = [_label(t) for t in got]
    want = [" ".join(str(e).split()) for e in expect]
    ok = observed == want
    detail = ""
    if not ok:
        first = next((i for i, (a, b) in enumerate(zip(observed, want)) if a != b), min(len(observed), len(want)))
        detail = (f"from transition {first + 1}: expected {want[first] if first < len(want) else 'nothing more'}, "
                  f"traced {observed[first] if first < len(observed) else 'nothing more'}")
    where = f", {capture}.pcap" if capture else ""
    table = {"title": f"{side} ({program}'s connection{where}): ms from the writer's connect()",
             "columns": TIMELINE_COLUMNS, "rows": timeline(got, s.t0, flow, side, time_wait, match_window_ms(ctx))}
    return CheckResult(f"{name} ({side})", ok, expected=", ".join(want), observed=", ".join(observed), detail=detail, table=table)


@check
def handshake_rtt(ctx: Context, capture: str, program: str, latency_ms, tolerance_ms=2.0) -> CheckResult:
    """The handshake takes one round trip: 2 x the one-way latency, seen both in the client's capture
    (SYN to SYN+ACK) and in the trace (SYN_SENT to ESTABLISHED); never less, at most the path's own
    slowest round trip (measured before the delay was added), plus twice the user-space delay line's
    latest frame (SYN and SYN+ACK may each be that late; netem has none), plus tolerance_ms more."""
    name = "handshake_rtt"
    want, tol = 2 * float(latency_ms), float(tolerance_ms)
    path, late = ctx.path_rtt_ms or 0.0, ctx.delay_late_ms
    flow = ctx.client_flow(capture, program)
    syn, synack = flow.first(tf.SYN_, tf.CLIENT), flow.first(tf.SYN_ACK, tf.SERVER)
    if syn is None or synack is None:
        raise MissingInput(f"{capture}.pcap lacks the SYN or the SYN+ACK of {flow}")
    pcap_ms = (synack.ts - syn.ts) * 1000
    s = sides(ctx, program, need=("client",))
    sent = next((t for t in s.client if t.new == "SYN_SENT"), None)
    est = next((t for t in s.client if (t.old, t.new) == ("SYN_SENT", "ESTABLISHED")), None)
    trace_ms = (est.mono - sent.mono) * 1000 if sent and est else None
    measured = [("capture", pcap_ms)] + ([("trace", trace_ms)] if trace_ms is not None else [])
    bad = [f"{what} {ms:.3f} ms" for what, ms in measured if not want - 0.2 <= ms <= want + path + 2 * late + tol]
    observed = ", ".join(f"{what}: {ms:.3f} ms" for what, ms in measured) + ("" if trace_ms is not None else "; the trace lacks SYN_SENT -> ESTABLISHED")
    ok = not bad and trace_ms is not None
    allowed = "up to " + (f"{path:.3f} ms (the path's own slowest round trip, measured before the delay) + " if ctx.path_rtt_ms is not None else "") \
        + (f"2 x {late:.3f} ms (the delay line's latest frame) + " if late else "") + f"{tol:g} ms more"
    return CheckResult(name, ok, expected=f"{want:.3f} ms (2 x {float(latency_ms):g} ms), {allowed}",
                       observed=observed, detail="; ".join(bad))


@check
def trace_agrees_with_pcap(ctx: Context, program: str, client_capture: str = "source", server_capture: str = "dest") -> CheckResult:
    """Each traced transition sits next to its packet in that side's capture: the received segment that
    caused it (just before), or the segment its system call sent (SYN at once, a FIN once queued data is
    out); and every SYN, SYN+ACK and FIN in the captures is matched by a transition."""
    name = "trace_agrees_with_pcap"
    s = sides(ctx, program)
    problems, matched, window = [], 0, match_window_ms(ctx)
    for side, transitions, capture in (("client", s.client, client_capture), ("server", s.server, server_capture)):
        flow = ctx.client_flow(capture, program)
        me, peer = (tf.CLIENT, tf.SERVER) if side == "client" else (tf.SERVER, tf.CLIENT)
        for t in transitions:
            if not packet_due(t):
                continue  # no packet belongs to it (listen(), a listener closed)
            if packet_for(flow, t, me, peer, window) is None:
                problems.append(f"{side} {t.old}->{t.new} at {(t.wall - s.t0) * 1000:.3f} ms has no matching packet in {capture}.pcap")
            else:
                matched += 1
        # The other way round: handshake and teardown segments each belong to a transition.
        for label, sender, moves in ((tf.SYN_, tf.CLIENT, [("CLOSE", "SYN_SENT"), ("LISTEN", "SYN_RECV")]),
                                     (tf.SYN_ACK, tf.SERVER, [("SYN_SENT", "ESTABLISHED"), ("LISTEN", "SYN_RECV")]),
                                     (tf.FIN_, tf.CLIENT, [("ESTABLISHED", "FIN_WAIT1"), ("ESTABLISHED", "CLOSE_WAIT")]),
                                     (tf.FIN_, tf.SERVER, [("CLOSE_WAIT", "LAST_ACK"), ("FIN_WAIT2", "CLOSE"), ("FIN_WAIT1", "CLOSING")])):
            segs = len(flow.where(label, sender, without=(tf.RETRANSMISSION,)))
            mine = sum(1 for t in transitions if (t.old, t.new) in moves)
            if segs and not mine:
                problems.append(f"{capture}.pcap has {SHOWN[label]} from the {sender} and the {side}'s trace no transition for it")
    within = f"{MATCH_MS:g} ms" + (f" + {ctx.path_rtt_ms:.3f} ms, the path's own slowest round trip" if ctx.path_rtt_ms else "")
    return CheckResult(name, not problems, expected=f"every transition next to its packet (within {within}), "
                       "every SYN, SYN+ACK and FIN next to a transition",
                       observed=f"{matched} transitions matched to packets", detail="; ".join(problems))
