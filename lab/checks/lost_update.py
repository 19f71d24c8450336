"""Checks for a lost window update: why the persist timer exists.

The receiver's window update is dropped on the path (on the observer's bridge), so its own capture
shows it sent and the sender's capture shows it never arrived. Without the persist timer the two
would wait for each other forever; with it, the sender's next probe draws an ACK that reveals the
open window. Both captures hold the same connection, so sequence numbers compare directly.
"""
from __future__ import annotations

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..spec.functions import check
from .persist import observe_stall
from .result import CheckResult, count

# The sender transmits from the ACK's own softirq; this bounds scheduling on a loaded 2-core machine.
RESUME_SLACK = 0.02


@check
def window_update_lost(ctx: Context, sent_capture: str, seen_capture: str, client: str) -> CheckResult:
    """The receiver sent its window update while the path dropped it, and the sender never saw it."""
    _, drop_done = ctx.step_times("bridge_drop")
    restore_start, _ = ctx.step_times("bridge_restore")
    sent = observe_stall(ctx, sent_capture, client).reopened
    seen = observe_stall(ctx, seen_capture, client).reopened
    problems = []
    if sent is None:
        problems.append(f"{sent_capture}.pcap shows no window update from the server")
    elif not drop_done < sent.ts < restore_start:
        problems.append(f"the update left {sent.ts - drop_done:+.3f} s after the drop began, not while the path was dropping")
    if seen is not None and seen.ts < restore_start:
        problems.append(f"{seen_capture}.pcap saw an open window {restore_start - seen.ts:.3f} s before the path stopped dropping")
    observed = (
        f"sent at {sent.ts - drop_done:.3f} s into the loss (window {sent.window} bytes)" if sent else "no update sent"
    ) + (f"; the sender first saw an open window {seen.ts - restore_start:.3f} s after the loss ended" if seen else "; the sender never saw one")
    return CheckResult(
        "window_update_lost", not problems,
        expected=f"a window update in {sent_capture}.pcap while the bridge drops it; none in {seen_capture}.pcap until the drop ends",
        observed=observed, detail="; ".join(problems),
    )


@check
def no_data_while_lost(ctx: Context, sent_capture: str, seen_capture: str, client: str) -> CheckResult:
    """While the update was lost, the sender sent nothing but window probes: a deadlock the persist timer breaks."""
    sent = observe_stall(ctx, sent_capture, client).reopened
    stall = observe_stall(ctx, seen_capture, client)
    if sent is None or stall.reopened is None:
        return CheckResult("no_data_while_lost", False, "an update sent and later seen", "missing",
                           "the update was never sent or the sender never saw the window open")
    span = dict(since=sent.ts, before=stall.reopened.ts)
    data = stall.flow.where(tf.DATA, tf.CLIENT, without=(tf.ZERO_WINDOW_PROBE,), **span)
    probes = stall.flow.where(tf.ZERO_WINDOW_PROBE, tf.CLIENT, **span)
    return CheckResult(
        "no_data_while_lost", len(data) == 0 and len(probes) > 0,
        expected="only zero-window probes from the client between the lost update and the reopening it finally saw",
        observed=f"{count(len(probes), 'probe')} and {count(len(data), 'data segment')} in the {stall.reopened.ts - sent.ts:.3f} s the window was open but unknown to the sender",
        detail="" if len(probes) else "no probe either: nothing could have recovered the window",
    )


@check
def probe_reopens(ctx: Context, seen_capture: str, client: str) -> CheckResult:
    """After the loss, the sender's next probe draws the ACK that reveals the open window."""
    restore_start, _ = ctx.step_times("bridge_restore")
    stall = observe_stall(ctx, seen_capture, client)
    problems = []
    probe = None
    if stall.reopened is None:
        problems.append("the sender never saw the window open")
    else:
        probe = stall.flow.last(before=stall.reopened.ts)
        if probe is None or probe.sender != tf.CLIENT or not probe.has(tf.ZERO_WINDOW_PROBE):
            problems.append("the segment before the reopening ACK is not a zero-window probe from the client")
        elif stall.reopened.rel_ack != probe.rel_seq + 1:
            problems.append(f"the ACK acknowledges {stall.reopened.rel_ack}, not the probe's SND.UNA {probe.rel_seq + 1}")
        else:
            unanswered = stall.flow.where(tf.ZERO_WINDOW_PROBE, tf.CLIENT, since=restore_start, before=probe.ts)
            if len(unanswered):
                problems.append(f"{count(len(unanswered), 'probe')} after the loss ended went unanswered before this one")
        if stall.reopened.ts < restore_start:
            problems.append("the reopening arrived before the path stopped dropping")
    observed = (
        f"probe at {probe.ts - restore_start:.3f} s after the loss ended, answered with window {stall.reopened.window} bytes "
        f"{(stall.reopened.ts - probe.ts) * 1000:.2f} ms later" if probe is not None and stall.reopened else "no probe answered with an open window"
    )
    return CheckResult(
        "probe_reopens", not problems,
        expected="the first probe after the loss ends is answered by an ACK of SND.UNA with an open window",
        observed=observed, detail="; ".join(problems),
    )


@check
def data_resumes(ctx: Context, seen_capture: str, client: str) -> CheckResult:
    """New data follows the ACK that reopened the window at once."""
    stall = observe_stall(ctx, seen_capture, client)
    resumed = stall.resumed
    gap = resumed.ts - stall.reopened.ts if resumed is not None else None
    ok = gap is not None and gap <= RESUME_SLACK and resumed.rel_seq == stall.reopened.rel_ack
    return CheckResult(
        "data_resumes", ok,
        expected=f"new data at SND.UNA within {RESUME_SLACK * 1000:.0f} ms of the reopening ACK",
        observed=f"new data {gap * 1000:.2f} ms after it, at relative seq {resumed.rel_seq}" if gap is not None else "no new data",
        detail="" if ok else ("no new data after the reopening" if gap is None else "late, or not at SND.UNA"),
    )
