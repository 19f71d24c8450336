"""The check of a capture a person took by hand (hands-on mode): does it show what the lab's own
capture shows? The same connection, every one of its segments, up to its end. A capture on the wrong
interface, with a filter that leaves the connection out, or stopped too early, fails with that said."""
from __future__ import annotations

from pathlib import Path

from ..analysis import tcpflow as tf
from ..analysis.context import Context
from ..spec.functions import check
from .result import CheckResult, count


def _segments(flow: tf.Flow) -> list[tuple]:
    """Each segment as both ends see it: who sent it, its sequence and acknowledgement, flags, length."""
    t = flow.table
    rows = flow.rows
    return list(zip(flow.from_server.tolist(), t.seq[rows].tolist(), t.ack[rows].tolist(), t.flags[rows].tolist(), t.plen[rows].tolist()))


@check
def student_capture(ctx: Context, host: str, client: str) -> CheckResult:
    """The person's capture on `host` holds the client's connection as the lab's capture has it, every
    segment, to the last one."""
    name = "student_capture"
    theirs = [c for c in ctx.manifest.get("student_captures") or [] if c.get("host") == host]
    lab_flow = ctx.client_flow(host, client)  # the lab's capture, standing for the host where it has none of its own
    # What the wire carried once `finish` began stopping the person's programs (their capture among them) is not theirs to show.
    began = (ctx.manifest.get("hands_on") or {}).get("finish_began")
    keep = [int(k) for k in lab_flow.where(before=float(began))] if began else list(range(len(lab_flow)))
    segments = _segments(lab_flow)
    want = [segments[k] for k in keep]
    last_k = keep[-1] if keep else 0
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
        got = set(_segments(mine))
        missing = [s for s in want if s not in got]
        if not missing:
            best = c
            findings.append(f"{c['taken_as']}: all {count(len(want), 'segment')} of the connection")
            break
        last = max((k for k, s in enumerate(want) if s in got), default=-1)
        if last < len(want) - 1 and not [s for s in want[:last + 1] if s not in got]:
            gone = float(lab_flow.ts[last_k] - lab_flow.ts[keep[last + 1]])
            findings.append(f"{c['taken_as']}: stops {count(len(want) - last - 1, 'segment')} short, {gone:.3f} s before the lab's "
                            f"capture ends: tcpdump was stopped too early")
        else:
            findings.append(f"{c['taken_as']}: {len(want) - len(missing)} of the {count(len(want), 'segment')}; "
                            f"{count(len(missing), 'segment')} missing")
    return CheckResult(name, best is not None, expected, "; ".join(findings))

