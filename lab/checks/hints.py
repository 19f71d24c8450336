"""Hints for a hands-on run: what the person most likely did wrong, said on each failed check and
naming the step to look at again. Read from the results folder alone: the steps with when each was
seen done, what the hosts showed at the end, the programs' logs, and the lab's capture.

The usual mistakes, in the order they are looked for (the first that fits a check is its hint): no
capture of one's own; a value the lab assigned (a class's variant, `start --strict`) typed otherwise,
for a check judged with it; the client's log missing; the client started before the server listened; the
drop rule added before the client connected, or before the first exchange; the rule on the wrong
host or port; the client stopped (Ctrl-C) before its kernel gave up; `finish` before the end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..analysis.kernel_model import KeepaliveModel
from ..errors import MissingInput
from ..onhost.handson import drops
from .keepalive import Observed, observe_flow
from .result import CheckResult, count


# An exercise's own hints for its own checks: check name -> hint(ctx, result, hands, steps, by_kind). The
# exercise's check module registers them with @hint_for; None means "nothing of mine explains it" (the
# general hints below then try), "" that nothing should be said.
OwnHint = Callable[..., Optional[str]]
EXERCISE_HINTS: dict[str, OwnHint] = {}


def hint_for(*checks: str) -> Callable[[OwnHint], OwnHint]:
    """Registers a function as the first hint of these checks' failures."""
    def add(fn: OwnHint) -> OwnHint:
        for name in checks:
            EXERCISE_HINTS[name] = fn
        return fn
    return add


def step_watching(steps: list["Step"], event: str, program: Optional[str] = None) -> Optional["Step"]:
    """The step seen done when a program (any, or `program`) logs `event`: its done_when has that event condition."""
    return next((s for s in steps if any(k == "event" and (a or {}).get("event") == event
                                         and (program is None or (a or {}).get("program") == program) for k, a in s.when)), None)


@dataclass
class Step:
    number: int
    do: str
    host: Optional[str]
    when: list  # [[condition kind, its arguments]]
    done_at: Optional[float]

    def arg(self, kind: str, name: str) -> Any:
        return next((args.get(name) for k, args in self.when if k == kind), None)

    def __str__(self) -> str:
        return f"step {self.number} ({self.do})"


def attach(ctx: Context, results: list[CheckResult]) -> None:
    """Gives each failed check of a hands-on folder the hint of the first mistake that explains it."""
    hands = ctx.manifest.get("hands_on")
    if not isinstance(hands, dict) or all(r.passed for r in results):
        return
    steps = [Step(i + 1, s.get("do", ""), s.get("host"), s.get("when") or [[k, {}] for k in s.get("kinds", [])], s.get("done_at"))
             for i, s in enumerate(hands.get("steps") or [])]
    by_kind = {k: s for s in reversed(steps) for k, _ in s.when}
    for r in results:
        if r.passed or r.hint:
            continue
        try:
            r.hint = _hint(ctx, r, hands, steps, by_kind)
        except MissingInput:
            r.hint = ""
        except Exception as e:  # noqa: BLE001  (a hint never hides the verdict it explains)
            r.hint = f"(no hint: {type(e).__name__}: {e})"


def _hint(ctx: Context, r: CheckResult, hands: dict, steps: list[Step], by_kind: dict[str, Step]) -> str:
    own = EXERCISE_HINTS.get(r.name.split(" ", 1)[0])
    said = own(ctx, r, hands, steps, by_kind) if own else None
    if said is not None:
        return said
    capturing, server, client, drop = (by_kind.get(k) for k in ("capturing", "listening", "exchange", "drop_rule"))
    last = steps[-1] if steps else None
    if r.name == "student_capture":
        if capturing is None:
            return ""
        return (f"{capturing}: start tcpdump on {capturing.host} before the client, writing a file with -w, and stop it only "
                f"after the end (`invoke finish` stops it for you)")
    programs = hands.get("programs") or {}
    # The connecting program: the one on the host of the step that starts the connection, or on source.
    starting = client or by_kind.get("zero_window") or by_kind.get("connected")
    client_host = starting.host if starting and starting.host else "source"
    program = next((p for p, info in programs.items() if info.get("host") == client_host), None)
    client = client or starting
    typed = typed_otherwise(ctx, r, hands, lambda: _flow(ctx, program, client))
    if typed:
        return typed
    if program and not (ctx.folder / f"{program}.log").exists():
        return (f"{client}: the {program}'s log is missing, so what it set could not be known: start it from "
                f"`invoke shell {client.host}` (its events then reach the lab)")
    flow = _flow(ctx, program, client)
    refused = any(e.get("event") == "connect_failed" and e.get("error") == "ECONNREFUSED" for e in events_of(ctx, program))
    if flow is None or refused:
        if refused or (server and client and (server.done_at is None or (client.done_at and client.done_at < server.done_at))):
            return f"the client was started before the server listened: {server} first, then {client}" if server else ""
        return f"{client} was not seen: the client never connected" if client else ""
    synack = flow.first(tf.SYN_ACK, tf.SERVER)
    if synack is None:
        if len(flow.where(tf.RST_, tf.SERVER)):
            return f"the server refused the connection: it was not listening yet; {server} first, then {client}"
        return (f"nothing answered the client's SYN: the drop rule ({drop}) was there before the client connected; "
                f"add it only after the first exchange") if drop else "nothing answered the client's SYN"
    if not len(flow.where(tf.DATA, tf.SERVER)):
        return f"the server never replied: the drop rule ({drop}) came before the first exchange; add it after {client}" if drop else ""
    if drop is not None:
        wrong = wrong_rule(hands, drop)
        if wrong:
            return f"{drop}: {wrong}"
        if drop.done_at is None:
            if len(flow.where(tf.KEEPALIVE_ACK, tf.SERVER)):
                return f"{drop} did not cut dest off: the server answered the probes, so the connection stayed alive"
            return f"{drop} was not seen done: no rule dropping port {drop.arg('drop_rule', 'port')} on {drop.arg('drop_rule', 'host')}"
    undone = next((s for s in steps if s.done_at is None), None)
    if "keepidle" not in (ctx.manifest.get("parameters") or {}):
        # Not a keepalive exercise: the first step not seen done is where it went wrong.
        return f"{undone} was not seen done before `invoke finish`" if undone else ""
    events = events_of(ctx, program)
    # (The flow ends where `finish` began: what came after, stopping the programs made.)
    server_fin, client_fin = flow.first(tf.FIN_, tf.SERVER), flow.first(tf.FIN_, tf.CLIENT)
    if any(e.get("event") == "closed" for e in events) or (server_fin and (client_fin is None or server_fin.ts < client_fin.ts)):
        where = f" on {drop.host}" if drop is not None else ""
        return (f"the server closed the connection (stopped with Ctrl-C?) before the client's kernel gave up: leave it "
                f"running, and type the drop rule in another shell{where}")
    if any(e.get("event") == "interrupted" for e in events) or (
            client_fin is not None and not len(flow.where(tf.RST_, tf.CLIENT))):
        return ("the client was stopped (Ctrl-C?) before its kernel gave up: leave it blocked in recv() until it fails"
                + (f" ({last})" if last else ""))
    if not any(e.get("event") == "error" for e in events) and not len(flow.where(tf.RST_, tf.CLIENT)):
        return _too_early(ctx, flow, client.host if client and client.host else "source", hands, last)
    return f"{undone} was not seen done" if undone else ""


# The keepalive exercises' parameters in the words of the socket options a person sets: name and unit.
OPTIONS = {"keepidle": ("TCP_KEEPIDLE", " s"), "keepintvl": ("TCP_KEEPINTVL", " s"), "keepcnt": ("TCP_KEEPCNT", ""),
           "user_timeout": ("TCP_USER_TIMEOUT", " ms"), "retries2": ("net.ipv4.tcp_retries2", "")}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def typed_otherwise(ctx: Context, r: CheckResult, hands: dict, flow: Callable[[], Optional[tf.Flow]]) -> str:
    """Values the lab assigned that the person's programs set otherwise, where this check judges with them:
    what was asked and what was set, what the wire shows of each, and what to type instead."""
    wrong = _differing(ctx.manifest, hands, _judged_with(ctx.manifest, r))
    if not wrong:
        return ""
    wire = _keepalive_wire(flow()) if any(p in WIRE for p, _, _ in wrong) else None
    where = hands.get("typed_in") or {}
    said = []
    for i, (param, asked, typed) in enumerate(wrong):
        program = (where.get(param) or {}).get("program", "program")
        text = f"{'your exercise' if i == 0 else 'it'} asked for {_asked(param, asked)} and the {program} set {_value(typed)}"
        shows = WIRE[param](wire) if wire is not None and param in WIRE else ""
        said.append(f"{text}: the wire shows {shows}" if shows else text)
    return "; ".join(said + [_to_type(wrong, where)])


def _judged_with(manifest: dict, r: CheckResult) -> set[str]:
    """The parameters a check's arguments carry (a result is named after its check, or 'check (side)')."""
    name = r.name.split(" ", 1)[0]
    specs = [c for c in manifest.get("checks") or [] if isinstance(c, dict) and c.get("check") == name]
    return {p for c in specs for v in c.values() if isinstance(v, str) for p in PLACEHOLDER.findall(v)}


def _differing(manifest: dict, hands: dict, judged_with: set[str]) -> list[tuple[str, Any, Any]]:
    """(parameter, the lab's value, what its program set) for each assigned parameter set otherwise, in the exercise's order."""
    assigned, typed = hands.get("assigned") or {}, hands.get("typed") or {}
    order = list(manifest.get("parameters") or {})
    return [(p, assigned[p], typed[p]) for p in sorted(assigned, key=lambda p: order.index(p) if p in order else len(order))
            if p in judged_with and p in typed and typed[p] != assigned[p]]


def _asked(param: str, value: Any) -> str:
    """'TCP_KEEPIDLE 7 s (keepidle=7, your lab's value)', or 'recv_buf=8192 (your lab's value)'."""
    if param in OPTIONS:
        option, unit = OPTIONS[param]
        return f"{option} {_value(value)}{unit} ({param}={_value(value)}, your lab's value)"
    return f"{param}={_value(value)} (your lab's value)"


def _to_type(wrong: list[tuple[str, Any, Any]], where: dict) -> str:
    """'run the client with --keepidle 7 --keepintvl 3 (step 3)': the lab's values in the steps that set them."""
    commands: dict[tuple[str, int], list[str]] = {}
    loose = []
    for param, asked, _ in wrong:
        w = where.get(param)
        if w and w.get("step"):
            commands.setdefault((w["program"], w["step"]), []).append(w["argument"].replace("{" + param + "}", _value(asked)))
        else:
            loose.append(f"{param}={_value(asked)}")
    said = [f"run the {program} with {' '.join(args)} (step {n})" for (program, n), args in commands.items()]
    return "; ".join(said + ([f"set {', '.join(loose)}"] if loose else []))


def _value(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _keepalive_wire(flow: Optional[tf.Flow]) -> Optional[Observed]:
    """The client's probes and abort on its connection, or None where the capture has none of it to show."""
    if flow is None:
        return None
    try:
        return observe_flow(flow, "the lab's capture")
    except MissingInput:
        return None


def _since_silence(o: Observed, t: float) -> str:
    return f"{t - o.anchor.ts:.2f} s after the last received segment"


def _first_probe(o: Observed) -> str:
    return f"the first probe {_since_silence(o, o.probes[0].ts)}" if o.probes else "no probe after the last received segment"


def _spacing(o: Observed) -> str:
    return f"the probes {', '.join(f'{iv:.2f}' for iv in o.intervals())} s apart" if len(o.probes) > 1 else ""


def _count_then_abort(o: Observed) -> str:
    probes = count(len(o.probes), "probe")
    return f"{probes}, then the abort (RST) {_since_silence(o, o.rst.ts)}" if o.rst else f"{probes} and no abort"


def _abort(o: Observed) -> str:
    probes = count(len(o.probes), "probe")
    return f"the abort (RST) {_since_silence(o, o.rst.ts)}, after {probes}" if o.rst else f"no abort, after {probes}"


# What the wire shows of each keepalive parameter: T sets the first probe, I their spacing, KEEPCNT (without
# a user timeout) how many before the abort, U when the abort comes (the first keepalive tick at or after it).
WIRE: dict[str, Callable[[Observed], str]] = {"keepidle": _first_probe, "keepintvl": _spacing, "keepcnt": _count_then_abort,
                                              "user_timeout": _abort}


def events_of(ctx: Context, program: Optional[str]) -> list[dict]:
    if not program:
        return []
    try:
        return ctx.events(program)
    except MissingInput:
        return []


def _flow(ctx: Context, program: Optional[str], client: Optional[Step]) -> Optional[tf.Flow]:
    """The client's connection in the lab's capture: by its logged port, else the first to the exercise's port."""
    host = client.host if client else "source"
    try:
        return ctx.client_flow(host, program) if program else None
    except MissingInput:
        pass
    port = next((args["port"] for _, args in client.when if "port" in args), None) if client else None
    try:
        flows = ctx.flows(host)
    except MissingInput:
        return None
    return next((f for f in flows if port is None or f.server[1] == int(port)), None)


def wrong_rule(hands: dict, drop: Step) -> str:
    """A drop rule the person added where it does not cut the connection: on another host, or for another port."""
    want_host, port = drop.arg("drop_rule", "host"), drop.arg("drop_rule", "port")
    facts = hands.get("facts") or {}
    for host, f in facts.items():
        for rule in f.get("iptables_added", f.get("iptables")) or []:  # only what the person added
            if not rule.startswith("-A ") or not re.search(r"-j (DROP|REJECT)\b", rule):
                continue
            if host != want_host:
                return f"the drop rule `{rule}` is on {host}; it belongs on {want_host}"
            if port is not None and not drops(rule, int(port)):
                ports = ", ".join(re.findall(r"--(?:d|s)ports? (\S+)", rule))
                return f"the drop rule `{rule}` on {host} drops port {ports}, not {port}"
    return ""


def _too_early(ctx: Context, flow: tf.Flow, capture: str, hands: dict, last: Optional[Step]) -> str:
    """`finish` came before the end: how long after the last received segment, and when the end was due."""
    finished = ctx.finish_began(capture)  # by the clock of the machine that took the capture
    finished = finished if finished is not None else hands.get("finished")
    anchor = flow.last(sender=tf.SERVER, before=float(finished)) if finished else None
    if not finished or anchor is None:
        return f"the run did not reach its end: {last}" if last else ""
    waited = float(finished) - anchor.ts
    p = ctx.manifest.get("parameters") or {}
    try:
        m = KeepaliveModel(float(p["keepidle"]), float(p["keepintvl"]), int(p["keepcnt"]), int(p.get("user_timeout") or 0), ctx.hz)
        due = m.abort(max(m.probe_counts())).nominal
        return (f"`invoke finish` came {waited:.1f} s after the last segment the client received; its kernel was due to give up at "
                f"{due:.1f} s: wait for {last} (`invoke watch` shows it coming)")
    except (KeyError, ValueError, TypeError):
        return f"`invoke finish` came {waited:.1f} s after the last segment the client received, before the end: wait for {last}"
