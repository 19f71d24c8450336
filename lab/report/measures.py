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


# --- syn-retries ---


# --- nagle-delayed-ack ---


# --- time-wait ---


# --- half-open ---
