"""What the traced state transitions of a connection mean next to its packets: which transitions
are each side's (the writer's connection, the reader's sockets), the segment that caused each one or
that its system call sent, and each side's timeline. The tcp-states checks, the state diagram and
the sweep's measures all read the transitions this way.

Linux reports no TIME_WAIT transition. The active closer's socket goes FIN_WAIT2 -> CLOSE when a
timewait socket takes over from it: at the peer's FIN, or, once the program has closed it, as soon
as the ACK of its own FIN arrives (the timewait socket then waits in FIN_WAIT2 itself). TIME_WAIT
begins when the peer's FIN arrives; the tables add it, inferred from the capture: Rx FIN, Tx ACK.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import MissingInput
from . import statetrace
from . import tcpflow as tf
from .context import Context
from .pcap import ACK

# A received segment reaches the capture a few microseconds before TCP acts on it; a sent one leaves
# a few after. The clocks (trace: CLOCK_MONOTONIC + the offset read around the run) agree to microseconds.
MATCH_MS = 5.0


def match_window_ms(ctx: Context) -> float:
    """How far a transition may sit from its packet in this run: MATCH_MS, plus the path's own slowest
    round trip where the run measured one. On emulated VMs (TCG) a vCPU can stall for milliseconds
    between receiving a segment and acting on it, and that slowest round trip is the stall measured."""
    return MATCH_MS + (ctx.path_rtt_ms or 0.0)
# Received segments that move a socket, by transition: the label the segment must carry.
# A segment label, or what the segment must acknowledge: ACKS_SYN (the side's SYN) or ACKS_FIN (its FIN).
ACKS_SYN, ACKS_FIN = "acknowledges our SYN", "acknowledges our FIN"
RECEIVED = {
    ("SYN_SENT", "ESTABLISHED"): [tf.SYN_ACK],
    # Linux answers a SYN from a request socket this tracepoint does not see; the socket is born in
    # SYN_RECV (from the listener: LISTEN -> SYN_RECV) when the handshake's ACK arrives.
    ("LISTEN", "SYN_RECV"): [ACKS_SYN],
    ("SYN_RECV", "ESTABLISHED"): [ACKS_SYN],
    ("ESTABLISHED", "CLOSE_WAIT"): [tf.FIN_],
    ("FIN_WAIT1", "CLOSING"): [tf.FIN_],
    ("FIN_WAIT1", "FIN_WAIT2"): [ACKS_FIN],
    ("FIN_WAIT2", "CLOSE"): [tf.FIN_, ACKS_FIN],  # the timewait hand-off: see the module's docstring
    ("LAST_ACK", "CLOSE"): [ACKS_FIN],
    ("CLOSING", "CLOSE"): [ACKS_FIN],
}
TIMEWAIT_HANDOFF = "a timewait socket takes over; Linux reports CLOSE"
TIME_WAIT_ROW = "Rx FIN, Tx ACK (TIME_WAIT inferred from the capture: Linux traces none)"
# Segments a system call sends: the label, and whether it leaves at once (a FIN waits for queued data).
SENT = {("CLOSE", "SYN_SENT"): (tf.SYN_, True), ("ESTABLISHED", "FIN_WAIT1"): (tf.FIN_, False),
        ("CLOSE_WAIT", "LAST_ACK"): (tf.FIN_, False)}
SHOWN = {tf.SYN_: "SYN", tf.SYN_ACK: "SYN+ACK", tf.FIN_: "FIN"}


@dataclass
class Sides:
    client: list[statetrace.Transition]
    server: list[statetrace.Transition]
    t0: float  # wall time of the client's first transition


def sides(ctx: Context, program: str, need: tuple[str, ...] = ("client", "server")) -> Sides:
    """The transitions of the writer's connection (client) and of the reader's sockets (server), each
    from the trace of its own machine's kernel. A side in `need` that no trace shows is MissingInput."""
    found, unavailable = ctx.traces()
    connecting, connected = ctx.event(program, "connecting"), ctx.event(program, "connected")
    if connected is None:
        raise MissingInput(f"{program}.log has no 'connected' event")
    ip, _, port = connected["local"].rpartition(":")
    me = (ip, int(port))
    server_port = int((ctx.manifest.get("state_trace") or {}).get("port", 0))
    addresses = ctx.manifest.get("addresses") or {}

    def events_of(address: Optional[str]) -> Optional[list[statetrace.Transition]]:
        for host, events in found:
            if host is None or addresses.get(host) == address:
                return events
        return None

    def missing(side: str, address: Optional[str]) -> MissingInput:
        host = next((h for h, a in addresses.items() if a == address), address or "its machine")
        why = unavailable.get(host)
        return MissingInput(f"no state trace of the {side}'s machine {host}" + (f": state tracing was unavailable there ({why})" if why else ""))

    client: list[statetrace.Transition] = []
    mine = events_of(ip)
    if mine is not None:
        # connect() reports SYN_SENT before the kernel picks the local port (sport 0): the writer's is
        # the one between its 'connecting' and 'connected' events.
        start = connecting["mono"] if connecting else float("-inf")
        opening = [t for t in mine if t.local == (ip, 0) and t.remote[1] == server_port and t.new == "SYN_SENT"
                   and start <= t.mono <= connected["mono"]]
        client = sorted(opening[:1] + [t for t in mine if t.local == me], key=lambda t: t.mono)
        if not client and "client" in need:
            raise MissingInput(f"the state trace has no transition of the writer's socket {ip}:{port}")
    elif "client" in need:
        raise missing("client", ip)
    server_ip = (connecting or {}).get("host") or next((t.remote[0] for t in client if t.remote[1] == server_port), None)
    theirs = events_of(server_ip)
    if theirs is None and "server" in need:
        raise missing("server", server_ip)
    server = [t for t in theirs or [] if t.local[1] == server_port and (t.remote == me or t.remote[1] == 0)]
    t0 = client[0].wall if client else (server[0].wall if server else 0.0)
    return Sides(client, server, t0)


def peer_fin(ctx: Context, capture: str, program: str, side: str) -> Optional[float]:
    """When the peer's FIN reached this side's capture: where TIME_WAIT begins for the active closer."""
    flow = ctx.client_flow(capture, program)
    fin = flow.first(tf.FIN_, tf.SERVER if side == "client" else tf.CLIENT)
    return fin.ts if fin else None


TIMELINE_COLUMNS = ["ms", "from", "to", "cause", "packet or system call"]


def timeline(ts: list[statetrace.Transition], t0: float, flow: Optional[tf.Flow], side: str, time_wait: Optional[float],
             window_ms: float = MATCH_MS) -> list[list[str]]:
    """One side's timeline rows: time from the writer's connect(), old and new state, cause, and the
    system call and the segment behind it, with the segment's time relative to the transition."""
    me, peer = (tf.CLIENT, tf.SERVER) if side == "client" else (tf.SERVER, tf.CLIENT)
    rows = []  # (order, row)
    for t in ts:
        what = [f"{t.syscall}()"] if t.cause == "syscall" and t.syscall else []
        pkt = packet_for(flow, t, me, peer, window_ms) if flow is not None else None
        if pkt is not None:
            what.append(f"{pkt.text} ({(pkt.ts - t.wall) * 1000:+.3f} ms)")
        elif flow is not None and packet_due(t):
            what.append("no matching segment in the capture")
        if (t.old, t.new) == ("FIN_WAIT2", "CLOSE"):
            what.append(TIMEWAIT_HANDOFF)
        rows.append((t.wall, [f"{(t.wall - t0) * 1000:.3f}", t.old, t.new, t.cause, ", ".join(what)]))
    handoff = next((t.wall for t in ts if (t.old, t.new) == ("FIN_WAIT2", "CLOSE")), None)
    if time_wait is not None and handoff is not None:
        # The capture sees the FIN a few microseconds before TCP acts on it: listed after the hand-off
        # (at the same key, the sort keeps it after, where it was appended).
        rows.append((max(time_wait, handoff), [f"{(time_wait - t0) * 1000:.3f}", "FIN_WAIT2", "TIME_WAIT", "capture", TIME_WAIT_ROW]))
    return [row for _, row in sorted(rows, key=lambda r: r[0])]


@dataclass
class Packet:
    """The segment behind a transition, as the timeline shows it."""
    k: int  # position in the flow
    ts: float
    text: str  # "Rx SYN+ACK", "Tx FIN"…


def packet_due(t: statetrace.Transition) -> bool:
    """Whether a segment belongs to this transition (none does to listen(), or to a listener's close())."""
    key = (t.old, t.new)
    return (key in RECEIVED and t.cause == "packet") or (key in SENT and t.cause == "syscall")


def packet_for(flow: tf.Flow, t: statetrace.Transition, me: str, peer: str, window_ms: float = MATCH_MS) -> Optional[Packet]:
    """The received segment that caused a transition (just before it, within window_ms), or the one its
    system call sent."""
    key, window = (t.old, t.new), window_ms / 1000
    if key in RECEIVED and t.cause == "packet":
        pos = flow.where(sender=peer, since=t.wall - window, before=t.wall + window / 10)
        hits: dict[int, str] = {}  # position -> what it is, over every kind of segment that may cause this
        for want in RECEIVED[key]:
            if want == ACKS_SYN:
                hit = [k for k in pos if flow.flags[k] & ACK and flow.rel_ack[k] == 1]
                text = f"Rx ACK of our {'SYN+ACK' if me == tf.SERVER else 'SYN'}"
            elif want == ACKS_FIN:
                end = _fin_end(flow, me)
                hit = [k for k in pos if end is not None and flow.flags[k] & ACK and flow.rel_ack[k] == end]
                text = "Rx ACK of our FIN"
            else:
                hit = [k for k in pos if flow.labels[k] & tf.BIT[want]]
                text = f"Rx {SHOWN[want]}"
            for k in hit:
                hits.setdefault(int(k), text)
        if not hits:
            return None
        # The latest before the transition (the one TCP had just processed); only clock jitter puts
        # it after, and then the earliest of those.
        before = [k for k in sorted(hits) if flow.ts[k] <= t.wall]
        k = before[-1] if before else min(hits)
        return Packet(k, float(flow.ts[k]), hits[k])
    if key in SENT and t.cause == "syscall":
        label, prompt = SENT[key]
        pos = flow.where(label, me, since=t.wall - window / 10, before=(t.wall + window) if prompt else None)
        return Packet(int(pos[0]), float(flow.ts[int(pos[0])]), f"Tx {SHOWN[label]}") if len(pos) else None
    return None


def _fin_end(flow: tf.Flow, sender: str) -> Optional[int]:
    """The relative sequence number that acknowledges the sender's FIN."""
    pos = flow.where(tf.FIN_, sender)
    if not len(pos):
        return None
    k = int(pos[0])
    return int(flow.rel_seq[k]) + int(flow.plen[k]) + 1
