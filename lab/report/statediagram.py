"""The state diagram of a tcp-states run: the transitions both sides really made, drawn with graphviz
over RFC 793's state machine (drawn faintly, so states the run never visited still show).

Edges carry their cause as the seed's diagram does ("Rx SYN+ACK, Tx ACK", "close(), Tx FIN"), the
side that made them and when. Linux traces no TIME_WAIT: FIN_WAIT2 -> CLOSE is the hand-off to a
timewait socket, and FIN_WAIT2 -> TIME_WAIT is drawn (dashed) where the capture shows the peer's FIN.
Written as PNG and SVG beside report.json.
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.context import Context
from ..analysis.states import TIMEWAIT_HANDOFF, peer_fin, sides
from ..spec.functions import plot

# RFC 793 figure 6, in Linux's state names.
RFC793 = [
    ("CLOSE", "LISTEN", "passive open"), ("CLOSE", "SYN_SENT", "active open\nsnd SYN"),
    ("LISTEN", "SYN_RECV", "rcv SYN\nsnd SYN,ACK"), ("LISTEN", "SYN_SENT", "SEND\nsnd SYN"), ("LISTEN", "CLOSE", "CLOSE"),
    ("SYN_SENT", "SYN_RECV", "rcv SYN\nsnd ACK"), ("SYN_SENT", "ESTABLISHED", "rcv SYN,ACK\nsnd ACK"), ("SYN_SENT", "CLOSE", "CLOSE"),
    ("SYN_RECV", "ESTABLISHED", "rcv ACK of SYN"), ("SYN_RECV", "FIN_WAIT1", "CLOSE\nsnd FIN"),
    ("ESTABLISHED", "FIN_WAIT1", "CLOSE\nsnd FIN"), ("ESTABLISHED", "CLOSE_WAIT", "rcv FIN\nsnd ACK"),
    ("FIN_WAIT1", "FIN_WAIT2", "rcv ACK of FIN"), ("FIN_WAIT1", "CLOSING", "rcv FIN\nsnd ACK"),
    ("FIN_WAIT2", "TIME_WAIT", "rcv FIN\nsnd ACK"), ("CLOSING", "TIME_WAIT", "rcv ACK of FIN"),
    ("CLOSE_WAIT", "LAST_ACK", "CLOSE\nsnd FIN"), ("LAST_ACK", "CLOSE", "rcv ACK of FIN"),
    ("TIME_WAIT", "CLOSE", "timeout = 2MSL"),
]
# What a traced transition means on the wire, by (old, new, cause).
CAUSES = {
    ("CLOSE", "SYN_SENT", "syscall"): "connect(), Tx SYN",
    ("SYN_SENT", "ESTABLISHED", "packet"): "Rx SYN+ACK, Tx ACK",
    ("CLOSE", "LISTEN", "syscall"): "listen()",
    ("LISTEN", "SYN_RECV", "packet"): "Rx ACK (Rx SYN, Tx SYN+ACK\nwere a request socket's)",
    ("SYN_RECV", "ESTABLISHED", "packet"): "Rx ACK",
    ("LISTEN", "CLOSE", "syscall"): "close() of the listener",
    ("ESTABLISHED", "FIN_WAIT1", "syscall"): "close(), Tx FIN",
    ("ESTABLISHED", "CLOSE_WAIT", "packet"): "Rx FIN, Tx ACK",
    ("FIN_WAIT1", "FIN_WAIT2", "packet"): "Rx ACK of FIN",
    ("FIN_WAIT1", "CLOSING", "packet"): "Rx FIN, Tx ACK",
    ("FIN_WAIT2", "CLOSE", "packet"): TIMEWAIT_HANDOFF.replace("; ", "\n"),
    ("CLOSE_WAIT", "LAST_ACK", "syscall"): "close(), Tx FIN",
    ("LAST_ACK", "CLOSE", "packet"): "Rx ACK of FIN",
}
COLOURS = {"client": "#1f5fbf", "server": "#2e8b3a"}


@plot
def state_diagram(ctx: Context, out: Path, program: str, capture: str = "") -> list[Path]:
    """Both sides' observed transitions over RFC 793's machine; PNG and SVG. With the client's capture,
    the TIME_WAIT the packets show (Rx FIN, Tx ACK) is drawn too."""
    import graphviz

    s = sides(ctx, program)
    time_wait = peer_fin(ctx, capture, program, "client") if capture else None
    g = graphviz.Digraph("tcp_states", graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": f"{ctx.manifest.get('title', '')}\n"
                         + ", ".join(f"{k}={v}" for k, v in (ctx.manifest.get("parameters") or {}).items()), "labelloc": "t"},
                         node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded"}, edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    visited = {"CLOSE"} | {t.new for t in s.client + s.server} | {t.old for t in s.client + s.server}
    if time_wait is not None:
        visited.add("TIME_WAIT")
    for state in dict.fromkeys([a for a, _, _ in RFC793] + [b for _, b, _ in RFC793]):
        seen = state in visited
        g.node(state, color="black" if seen else "#c8c8c8", fontcolor="black" if seen else "#b0b0b0", penwidth="1.6" if seen else "0.8")
    for a, b, label in RFC793:
        g.edge(a, b, label=label, color="#dddddd", fontcolor="#c0c0c0", style="dashed")
    for side, transitions in (("client", s.client), ("server", s.server)):
        for t in transitions:
            cause = CAUSES.get((t.old, t.new, t.cause), f"{t.syscall}()" if t.cause == "syscall" and t.syscall else t.cause)
            label = f"{side} {(t.wall - s.t0) * 1000:+.1f} ms\n{cause}"
            g.edge(t.old, t.new, label=label, color=COLOURS[side], fontcolor=COLOURS[side], penwidth="2.2")
    if time_wait is not None:
        g.edge("FIN_WAIT2", "TIME_WAIT", label=f"client {(time_wait - s.t0) * 1000:+.1f} ms\nRx FIN, Tx ACK\n(from the capture)",
               color=COLOURS["client"], fontcolor=COLOURS["client"], penwidth="2.2", style="bold,dashed")
    made = []
    for fmt in ("png", "svg"):
        target = out.with_suffix(f".{fmt}")
        target.write_bytes(g.pipe(format=fmt))
        made.append(target)
    return made
