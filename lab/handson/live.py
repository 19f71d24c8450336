"""What `invoke watch` shows as it happens: the lab's capture told as events (a connection, the first
exchange, the peer gone silent, each keepalive probe with its time since the last received segment,
a zero window, window probes and their intervals, the window open again, RST, FIN), and the kernel
model's next expected event beside them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..analysis import tcpflow as tf
from ..analysis.kernel_model import KeepaliveModel, PersistModel


@dataclass
class Told:
    ts: float  # wall clock, the capture's
    text: str


def story(flows: list[tf.Flow], options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int]) -> tuple[list[Told], str]:
    """The events of every connection in the capture, in time order, and what the model expects next
    (for the last connection). options: the client's logged keepalive options; rto: its logged RTO (s)."""
    told: list[Told] = []
    expect = ""
    for flow in flows:
        events, expect = _flow(flow, options, rto, hz)
        told += events
    return sorted(told, key=lambda t: t.ts), expect


def _flow(f: tf.Flow, options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int]) -> tuple[list[Told], str]:
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
    if zero is not None:
        out.append(Told(zero.ts, "zero window from the server: its receive buffer is full"))
        for k, p in enumerate(wprobes, 1):
            gap = p.ts - (wprobes[k - 2].ts if k > 1 else zero.ts)
            out.append(Told(p.ts, f"window probe {k}, {gap:.3f} s after the {'previous' if k > 1 else 'zero window'}"))
        opened = next((f.event(int(k)) for k in f.where(sender=tf.SERVER, after=zero.ts) if f.window[k] > 0), None)
        if opened is not None:
            out.append(Told(opened.ts, f"window open again: {opened.window} bytes"))
    for ev in f.pick(tf.RST_):
        out.append(Told(ev.ts, f"RST from the {ev.sender}" + (f", {ev.ts - anchor.ts:.3f} s after the last received segment: the kernel gave up"
                                                              if anchor and ev.sender == tf.CLIENT and probes else "")))
    for ev in f.pick(tf.FIN_):
        out.append(Told(ev.ts, f"FIN from the {ev.sender}"))
    return out, _next(f, anchor, probes, zero, wprobes, options, rto, hz)


def _next(f: tf.Flow, anchor: Optional[tf.Event], probes: list[tf.Event], zero: Optional[tf.Event], wprobes: list[tf.Event],
          options: Optional[dict[str, Any]], rto: Optional[float], hz: Optional[int]) -> str:
    if len(f.where(tf.RST_)) or len(f.where(tf.FIN_)):
        return ""
    if zero is not None and not any(f.window[k] > 0 for k in f.where(sender=tf.SERVER, after=zero.ts)):
        m = PersistModel(rto if rto is not None else 0.2, hz)
        k = len(wprobes)
        since = wprobes[-1].ts if wprobes else zero.ts
        w = m.interval(k)
        return (f"next window probe due {w.nominal:.3f} s after the {'last probe' if wprobes else 'zero window'}, "
                f"at {since - zero.ts + w.nominal:.3f} s into the zero window (window {since - zero.ts + w.low:.3f}..{since - zero.ts + w.high:.3f})")
    if not options or not options.get("keepalive") or anchor is None or not len(f.where(tf.DATA, tf.SERVER)):
        return ""
    m = KeepaliveModel(float(options["keepidle"]), float(options["keepintvl"]), int(options["keepcnt"]), int(options.get("user_timeout") or 0), hz)
    n, counts = len(probes), m.probe_counts()
    first, gap = m.first_probe(), m.interval()
    # Each probe's timer is armed by the one before: the next is due one interval after the last one sent.
    since = probes[-1].ts - anchor.ts if probes else 0.0
    if n < max(counts):
        w = gap if probes else first
        return (f"next keepalive probe due at {since + w.nominal:.2f} s after the last received segment, "
                f"window {since + w.low:.3f}..{since + w.high:.3f}")
    return (f"abort (RST, ETIMEDOUT) due at {since + gap.nominal:.2f} s after the last received segment, "
            f"window {since + gap.low:.3f}..{since + gap.high:.3f}")
