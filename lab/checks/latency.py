"""Checks for the impairment layer: the RTT a program measured against the configured one-way delays.

A delay each way adds 2 x delay to the round trip the lab has without it (measured in the same run), and a
delay line or qdisc releases a frame a little after its due time, never before: so the allowance is
one-sided up to the tolerance and a small margin below for clock reading.
"""
from __future__ import annotations

import statistics

from ..analysis.context import Context
from ..errors import MissingInput
from ..spec.functions import check
from .result import CheckResult

# Below the model: only the clocks' reading jitter (the delay is never shortened).
EARLY_MS = 0.2


def _rtts(ctx: Context, program: str) -> dict[str, float]:
    ev = ctx.event(program, "rtt")
    if ev is None or not ev.get("connect_ms") or not ev.get("echo_ms"):
        raise MissingInput(f"{program}.log has no 'rtt' event with measurements")
    return {"connect": statistics.median(ev["connect_ms"]), "echo": statistics.median(ev["echo_ms"])}


@check
def rtt_follows_delay(ctx: Context, program: str, delay_ms, baseline: str = "", ways=2, tolerance_ms=2.0) -> CheckResult:
    """The median handshake and one-byte echo times of `program` are the `baseline` program's (or,
    without one, nothing: a veth's own RTT is tens of microseconds) plus `ways` x delay_ms (2: the same
    delay each way; 1: one way only), no more than tolerance_ms late."""
    name = "rtt_follows_delay"
    delay, tol, n = float(delay_ms), float(tolerance_ms), int(ways)
    got = _rtts(ctx, program)
    base = _rtts(ctx, baseline) if baseline else {k: 0.0 for k in got}
    want = {k: base[k] + n * delay for k in base}
    off = {k: got[k] - want[k] for k in got}
    bad = [k for k in off if not -EARLY_MS <= off[k] <= tol]
    against = f"{baseline}'s ({base['connect']:.3f}, {base['echo']:.3f} ms) + " if baseline else ""
    expected = (f"handshake {want['connect']:.3f} ms and echo {want['echo']:.3f} ms: "
                f"{against}{n} x {delay:g} ms, up to {tol:g} ms late")
    observed = f"handshake {got['connect']:.3f} ms, echo {got['echo']:.3f} ms (medians of {program}'s measurements)"
    detail = "; ".join(f"{k} {off[k]:+.3f} ms off" for k in bad)
    return CheckResult(name, not bad, expected=expected, observed=observed, detail=detail)
