"""The check of a capture a person took by hand (hands-on mode): does it show what the lab's own
capture shows? The same connection from its first segment to its last, and every segment the exercise
is about (handshake, probes and their answers, windows, teardown). A capture on the wrong interface,
with a filter that leaves the connection out, started late or stopped too early, fails with that said.
Bulk data and plain ACKs that tcpdump dropped because it could not keep up (a 60 MB burst does that
to its default buffer) are said, not failed: they are not the person's doing."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..spec.functions import check
from .result import CheckResult, count


# What a capture must hold to show an exercise: any segment with one of these labels.
ESSENTIAL = (tf.SYN_, tf.SYN_ACK, tf.FIN_, tf.RST_, tf.KEEPALIVE, tf.KEEPALIVE_ACK, tf.ZERO_WINDOW, tf.ZERO_WINDOW_PROBE,
             tf.ZERO_WINDOW_PROBE_ACK, tf.WINDOW_UPDATE)


def _essential(flow: tf.Flow) -> list[bool]:
    mask = sum(tf.BIT[label] for label in ESSENTIAL)
    return ((flow.labels & mask) != 0).tolist()


def _present(want: list[tuple], theirs: list[tuple]) -> list[bool]:
    """For each wanted segment, in order, whether the other capture has it. Counted, not just looked up:
    keep-alive probes are identical segments, and a capture with two of three has one missing."""
    left = Counter(theirs)
    out = []
    for seg in want:
        out.append(left[seg] > 0)
        left[seg] -= 1
    return out


def _segments(flow: tf.Flow) -> list[tuple]:
    """Each segment as both ends see it: who sent it, its sequence and acknowledgement, flags, length."""
    t = flow.table
    rows = flow.rows
    return list(zip(flow.from_server.tolist(), t.seq[rows].tolist(), t.ack[rows].tolist(), t.flags[rows].tolist(), t.plen[rows].tolist()))


@check
def student_capture(ctx: Context, host: str, client: str) -> CheckResult:
    """The person's capture on `host` holds the client's connection as the lab's capture has it: from its
    first segment to its last, with every segment the exercise is about."""
    name = "student_capture"
    theirs = [c for c in ctx.manifest.get("student_captures") or [] if c.get("host") == host]
    lab_flow = ctx.client_flow(host, client)  # the lab's capture, standing for the host where it has none of its own
    # (What the wire carried once `finish` began stopping the person's programs, their capture among them, the context leaves out.)
    want, essential = _segments(lab_flow), _essential(lab_flow)
    last_k = max(len(want) - 1, 0)
    expected = (f"a capture of your own on {host} with the connection {lab_flow}: the lab's capture has "
                f"{count(len(want), 'segment')} of it, the last at {float(lab_flow.ts[last_k] - lab_flow.ts[0]):.3f} s")
    if not theirs:
        return CheckResult(name, False, expected, f"no capture file of yours in {host}'s folder",
                           "tcpdump was not started there, or wrote its capture elsewhere (or not at all: -w FILE)")
    findings = []
    best = None
    for c in theirs:
        path = ctx.folder / c["file"]
        try:
            flows = tf.analyze_file(Path(path))
        except Exception as e:  # noqa: BLE001  (a file of the person's: whatever is wrong with it is what they learn)
            findings.append(f"{c['taken_as']}: not a capture tcplab can read ({e})")
            continue
        mine = next((f for f in flows if (f.client, f.server) == (lab_flow.client, lab_flow.server)), None)
        if mine is None:
            others = len(flows)
            findings.append(f"{c['taken_as']}: none of the connection ({count(others, 'other connection')}); was it "
                            f"taken on another interface than {host}'s, or with a filter that leaves it out?")
            continue
        present = _present(want, _segments(mine))
        missing = [s for s, here in zip(want, present) if not here]
        if not missing:
            best = c
            findings.append(f"{c['taken_as']}: all {count(len(want), 'segment')} of the connection")
            break
        last = max((k for k, here in enumerate(present) if here), default=-1)
        if last < len(want) - 1 and all(present[:last + 1]):
            gone = float(lab_flow.ts[last_k] - lab_flow.ts[last + 1])
            findings.append(f"{c['taken_as']}: stops {count(len(want) - last - 1, 'segment')} short, {gone:.3f} s before the lab's "
                            f"capture ends: tcpdump was stopped too early")
        elif present[0] and present[-1] and all(here for here, needed in zip(present, essential) if needed):
            best = c
            findings.append(f"{c['taken_as']}: every segment the exercise is about, from the first to the last; "
                            f"{count(len(missing), 'data or ACK segment')} of {len(want)} missing in between, which tcpdump "
                            f"dropped when it could not keep up (its -B option gives it a bigger buffer)")
            break
        else:
            lost = sum(1 for here, needed in zip(present, essential) if needed and not here)
            findings.append(f"{c['taken_as']}: {len(want) - len(missing)} of the {count(len(want), 'segment')}; "
                            f"{count(len(missing), 'segment')} missing" + (f", of which {lost} the exercise is about "
                                                                           f"(handshake, probes, windows, teardown)" if lost else ""))
    return CheckResult(name, best is not None, expected, "; ".join(findings))

