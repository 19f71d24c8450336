"""Measures: figures read from one results folder, for comparing the runs of a sweep
(`--set latency=0,10,20`). exercise.yml lists them under `measures:`; like checks, they travel in the
manifest and read nothing but the folder.

A measure returns groups of named durations in milliseconds ({group: {figure: ms}}), in the order a
reader should see them; a figure it cannot read is None. A figure whose name ends in COUNT (packets)
or BYTES is a number, not a duration. "RTT measured" and "RTT configured", when given, are what the
comparison sets the other figures against; "model: ..." figures are the kernel model's, set beside
what was measured, so runs on several kernels (`--kernels`) show where each one differs from it.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.pcap import ACK
from ..analysis.states import peer_fin, sides
from ..checks.keepalive import model_for, observe
from ..checks.persist import observe_stall, persist_model
from ..spec import functions
from ..spec.functions import measure

Figures = dict[str, dict[str, Optional[float]]]
RTT_MEASURED, RTT_CONFIGURED = "RTT measured", "RTT configured"
COUNT, BYTES = " (count)", " (bytes)"
NOT_MS = (COUNT, BYTES)
MODEL = "model: "
# A figure the textbook (tcp(7), the RFCs) gives, beside the measured one: like the model's, a reference,
# never a difference between runs.
TEXTBOOK = "textbook: "
REFERENCES = (MODEL, TEXTBOOK)
# What each measure's figures show of the kernel, for naming where Linux changed between the kernels
# compared (lab/analysis/kernel_model.py's CHANGES).
TOPICS = {"keepalive_times": {"keepalive"}, "persist_times": {"persist", "window"}, "state_times": {"states"}}
# The probes a table shows one by one; later ones are in the count.
PROBES_SHOWN = 8


def run(folder: Path) -> tuple[Figures, list[str]]:
    """Every figure the folder's manifest asks for, and what could not be measured (one line each)."""
    figures: Figures = {}
    problems: list[str] = []
    for o in functions.run(Context(folder), "measure"):
        if o.ok:
            figures.update(o.value)
        else:
            problems.append(f"{o.name}: {o.problem}" if o.reason == "missing" else o.problem)
    return figures, problems


def flat(figures: Figures) -> dict[str, Optional[float]]:
    return {name: v for group in figures.values() for name, v in group.items()}


def _ms(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return (b - a) * 1000 if a is not None and b is not None else None


@measure
def state_times(ctx: Context, program: str, latency_ms, client_capture: str = "source", server_capture: str = "dest") -> Figures:
    """The handshake, the transfer and the time each side's connection spent in each state.

    From the trace: how long each state lasted, between one transition and the next. From the
    captures: the round trip (the client's SYN to the SYN+ACK), the transfer (the client's first
    data byte out to the server's ACK of its last), the server's SYN_RECV (the request socket
    Linux keeps from the SYN to the handshake's ACK, which the tracepoint does not see) and the end
    of the client's FIN_WAIT2 (the peer's FIN: Linux traces no TIME_WAIT)."""
    s = sides(ctx, program)
    client = ctx.client_flow(client_capture, program)
    syn, synack = client.first(tf.SYN_, tf.CLIENT), client.first(tf.SYN_ACK, tf.SERVER)
    sent = next((t.wall for t in s.client if t.new == "SYN_SENT"), None)
    est = next((t.wall for t in s.client if (t.old, t.new) == ("SYN_SENT", "ESTABLISHED")), None)
    time_wait = peer_fin(ctx, client_capture, program, "client")
    server = ctx.client_flow(server_capture, program)
    accepted = [t for t in s.server if t.remote[1] != 0]  # the listener's remote port is 0
    return {
        "round trip": {
            RTT_CONFIGURED: 2 * float(latency_ms),
            RTT_MEASURED: _ms(syn.ts if syn else None, synack.ts if synack else None),
            "handshake": _ms(sent, est),  # the client's SYN_SENT
            "transfer": _transfer_ms(client),
        },
        "client states": {k: v for k, v in _durations("client", s.client, {"FIN_WAIT2": time_wait}).items()
                          if k != "client SYN_SENT"},
        "server states": {"server SYN_RECV": _request_socket_ms(server),
                          **{k: v for k, v in _durations("server", accepted, {}).items() if k != "server SYN_RECV"}},
    }


@measure
def keepalive_times(ctx: Context, capture: str, client: str, keepidle, keepintvl, keepcnt, user_timeout=0) -> Figures:
    """The keepalive probes and the abort, from the last segment the client received, beside the
    kernel model's nominal times (which the kernel may exceed by its timer slack, never undercut)."""
    m = model_for(ctx, keepidle, keepintvl, keepcnt, user_timeout)
    o = observe(ctx, capture, client)
    offsets = o.offsets()
    due = max(m.probe_counts())
    probes: dict[str, Optional[float]] = {f"probes{COUNT}": float(len(o.probes)), f"{MODEL}probes{COUNT}": float(due)}
    for k, nominal in enumerate(m.probe_times(min(max(due, len(offsets)), PROBES_SHOWN))):
        probes[f"probe {k + 1}"] = offsets[k] * 1000 if k < len(offsets) else None
        probes[f"{MODEL}probe {k + 1}"] = nominal * 1000
    n = len(o.probes) if len(o.probes) in m.probe_counts() else due
    abort = {"abort (RST)": (o.rst.ts - o.anchor.ts) * 1000 if o.rst else None, f"{MODEL}abort (RST)": m.abort(n).nominal * 1000}
    # Both groups count from the last segment the client received (where the kernel's idle time starts).
    return {"keepalive probes": probes, "keepalive abort": abort}


@measure
def persist_times(ctx: Context, capture: str, client: str) -> Figures:
    """The zero-window probes, from the moment the window closed (its RTO first), beside the kernel model's schedule
    (max(RTO, 200 ms), doubling), with the RTO the sender reported."""
    s = observe_stall(ctx, capture, client)
    m = persist_model(ctx, client)
    stall = s.seconds if s.seconds is not None else float(s.flow.ts[-1]) - s.closed.ts
    at = [p.ts - s.closed.ts for p in s.probes]
    schedule = m.schedule(stall)
    # How much the receiver took before its window closed: the same programs and buffer sizes give
    # different amounts where the kernel's window accounting differs (6.1 against 6.6 and later).
    probes: dict[str, Optional[float]] = {f"acknowledged at the zero window{BYTES}": float(s.closed.rel_ack - 1),
                                          "RTO": m.rto * 1000, f"probes{COUNT}": float(len(at)), f"{MODEL}probes{COUNT}": float(len(schedule))}
    for k in range(min(max(len(at), len(schedule)), PROBES_SHOWN)):
        probes[f"probe {k + 1}"] = at[k] * 1000 if k < len(at) else None
        probes[f"{MODEL}probe {k + 1}"] = schedule[k] * 1000 if k < len(schedule) else None
    return {"window probes": probes}


def _durations(side: str, transitions: list, ends: dict[str, Optional[float]]) -> Figures:
    """How long each state lasted: from the transition into it to the next one (or to `ends`' time)."""
    out: Figures = {}
    for a, b in zip(transitions, transitions[1:] + [None]):
        if a.new in ("CLOSE", "LISTEN"):
            continue
        end = ends.get(a.new)
        if end is None:
            end = b.wall if b is not None else None
        if end is not None:
            end = max(end, a.wall)  # the peer's FIN may come with the ACK that ended FIN_WAIT1
        out[f"{side} {a.new}"] = _ms(a.wall, end)
    return out


def _transfer_ms(flow: tf.Flow) -> Optional[float]:
    data = flow.where(tf.DATA, tf.CLIENT)
    if not len(data):
        return None
    end = max(int(flow.rel_seq[k]) + int(flow.plen[k]) for k in data)
    acks = [k for k in flow.where(sender=tf.SERVER) if flow.flags[k] & ACK and flow.rel_ack[k] >= end]
    return _ms(float(flow.ts[data[0]]), float(flow.ts[acks[0]])) if acks else None


def _request_socket_ms(flow: tf.Flow) -> Optional[float]:
    """From the SYN's arrival to the handshake's ACK (the first segment acknowledging the SYN+ACK)."""
    syn = flow.first(tf.SYN_, tf.CLIENT)
    if syn is None:
        return None
    acks = [k for k in flow.where(sender=tf.CLIENT, after=syn.ts) if flow.flags[k] & ACK and flow.rel_ack[k] == 1]
    return _ms(syn.ts, float(flow.ts[acks[0]])) if acks else None


# --- retransmission-timeout ---
@measure
def retransmission_times(ctx: Context, capture: str, client: str, retries2, user_timeout=0) -> Figures:
    """The tail loss probe, each RTO retransmission and the abort (ETIMEDOUT), from the send of the lost
    request, beside the kernel model's nominal times; a sweep over user_timeout draws the abort against U."""
    from ..checks.retransmission import model_for as rto_model, observe as observe_rto
    o = observe_rto(ctx, capture, client)
    m = rto_model(ctx, o, retries2, user_timeout)
    counts = m.retransmission_counts()
    n = len(o.rtos) if len(o.rtos) in counts else max(counts)  # a boundary within timer slack allows either
    resends: dict[str, Optional[float]] = {"RTO (TCP_INFO)": m.rto * 1000, "tail loss probe": o.at(o.probes[0]) * 1000 if o.probes else None,
                                           f"{MODEL}tail loss probe": m.pto * 1000 if m.tlp else None,
                                           f"RTO retransmissions{COUNT}": float(len(o.rtos)), f"{MODEL}RTO retransmissions{COUNT}": float(n)}
    model_times = m.retransmission_times(n)
    for k in range(min(max(n, len(o.rtos)), PROBES_SHOWN)):
        resends[f"RTO {k + 1}"] = o.at(o.rtos[k]) * 1000 if k < len(o.rtos) else None
        resends[f"{MODEL}RTO {k + 1}"] = model_times[k] * 1000 if k < len(model_times) else None
    err = o.error
    abort = {"abort (ETIMEDOUT)": (err["wall"] - o.lost.ts) * 1000 if err else None,
             f"{MODEL}abort (ETIMEDOUT)": m.abort(n, o.first_rto).nominal * 1000 if o.first_rto is not None else None}
    return {"retransmissions": resends, "abort": abort}


TOPICS["retransmission_times"] = {"retransmission"}


# --- syn-retries ---
@measure
def syn_times(ctx: Context, capture: str, client: str, syn_retries, syncnt=0, user_timeout=0, port=None) -> Figures:
    """connect() to a silent port: each resent SYN and the ETIMEDOUT, from the first SYN, beside the
    kernel model's nominal times and the textbook's (tcp(7): 1, 3, 7 ... s); and how soon a closed
    port's RST came."""
    from ..checks.syn_retries import attempt, silent_attempt
    m, a, counts = silent_attempt(ctx, capture, client, syn_retries, syncnt, user_timeout, port)
    syns = a.syns
    t0 = a.first_syn.ts
    at = [s.ts - t0 for s in syns[1:]]
    due = len(at) if len(at) in counts else max(counts)
    model, book = m.syn_times(due), m.textbook()
    resent: dict[str, Optional[float]] = {f"resent SYNs{COUNT}": float(len(at)), f"{MODEL}resent SYNs{COUNT}": float(due),
                                          f"{TEXTBOOK}resent SYNs{COUNT}": float(len(book))}
    for k in range(min(max(len(at), due, len(book)), PROBES_SHOWN)):
        resent[f"SYN {k + 2}"] = at[k] * 1000 if k < len(at) else None
        resent[f"{MODEL}SYN {k + 2}"] = model[k] * 1000 if k < len(model) else None
        resent[f"{TEXTBOOK}SYN {k + 2}"] = book[k] * 1000 if k < len(book) else None
    ended = None if a.unlogged else a.ended
    failed = {"ETIMEDOUT": (float(ended["wall"]) - t0) * 1000 if ended and ended.get("error") == "ETIMEDOUT" else None,
              f"{MODEL}ETIMEDOUT": m.failure(due).nominal * 1000, f"{TEXTBOOK}ETIMEDOUT": m.textbook_failure() * 1000}
    figures: Figures = {"resent SYNs": resent, "connect() fails": failed}
    closed_port = (ctx.manifest.get("parameters") or {}).get("closed_port")
    if closed_port:
        c = attempt(ctx, capture, client, "closed_port", closed_port)
        rst = c.flow.first(tf.RST_, tf.SERVER)
        figures["closed port"] = {"RST after the SYN": _ms(c.first_syn.ts, rst.ts) if rst else None}
    return figures


TOPICS["syn_times"] = {"syn"}


# --- nagle-delayed-ack ---
TOPICS["request_times"] = {"delayed_ack"}


@measure
def request_times(ctx: Context, capture: str, client: str, nodelay, quickack, writes, requests, size) -> Figures:
    """Each request's latency from the packets (first byte to the reply) and the wait for the server's ACK of its
    first segment, beside the kernel model's (a fast request's model figure is two round trips, the answer taken
    as one; a delayed one's the 40 ms delayed-ACK timer plus them), with the count of delayed requests and the
    medians."""
    from ..checks import nagle
    m = nagle.model_for(ctx, nodelay, quickack, writes)
    o = nagle.observe(ctx, capture, client)
    lat = [r.latency for r in o.requests]
    delayed = [r for r in o.requests if r.latency is not None and r.latency >= m.ack_wait().low]
    n = int(requests)
    counts: dict[str, Optional[float]] = {
        f"delayed requests{COUNT}": float(len(delayed)),
        f"{MODEL}delayed requests{COUNT}": float(sum(m.delayed(k) for k in range(1, n + 1))),
        f"requests{COUNT}": float(len(o.requests)),
    }
    per: dict[str, Optional[float]] = {}
    for k in range(1, min(max(n, len(o.requests)), PROBES_SHOWN) + 1):
        per[f"request {k}"] = lat[k - 1] * 1000 if k <= len(lat) and lat[k - 1] is not None else None
        per[f"{MODEL}request {k}"] = m.latency(k, o.rtt).nominal * 1000
    fast = [x for x in lat if x is not None and x < m.ack_wait().low]
    acks = [r.ack_wait for r in o.requests if r.ack_wait is not None and r.first_ack.has(tf.DELAYED_ACK)]
    medians: dict[str, Optional[float]] = {
        RTT_MEASURED: o.rtt * 1000,
        "median fast request": statistics.median(fast) * 1000 if fast else None,
        "median delayed request": statistics.median([r.latency for r in delayed]) * 1000 if delayed else None,
        "median delayed ACK": statistics.median(acks) * 1000 if acks else None,
        f"{MODEL}delayed ACK": m.ack_wait().nominal * 1000,
    }
    return {"requests": counts, "request latency": per, "medians": medians}



# --- time-wait ---
@measure
def time_wait_times(ctx: Context, capture: str, client: str, watcher: str) -> Figures:
    """The client's TIME_WAIT as ss showed it, from its final ACK: the last reading with it and the first
    without, beside the kernel's 60 s; and the first connect() from the same port that got through."""
    # Imported here: this block is the time-wait exercise's own part of a shared file.
    from ..analysis.kernel_model import TCP_TIMEWAIT_LEN
    from ..checks.time_wait import attempts, observe_close, readings
    c = observe_close(ctx.client_flow(capture, client))
    # From the final ACK; after a reset (linger0) there is no TIME_WAIT, and the RST is where the port is free.
    end = c.final_ack if c.final_ack is not None else c.rst
    t0 = end.ts if end is not None else None
    port = int(c.flow.client[1])
    rs = [r for r in readings(ctx, watcher) if t0 is not None and r.began > t0]
    held = [r for r in rs if r.of(port, "TIME-WAIT")]
    gone = next((r for r in rs if held and r.began > held[0].began and not r.of(port, "TIME-WAIT")), None)
    ok = next((a for a in attempts(ctx, client) if a.result == "connected"), None)
    return {"TIME_WAIT": {
        "last reading in TIME-WAIT": (held[-1].began - t0) * 1000 if held and t0 is not None else None,
        "first reading without it": (gone.began - t0) * 1000 if gone and t0 is not None else None,
        # none to end where SO_LINGER 0 sent an RST, or where the same port took it over (timestamps on)
        f"{MODEL}TIME-WAIT ends": None if _no_full_time_wait(ctx) else TCP_TIMEWAIT_LEN * 1000,
        "same port connects": (ok.wall - t0) * 1000 if ok and t0 is not None else None,
        f"readings in TIME-WAIT{COUNT}": float(len(held)),
    }}


TOPICS["time_wait_times"] = {"time_wait"}


def _no_full_time_wait(ctx: Context) -> bool:
    from ..checks.time_wait import linger0_on, timestamps_on
    p = ctx.manifest.get("parameters") or {}
    return linger0_on(p.get("linger0") or 0) or timestamps_on(ctx, p.get("timestamps", 1))


# --- half-open ---
@measure
def half_open_times(ctx: Context, capture: str, client: str, keepalive, keepidle, keepintvl, keepcnt, send_after) -> Figures:
    """How the client learnt its peer forgot the connection, from the last segment it received: the
    segment that drew the RST (a probe at KEEPIDLE, or the write at send_after) beside the model's time,
    the RST after it, and ECONNRESET after the RST."""
    from ..checks.half_open import PROBE, model_for as half_open_model, observe as observe_half_open
    o = observe_half_open(ctx, capture, client)
    m = half_open_model(ctx, keepalive, keepidle, keepintvl, keepcnt, send_after)
    lead = o.lead
    err = None if ctx.unlogged(client) else ctx.event(client, "error")
    probes = o.flow.where(tf.KEEPALIVE, tf.CLIENT, after=o.idle_from)
    drew = (o.drawer.ts - o.anchor.ts) * 1000 if o.drawer and o.anchor else None
    return {"half-open": {
        f"probes{COUNT}": float(len(probes)), f"{MODEL}probes{COUNT}": float(m.due(lead)[0] == PROBE),
        "segment that drew the RST": drew, f"{MODEL}segment that drew the RST": m.nominal(lead) * 1000,
        "RST after it": _ms(o.drawer.ts, o.reset.ts) if o.drawer and o.reset else None,
        "ECONNRESET after the RST": _ms(o.reset.ts, float(err["wall"])) if err and o.reset else None,
        "ECONNRESET": _ms(o.anchor.ts, float(err["wall"])) if err and o.anchor else None,
    }}


TOPICS["half_open_times"] = {"keepalive"}
