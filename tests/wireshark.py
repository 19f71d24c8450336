"""What Wireshark says about a capture, and how our labels map onto its TCP analysis flags.

The mapping is explicit where the two deliberately differ: Linux probes the zero window with a 0-byte
segment at SND.UNA - 1, which Wireshark calls a keep-alive (its zero-window probe needs one new byte
at SND.NXT), so our `zero_window_probe` in that form maps to Wireshark's `keep_alive`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lab.analysis import tcpflow as tf
from lab.errors import LabError

# Wireshark flag -> tshark field
FIELDS = {
    "keep_alive": "tcp.analysis.keep_alive",
    "zero_window": "tcp.analysis.zero_window",
    "zero_window_probe": "tcp.analysis.zero_window_probe",
    "window_update": "tcp.analysis.window_update",
    "window_full": "tcp.analysis.window_full",
    "retransmission": "tcp.analysis.retransmission",
    "fast_retransmission": "tcp.analysis.fast_retransmission",
    "out_of_order": "tcp.analysis.out_of_order",
    "reset": "tcp.flags.reset",
}
COMPARED = ["keep_alive", "zero_window", "zero_window_probe", "window_update", "window_full", "retransmission",
            "fast_retransmission", "out_of_order", "reset"]


def tshark_flags(path: Path) -> dict[int, set[str]]:
    """Frame number -> the Wireshark flags tshark sets on it, for every TCP frame."""
    if shutil.which("tshark") is None:
        raise LabError("tshark is missing: install it with `sudo apt-get install -y tshark` or run ./bootstrap")
    argv = ["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f",
            "-e", "frame.number", *[a for f in FIELDS.values() for a in ("-e", f)]]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"tshark failed on {path}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    out: dict[int, set[str]] = {}
    names = list(FIELDS)
    for line in r.stdout.splitlines():
        cols = line.split("\t")
        flags = set()
        for name, value in zip(names, cols[1:]):
            if value and value not in ("0", "False"):
                flags.add(name)
        out[int(cols[0])] = flags
    return out


def our_flags(path: Path) -> dict[int, set[str]]:
    """Frame number -> our labels, expressed as the Wireshark flags they correspond to."""
    out: dict[int, set[str]] = {}
    for flow in tf.analyze_file(path):
        frames = flow.table.index[flow.rows]
        bits = flow.labels

        def has(label: str, bits=bits):
            return (bits & tf.BIT[label]) != 0

        linux_probe = has(tf.ZERO_WINDOW_PROBE) & ~has(tf.RFC_ZERO_WINDOW_PROBE)
        mapped = {
            "keep_alive": has(tf.KEEPALIVE) | linux_probe,
            "zero_window": has(tf.ZERO_WINDOW),
            "zero_window_probe": has(tf.RFC_ZERO_WINDOW_PROBE),
            "window_update": has(tf.WINDOW_UPDATE),
            "window_full": has(tf.WINDOW_FULL),
            # Our SYN, tail-loss-probe and RTO labels refine Wireshark's retransmission; they are never without it.
            "retransmission": has(tf.RETRANSMISSION) | has(tf.SYN_RETRANSMISSION) | has(tf.TAIL_LOSS_PROBE) | has(tf.RTO_RETRANSMISSION),
            "fast_retransmission": has(tf.FAST_RETRANSMISSION),
            "out_of_order": has(tf.OUT_OF_ORDER),
            "reset": has(tf.RST_),
        }
        for k, frame in enumerate(frames.tolist()):
            out[int(frame)] = {name for name, col in mapped.items() if col[k]}
    return out


def disagreements(path: Path) -> dict[str, list[int]]:
    """For each compared flag, the frames where tshark and we differ (empty lists: full agreement)."""
    theirs, ours = tshark_flags(path), our_flags(path)
    out: dict[str, list[int]] = {name: [] for name in COMPARED}
    for frame in sorted(set(theirs) | set(ours)):
        t, o = theirs.get(frame, set()), ours.get(frame, set())
        for name in COMPARED:
            if (name in t) != (name in o):
                out[name].append(frame)
    return out
