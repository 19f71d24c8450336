"""Pictures drawn from a results folder, as PNG beside report.json: each side's advertised window and
the throughput over time. Like checks, they read only the folder, and exercise.yml lists them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..spec.functions import plot


def pyplot():
    """matplotlib, loaded when a picture is drawn: importing it takes about half a second, which no
    command that draws nothing should pay."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on lab machines or in CI
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, axes, title: str, out: Path) -> Path:
    """Two panels over one time axis, titled and written."""
    axes[-1].set_xlabel("seconds since the first packet")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _columns(flow: tf.Flow):
    t = flow.table.ts[flow.rows]
    return t - t[0], t[0]


@plot
def window(ctx: Context, out: Path, capture: str, client: str) -> Path:
    """The advertised window of each side over time, zero-window periods shaded, window probes marked."""
    return draw_window(ctx.client_flow(capture, client), out)


def draw_window(flow: tf.Flow, out: Path) -> Path:
    """The window chart of one flow (results folders, and `invoke analyze --plots`)."""
    plt = pyplot()
    t, _ = _columns(flow)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, (side, is_server) in zip(axes, ((tf.SERVER, True), (tf.CLIENT, False))):
        mine = (flow.from_server == is_server) & ((flow.labels & tf.BIT[tf.RST_]) == 0)
        ts, win = t[mine], flow.window[mine]
        keep = np.ones(len(win), dtype=bool)
        keep[1:-1] = (win[1:-1] != win[:-2]) | (win[1:-1] != win[2:])  # only the changes: a million points draw slowly
        ax.step(ts[keep], win[keep] / 1024, where="post", color="tab:blue", lw=1)
        zero = win == 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], zero.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            end = ts[b] if b < len(ts) else t[-1]
            ax.axvspan(ts[a], end, color="tab:red", alpha=0.15, lw=0)
        peer_probes = (flow.from_server != is_server) & ((flow.labels & tf.BIT[tf.ZERO_WINDOW_PROBE]) != 0)
        if peer_probes.any():
            ax.plot(t[peer_probes], np.zeros(int(peer_probes.sum())), "v", color="tab:red", ms=7, label="window probe from the peer")
            ax.legend(loc="upper right")
        who = flow.server if is_server else flow.client
        ax.set_ylabel(f"{side} window (KiB)")
        ax.set_title(f"window advertised by the {side} {who[0]}:{who[1]}; zero window shaded", fontsize=10)
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, f"TCP window chart: {flow}", out)


@plot
def throughput(ctx: Context, out: Path, capture: str, client: str) -> Path:
    """Bytes the server acknowledged per interval: the transfer's rate, with stalls at zero."""
    flow = ctx.client_flow(capture, client)
    t, _ = _columns(flow)
    acks = flow.from_server & ((flow.labels & tf.BIT[tf.RST_]) == 0)
    ts, acked = t[acks], np.maximum.accumulate(flow.rel_ack[acks]) if acks.any() else np.zeros(0)
    span = float(t[-1]) if len(t) else 1.0
    width = max(0.01, span / 400)
    bins = np.arange(0.0, span + width, width)
    rate = np.zeros(len(bins) - 1)
    if len(ts):
        idx = np.searchsorted(ts, bins[1:], side="right") - 1
        level = np.where(idx >= 0, acked[np.maximum(idx, 0)], 0)
        rate = np.diff(np.concatenate([[0], level])) / width / 1e6
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(bins[1:], rate, where="pre", color="tab:green", lw=1)
    ax.set_xlabel("seconds since the first packet")
    ax.set_ylabel("MB/s acknowledged")
    ax.set_title(f"throughput of {flow} ({width * 1000:.0f} ms bins)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# Marks on the time-sequence picture: label, marker, colour.
SEQUENCE_MARKS = [
    (tf.RTO_RETRANSMISSION, "x", "tab:red", "RTO retransmission"),
    (tf.TAIL_LOSS_PROBE, "D", "tab:orange", "tail loss probe"),
    (tf.FAST_RETRANSMISSION, "+", "tab:purple", "fast retransmission"),
    (tf.KEEPALIVE, "o", "tab:green", "keepalive probe"),
    (tf.ZERO_WINDOW_PROBE, "v", "tab:brown", "zero-window probe"),
]
SEQUENCE_POINTS = 20_000  # data segments drawn at most per side (evenly thinned): the marks are all drawn


def draw_sequence(flow: tf.Flow, out: Path) -> Path:
    """The time-sequence picture (Stevens'): each side's sequence numbers over time, the peer's
    acknowledgements as a line, resends and probes marked."""
    plt = pyplot()
    t, _ = _columns(flow)
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for ax, (side, is_server) in zip(axes, ((tf.CLIENT, False), (tf.SERVER, True))):
        mine = flow.from_server == is_server
        data = mine & (flow.plen > 0)
        idx = np.flatnonzero(data)
        if len(idx) > SEQUENCE_POINTS:
            idx = idx[np.linspace(0, len(idx) - 1, SEQUENCE_POINTS).astype(int)]
        ax.vlines(t[idx], flow.rel_seq[idx], flow.rel_seq[idx] + flow.plen[idx], color="tab:blue", lw=1, label="data sent")
        acks = ~mine & ((flow.flags & 0x10) != 0)
        if acks.any():
            ax.step(t[acks], np.maximum.accumulate(flow.rel_ack[acks]), where="post", color="tab:gray", lw=0.8,
                    label="acknowledged by the peer")
        for label, marker, colour, name in SEQUENCE_MARKS:
            m = mine & ((flow.labels & tf.BIT[label]) != 0)
            if m.any():
                ax.plot(t[m], flow.rel_seq[m], marker, color=colour, ms=6, ls="none", label=name)
        who = flow.server if is_server else flow.client
        ax.set_ylabel("relative sequence")
        ax.set_title(f"sent by the {side} {who[0]}:{who[1]}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return _save(plt, fig, axes, f"time-sequence: {flow}", out)
