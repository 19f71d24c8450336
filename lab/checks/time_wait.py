"""Checks for the time-wait exercise: the client's active close on the wire, its TIME_WAIT socket as
`ss` showed it on the client's host (the watcher's readings), and what connect() from the same local
port returned while that socket held the 4-tuple.

Times count from the client's final ACK (the one acknowledging the server's FIN) in the client's own
capture: the kernel enters TIME_WAIT (tcp_fin -> tcp_time_wait) as it sends that ACK, and arms the
60 s TCP_TIMEWAIT_LEN timer there. The watcher and the client run on the capture's host, so their
wall-clock times and the capture's share one clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import Window, jiffy, time_wait
from ..errors import MissingInput
from ..spec.functions import check
from .hints import Step, events_of, hint_for, step_watching
from .keepalive import WAKEUP_SLACK
from .result import CheckResult, count

# The capture's clock against the kernel's jiffies, on top of one jiffy.
MEASURE_SLACK = 0.002
# A connect() from a port bound by hand meets the TIME_WAIT socket in __inet_check_established, which
# asks tcp_twsk_unique: with timestamps on the old connection (tw_ts_recent_stamp) the new one takes
# the 4-tuple over at once, whatever tcp_tw_reuse says (that sysctl is for ports the kernel picks);
# without them the 4-tuple is refused with EADDRNOTAVAIL, before anything is sent.
HELD_ERROR = "EADDRNOTAVAIL"

SS_TIMER = re.compile(r"timer:\((\w+),([^,)]*),(\d+)\)")
# ss's print_ms_timer: "[<m>min][<s>sec | <s>.]<ms>ms" with the parts it leaves out (misc/ss.c).
SS_DURATION = re.compile(r"^(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d+)ms)?$")
# Newer ss (Debian 13's iproute2) prints seconds and milliseconds below 10 s as "9.720sec", not "9.720ms".
SS_SECONDS = re.compile(r"^(?:(\d+)min)?(\d+)\.(\d{3})sec$")
ADDRESS = re.compile(r"^(\[?[0-9A-Fa-f.:*%\w-]*\]?):(\d+|\*)$")


@dataclass(frozen=True)
class SsTime:
    """A timer as ss printed it: `seconds` left, exact to `resolution` (ss drops the milliseconds
    from 10 s up and the seconds from 10 min up); 0 with an empty field: expired, not yet reaped."""

    seconds: float
    resolution: float


def ss_duration(text: str) -> SsTime:
    """'59sec' -> 59 s (to 1 s); '8.908ms' -> 8.908 s (not 8.9 ms; newer ss prints '8.908sec'); '908ms' -> 0.908 s;
    '1min' -> 60 s;
    '' -> 0 (the timer expired and the socket is not reaped yet)."""
    if text == "":
        return SsTime(0.0, 0.001)
    newer = SS_SECONDS.match(text)
    if newer:
        return SsTime(int(newer.group(1) or 0) * 60 + int(newer.group(2)) + int(newer.group(3)) / 1000, 0.001)
    m = SS_DURATION.match(text)
    if not m or not any(m.group(k) for k in (1, 2, 4)):
        raise ValueError(f"not an ss timer value: {text!r}")
    minutes, secs, sep, ms = int(m.group(1) or 0), int(m.group(2) or 0), m.group(3), m.group(4)
    if sep == "." and ms is None:
        raise ValueError(f"not an ss timer value: {text!r}")
    value = minutes * 60 + secs + (int(ms) / 1000 if ms else 0.0)
    # print_ms_timer: milliseconds below 10 s, whole seconds below 10 min, whole minutes from there
    resolution = 60.0 if minutes > 9 else 1.0 if (minutes or secs > 9) else 0.001
    return SsTime(value, resolution)


@dataclass(frozen=True)
class SsEntry:
    state: str  # as ss names it: TIME-WAIT, ESTAB, FIN-WAIT-2 ...
    local: tuple[str, int]
    peer: tuple[str, int]
    timer: Optional[str]  # timewait, keepalive, on, persist ...; None without a timer field
    left: Optional[SsTime]
    raw: str


def _address(token: str) -> Optional[tuple[str, int]]:
    m = ADDRESS.match(token)
    if not m or m.group(2) == "*":
        return None
    return m.group(1).strip("[]"), int(m.group(2))


def parse_ss_line(line: str, state: Optional[str] = None) -> Optional[SsEntry]:
    """One socket line of `ss -tan -o` ("State Recv-Q Send-Q Local Peer [timer:(...)]"); with a one-state
    filter (`state time-wait`) ss leaves the State column out, and `state` says it. None for other lines."""
    tokens = line.split()
    if not tokens:
        return None
    if state is None:
        if tokens[0][:1].isdigit():
            return None
        state, tokens = tokens[0], tokens[1:]
    addresses = [a for a in (_address(t) for t in tokens[2:4]) if a is not None] if len(tokens) >= 4 else []
    if len(addresses) != 2:
        return None
    m = SS_TIMER.search(line)
    return SsEntry(state, addresses[0], addresses[1], m.group(1) if m else None, ss_duration(m.group(2)) if m else None, line)


@dataclass(frozen=True)
class Reading:
    began: float  # wall clock before ss ran
    ended: float  # after it printed
    entries: list[SsEntry]

    def of(self, local_port: int, state: Optional[str] = None) -> list[SsEntry]:
        return [e for e in self.entries if e.local[1] == local_port and (state is None or e.state == state)]


def readings(ctx: Context, watcher: str) -> list[Reading]:
    """The watcher's ss readings, in order, each line parsed again here (what ss printed is the evidence)."""
    out = []
    for e in ctx.events(watcher):
        if e["event"] != "reading":
            continue
        entries = [p for p in (parse_ss_line(l) for l in e.get("lines") or []) if p is not None]
        out.append(Reading(float(e.get("began", e["wall"])), float(e["wall"]), entries))
    if not out and not ctx.unlogged(watcher):
        raise MissingInput(f"{watcher}.log has no 'reading' event: the watcher never read the sockets")
    return out


@dataclass
class Close:
    """How the client's connection ended on the wire."""

    flow: tf.Flow
    client_fin: Optional[tf.Event]
    server_fin: Optional[tf.Event]
    final_ack: Optional[tf.Event]  # the client's ACK of the server's FIN: TIME_WAIT starts here
    rst: Optional[tf.Event]  # the client's first RST

    def at(self, event: Optional[tf.Event]) -> str:
        return f"{event.ts - self.flow.ts[0]:.3f} s" if event is not None else "missing"


def observe_close(flow: tf.Flow) -> Close:
    client_fin = flow.first(tf.FIN_, tf.CLIENT)
    server_fin = flow.first(tf.FIN_, tf.SERVER)
    final_ack = None
    if server_fin is not None:
        acked = server_fin.rel_seq + int(server_fin.seg.plen) + 1
        final_ack = next((e for e in flow.pick(sender=tf.CLIENT, since=server_fin.ts, without=(tf.RST_,))
                          if e.rel_ack >= acked), None)
    return Close(flow, client_fin, server_fin, final_ack, flow.first(tf.RST_, tf.CLIENT))


def linger0_on(linger0) -> bool:
    """SO_LINGER {on, 0}: the close sends an RST and leaves no TIME_WAIT."""
    return int(linger0) != 0


def timestamps_on(ctx: Context, timestamps) -> bool:
    """net.ipv4.tcp_timestamps on the client's host as recorded when the run began (what the kernel had);
    the exercise's parameter where the folder does not say."""
    recorded = ctx.sysctl("source", "net.ipv4.tcp_timestamps")
    return (recorded if recorded is not None else int(timestamps)) != 0


def _window(ctx: Context) -> Window:
    return time_wait(ctx.hz, MEASURE_SLACK)


@check
def active_close(ctx: Context, capture: str, client: str, linger0, server: str = "") -> CheckResult:
    """The client closes first: its FIN, then the server's FIN, then the client's final ACK (no RST). With
    linger0 the client's close() sends an RST,ACK instead, no FIN, and the server's recv() gets ECONNRESET."""
    name = "active_close"
    c = observe_close(ctx.client_flow(capture, client))
    problems = []
    srv_events = ctx.events(server) if server and not ctx.unlogged(server) else []
    srv_error = next((e for e in srv_events if e["event"] == "error"), None)
    srv_closed = next((e for e in srv_events if e["event"] == "closed"), None)
    if linger0_on(linger0):
        expected = "SO_LINGER {on, 0}: the client's close() sends RST,ACK and no FIN"
        if c.rst is None:
            problems.append("no RST from the client")
        elif not c.rst.seg.flags & 0x10:
            problems.append("the client's RST carries no ACK")
        if c.client_fin is not None:
            problems.append(f"the client sent a FIN at {c.at(c.client_fin)}")
        observed = f"client RST{',ACK' if c.rst is not None and c.rst.seg.flags & 0x10 else ''} {c.at(c.rst)}; " \
                   f"client FIN {c.at(c.client_fin) if c.client_fin else 'none'}"
        if server:
            expected += "; the server's recv() fails with ECONNRESET"
            if ctx.unlogged(server):
                observed += f"; {server}.log missing"
            elif srv_error is None:
                problems.append(f"{server}.log has no 'error' event: its recv() did not fail")
                observed += "; the server's recv() did not fail"
            else:
                observed += f"; server's recv() -> {srv_error.get('error')}"
                if srv_error.get("error") != "ECONNRESET":
                    problems.append(f"the server's recv() failed with {srv_error.get('error')}, not ECONNRESET")
    else:
        expected = "the client's FIN first, then the server's FIN, then the client's ACK of it (TIME_WAIT on the client); no RST"
        if c.client_fin is None:
            problems.append("no FIN from the client")
        if c.server_fin is None:
            problems.append("no FIN from the server")
        if c.client_fin is not None and c.server_fin is not None and c.server_fin.ts < c.client_fin.ts:
            problems.append("the server's FIN came first: the server closed first, so TIME_WAIT is the server's")
        if c.server_fin is not None and c.final_ack is None:
            problems.append("no ACK from the client for the server's FIN")
        if c.rst is not None:
            problems.append(f"an RST from the client at {c.at(c.rst)}")
        observed = (f"client FIN {c.at(c.client_fin)}, server FIN {c.at(c.server_fin)}, final ACK {c.at(c.final_ack)}"
                    + (f", client RST {c.at(c.rst)}" if c.rst else ""))
        if server and not ctx.unlogged(server):
            expected += "; the server's recv() returns 0 (end of stream)"
            if srv_closed is None or (srv_error is not None and srv_error["wall"] < srv_closed["wall"]):
                problems.append(f"{server}.log has no 'closed' event: its recv() did not see the client's FIN")
            observed += "; the server saw the end of stream" if srv_closed else ""
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


def takeover(ctx: Context, capture: str, c: Close) -> Optional[tf.Event]:
    """The first SYN of a later connection from the same port to the same server (a new ISN starts a new flow)."""
    later = [f for f in ctx.flows(capture) if f.client == c.flow.client and f.server == c.flow.server and f is not c.flow]
    syns = [s for f in later for s in f.pick(tf.SYN_, tf.CLIENT)]
    return min(syns, key=lambda e: e.ts) if syns else None


def _seen_before(rs: list[Reading], port: int, close: Optional[tf.Event]) -> list[str]:
    """A reading before the close that shows the connection: the watcher read the right port, in time."""
    if close is None or any(r.ended < close.ts and r.of(port) for r in rs):
        return []
    return [f"no reading before the close shows port {port}: the watcher read another port, or started after the close"]


@check
def time_wait_held(ctx: Context, capture: str, client: str, watcher: str, linger0, interval, timestamps=1) -> CheckResult:
    """From ss's readings on the client's host: the client's socket is in TIME-WAIT from the final ACK until
    60 s (TCP_TIMEWAIT_LEN), gone by the timer's slack plus one reading, ss's timer counting down from 60 s
    at the final ACK; with timestamps on, until a new connection from the same port takes it over. With
    linger0: no reading ever shows it in TIME-WAIT."""
    name = "time_wait_held"
    c = observe_close(ctx.client_flow(capture, client))
    port = int(c.flow.client[1])
    rs = readings(ctx, watcher)
    step = float(interval)
    if linger0_on(linger0):
        end = c.rst.ts if c.rst is not None else None
        after = [r for r in rs if end is not None and r.began > end]
        held = [r for r in rs if r.of(port, "TIME-WAIT")]
        problems = _seen_before(rs, port, c.rst)
        if end is None:
            problems.append("no RST from the client, so no close to read after")
        elif not after:
            problems.append(f"no reading after the RST: nothing shows the port {port} free of TIME-WAIT")
        if held:
            problems.append(f"{count(len(held), 'reading')} show port {port} in TIME-WAIT: {held[0].of(port, 'TIME-WAIT')[0].raw.strip()}")
        return CheckResult(name, not problems,
                           expected=f"SO_LINGER {{on, 0}}: no TIME-WAIT socket of port {port} in any reading after the RST",
                           observed=f"{count(len(after), 'reading')} after the RST, {len(held)} with port {port} in TIME-WAIT",
                           detail="; ".join(problems))

    w = _window(ctx)
    j = jiffy(ctx.hz)
    new = takeover(ctx, capture, c)
    t0 = c.final_ack.ts if c.final_ack is not None else None
    taken = timestamps_on(ctx, timestamps)
    if taken:
        expected = (f"port {port} in TIME-WAIT in every reading from the final ACK until a new connection from the same port "
                    f"takes it over (timestamps on), in none after; ss's timer counting down from 60 s at the final ACK")
    else:
        expected = (f"port {port} in TIME-WAIT in every reading from the final ACK until {w.low:.3f} s, in none after {w.high:.3f} s "
                    f"(60 s, reaped within the timer's slack), gone in a reading by {w.high + step:.3f} s (one interval of "
                    f"{step:g} s later); ss's timer counting down from 60 s at the final ACK")
    if t0 is None:
        return CheckResult(name, False, expected=expected, observed="no final ACK from the client in the capture",
                           detail="the connection did not end with the client's ACK of the server's FIN, so TIME_WAIT has no start")
    problems = _seen_before(rs, port, c.client_fin)
    if taken and new is None:
        problems.append(f"no new SYN from port {port}: nothing took the TIME_WAIT over")
    elif taken and new.ts - t0 >= w.low:
        problems.append(f"the new connection from port {port} came at {new.ts - t0:.3f} s, after TIME_WAIT's own end: "
                        f"nothing was taken over")
    # The socket must show in every reading wholly before its end, and in none that began after it.
    if taken:
        must = lambda r: new is None or r.ended < new.ts  # noqa: E731
        must_not = lambda r: new is not None and r.began > new.ts  # noqa: E731
    else:
        must = lambda r: r.ended - t0 < w.low  # noqa: E731
        must_not = lambda r: r.began - t0 > w.high  # noqa: E731
    after = [r for r in rs if r.began > t0]
    present = [r for r in after if r.of(port, "TIME-WAIT")]
    gone = next((r for r in after if present and r.began > present[0].began and not r.of(port, "TIME-WAIT")), None)
    missed = [r for r in after if must(r) and not r.of(port, "TIME-WAIT")]
    if missed:
        problems.append(f"{count(len(missed), 'reading')} without port {port} in TIME-WAIT while it was due, the first at "
                        f"{missed[0].began - t0:.3f} s")
    late = [r for r in present if must_not(r)]
    if late:
        problems.append(f"port {port} still in TIME-WAIT at {late[-1].began - t0:.3f} s, past its end")
    if not present:
        problems.append(f"no reading shows port {port} in TIME-WAIT")
    elif gone is None:
        problems.append(f"no reading after the last one showing it ({present[-1].began - t0:.3f} s): its end was not seen")
    elif not taken:
        if gone.ended - t0 < w.low:
            problems.append(f"gone at the reading of {gone.began - t0:.3f} s, before {w.low:.3f} s")
        if gone.began - t0 > w.high + step + WAKEUP_SLACK:
            problems.append(f"first reading without it at {gone.began - t0:.3f} s, later than {w.high:.3f} s + one interval")
    bad_timer = []
    for r in present:
        for e in r.of(port, "TIME-WAIT"):
            if e.timer != "timewait" or e.left is None:
                bad_timer.append(f"{r.began - t0:.3f} s: no timewait timer in {e.raw.strip()!r}")
                continue
            # The socket expires at t0 + 60 s (in whole jiffies); ss reads somewhere between began and ended.
            most = max(w.nominal - (r.began - t0), 0.0) + j + MEASURE_SLACK
            least = max(w.nominal - (r.ended - t0), 0.0) - j - MEASURE_SLACK
            if not (e.left.seconds <= most and e.left.seconds + e.left.resolution >= least):
                bad_timer.append(f"{r.began - t0:.3f} s: ss says {e.left.seconds:g} s left, where 60 s from the final ACK "
                                 f"leaves {max(least, 0):.3f}..{most:.3f}")
    if bad_timer:
        problems.append(f"{count(len(bad_timer), 'timer')} off the 60 s countdown: " + "; ".join(bad_timer[:3]))
    observed = (f"{count(len(present), 'reading')} with port {port} in TIME-WAIT"
                + (f", {present[0].began - t0:.3f} .. {present[-1].began - t0:.3f} s after the final ACK" if present else "")
                + (f"; taken over by a new SYN at {new.ts - t0:.3f} s" if taken and new is not None else "")
                + (f"; gone at the reading of {gone.began - t0:.3f} s" if gone else "; not seen gone")
                + (f"; timers {_timer_text(present[0], port)} .. {_timer_text(present[-1], port)}" if present else ""))
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


def _timer_text(r: Reading, port: int) -> str:
    m = SS_TIMER.search(r.of(port, "TIME-WAIT")[0].raw)
    return f"({m.group(1)},{m.group(2)},{m.group(3)})" if m else "(none)"


@dataclass
class Attempt:
    n: int
    wall: float
    step: str  # bind or connect
    result: str  # an errno name, or "connected"


def attempts(ctx: Context, client: str) -> list[Attempt]:
    return [Attempt(int(e.get("attempt", 0)), float(e["wall"]), str(e.get("step", "")), str(e.get("result", "")))
            for e in ctx.events(client) if e["event"] == "again"]


@check
def same_port_again(ctx: Context, capture: str, client: str, linger0, interval, timestamps=1) -> CheckResult:
    """connect() from the same local port (bound by hand) to the same server: with linger0 nothing holds the
    port and the first attempt connects; after an orderly close with timestamps on, the first attempt takes
    the TIME_WAIT over at once; with them off, EADDRNOTAVAIL (nothing sent) until 60 s after the final ACK,
    then a connection (a new SYN from that port)."""
    name = "same_port_again"
    c = observe_close(ctx.client_flow(capture, client))
    port = int(c.flow.client[1])
    if ctx.unlogged(client):
        return CheckResult(name, False, expected="the client's attempts on its old port, from its log",
                           observed=f"{client}.log missing", detail=f"{client}.log is missing: what connect() returned cannot be known")
    tries = attempts(ctx, client)
    new = takeover(ctx, capture, c)
    ok_try = next((a for a in tries if a.result == "connected"), None)
    problems: list[str] = []
    if not tries:
        problems.append(f"{client}.log has no 'again' event: the client never tried its old port")
    if ok_try is not None and (new is None or abs(new.ts - ok_try.wall) > WAKEUP_SLACK):
        problems.append(f"connect() said connected at attempt {ok_try.n} but the capture has no SYN from port {port} then")
    first = f"attempt 1: {tries[0].step}() -> {tries[0].result}" if tries else "no attempt"
    new_syn = f"new SYN from port {port} " + (f"at {new.ts - c.flow.ts[0]:.3f} s" if new is not None else "none")
    w = _window(ctx)
    t0 = c.final_ack.ts if c.final_ack is not None else None
    if linger0_on(linger0) or timestamps_on(ctx, timestamps):
        if linger0_on(linger0):
            expected = f"SO_LINGER {{on, 0}} left no TIME_WAIT: the first attempt from port {port} connects, with a new SYN"
        else:
            expected = (f"timestamps on: the first attempt from port {port} takes the TIME_WAIT over at once (tcp_twsk_unique), "
                        f"with a new SYN, well before {w.low:.3f} s")
            if t0 is None:
                problems.append("no final ACK from the client in the capture: no TIME_WAIT to take over")
            elif ok_try is not None and ok_try.wall - t0 >= w.low:
                problems.append(f"connected only at {ok_try.wall - t0:.3f} s, when the TIME_WAIT had ended anyway")
        if tries and tries[0].result != "connected":
            problems.append(f"attempt 1 ({tries[0].step}) failed with {tries[0].result}")
        return CheckResult(name, not problems, expected=expected, observed=f"{first}; {new_syn}", detail="; ".join(problems))

    step = float(interval)
    expected = (f"timestamps off: while TIME_WAIT holds (until {w.low:.3f} s after the final ACK) connect() from port {port} fails "
                f"with {HELD_ERROR} and sends nothing; an attempt from {w.low:.3f} s may connect, one by {w.high + step:.3f} s does, "
                f"with a new SYN")
    if t0 is None:
        problems.append("no final ACK from the client in the capture: TIME_WAIT has no start to time the attempts from")
    else:
        held = [a for a in tries if a.wall - t0 < w.low]
        wrong = [a for a in held if (a.step, a.result) != ("connect", HELD_ERROR)]
        if wrong:
            a = wrong[0]
            problems.append(f"attempt {a.n} at {a.wall - t0:.3f} s: {a.step}() -> {a.result}, not connect() -> {HELD_ERROR}")
        if ok_try is None:
            problems.append(f"no attempt connected (the last at {tries[-1].wall - t0:.3f} s)" if tries else "no attempt connected")
        elif ok_try.wall - t0 > w.high + step + WAKEUP_SLACK:
            problems.append(f"the first connection at {ok_try.wall - t0:.3f} s, later than {w.high:.3f} s + one interval")
        failed_late = [a for a in tries if a.result != "connected" and a.wall - t0 > w.high + WAKEUP_SLACK]
        if failed_late:
            problems.append(f"attempt {failed_late[0].n} at {failed_late[0].wall - t0:.3f} s failed ({failed_late[0].result}) after TIME_WAIT's end")
        if new is not None and new.ts - t0 < w.low:
            problems.append(f"a SYN from port {port} at {new.ts - t0:.3f} s, while TIME_WAIT held the 4-tuple")
    refused = [a for a in tries if a.result == HELD_ERROR]
    observed = (f"{count(len(refused), 'attempt')} refused with {HELD_ERROR}"
                + (f" ({refused[0].wall - t0:.3f} .. {refused[-1].wall - t0:.3f} s after the final ACK)" if refused and t0 is not None else "")
                + (f"; connected at attempt {ok_try.n}, {ok_try.wall - t0:.3f} s after the final ACK" if ok_try and t0 is not None else
                   "; never connected" if ok_try is None else "")
                + f"; {new_syn}")
    return CheckResult(name, not problems, expected=expected, observed=observed, detail="; ".join(problems))


# --- hints: what a person most likely did wrong, said on a failure of these checks (lab/checks/hints.py) ---
@hint_for("time_wait_held", "same_port_again")
def hint(ctx: Context, r: CheckResult, hands: dict, steps: list[Step], by_kind: dict[str, Step]) -> Optional[str]:
    """The watcher started late or stopped early, or the client stopped during its attempts on the old port."""
    watch, client, end = (step_watching(steps, "watching", "watcher"), step_watching(steps, "closed", "client"),
                          step_watching(steps, "done", "client"))
    closed = next((e for e in events_of(ctx, "client") if e.get("event") == "closed"), None)
    if r.name == "time_wait_held" and watch is not None:
        if not (ctx.folder / "watcher.log").exists():
            return f"{watch}: the watcher's log is missing: start it from `invoke shell {watch.host or 'source'}` (its readings then reach the lab)"
        rs = readings(ctx, "watcher")
        if closed is not None and (not rs or rs[0].began > float(closed["wall"])):
            return f"the watcher started after the client had closed: {watch} first, then {client}, so ss is read before the close too"
        if any(e.get("event") == "stopped" for e in events_of(ctx, "watcher")) and closed is not None:
            return f"the watcher was stopped (Ctrl-C?) before the TIME-WAIT socket was gone: leave it running until it says so ({end})"
    if any(e.get("event") == "interrupted" for e in events_of(ctx, "client")):
        return f"the client was stopped (Ctrl-C?) during its attempts on its old port: leave it until one connects ({end})"
    return None
