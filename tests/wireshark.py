"""What Wireshark says about a capture, frame by frame, beside what tcplab's scanner says.

The scanner (lab/analysis/tcpscan.pyx) follows tshark 4.0's TCP analysis condition for condition, so
every flag is compared as it is, with no mapping. Where tcplab reads a capture differently on purpose,
the reason is here:

- IP fragments: Wireshark reassembles a TCP segment split over IP fragments and analyses it at the
  frame of the last fragment; tcplab skips fragments (counted as skipped, "non-first IP fragments" or
  a first fragment's partial segment), since a reassembly buffer per flow would break the flat memory
  the analyzer keeps on any file. No capture of the corpus has one.
- TCP headers quoted inside ICMP errors: tshark shows them as TCP frames (with no analysis flags);
  tcplab counts them as "IP but not TCP". The flags agree (none on either side).

tcplab's own labels (lab/analysis/tcpflow.py) refine some of these flags: Linux's zero-window probe
is Wireshark's keep_alive sent into a closed window, and the resends are named by the timer that sent
them. Those are not compared here; they are tested against the kernel's behaviour.
"""
from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

from lab.analysis import capture
from lab.errors import LabError

# The flags tcplab and tshark both have, by tshark's field name (tcp.analysis.<flag>; reset is tcp.flags.reset).
COMPARED = [
    "keep_alive", "keep_alive_ack", "zero_window", "zero_window_probe", "zero_window_probe_ack", "window_update",
    "window_full", "retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order", "duplicate_ack",
    "lost_segment", "ack_lost_segment", "reused_ports", "reset",
]
FIELDS = {name: ("tcp.flags.reset" if name == "reset" else f"tcp.analysis.{name}") for name in COMPARED}


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
    for line in r.stdout.splitlines():
        cols = line.split("\t")
        out[int(cols[0])] = {name for name, value in zip(COMPARED, cols[1:]) if value and value not in ("0", "False")}
    return out


def our_flags(path: Path) -> dict[int, set[str]]:
    """Frame number -> the Wireshark flags tcplab's scanner sets on it, for every TCP frame it read."""
    out: dict[int, set[str]] = {}
    bits = [(name, 1 << capture.WS_FLAGS.index(name)) for name in COMPARED]

    def on_frames(frames, ws):
        for frame, w in zip(frames.tolist(), ws.tolist()):
            out[frame] = {name for name, bit in bits if w & bit}

    capture.scan(Path(path), keep_all=False, frame_flags=True, on_frames=on_frames)
    return out


def disagreements(path: Path) -> dict[str, list[int]]:
    """For each compared flag, the frames where tshark and tcplab differ (empty lists: full agreement)."""
    return compare(path)[0]


def compare(path: Path) -> tuple[dict[str, list[int]], collections.Counter]:
    """The frames that differ per flag, and how many frames tshark flagged per flag."""
    theirs, ours = tshark_flags(path), our_flags(path)
    differ: dict[str, list[int]] = {name: [] for name in COMPARED}
    flagged: collections.Counter = collections.Counter()
    for frame in sorted(set(theirs) | set(ours)):
        t, o = theirs.get(frame, set()), ours.get(frame, set())
        for name in COMPARED:
            flagged[name] += name in t
            if (name in t) != (name in o):
                differ[name].append(frame)
    return differ, flagged
