"""What Wireshark says about a capture, frame by frame, beside what tcplab's scanner says.

The scanner (lab/analysis/tcpscan.pyx) follows tshark 4.0's TCP analysis condition for condition, and
reads the packets as its dissectors do (IP fragments reassembled and read at the fragment completing
the datagram; options it cannot dissect hiding a frame's flags; the reported length for offloaded IP
lengths), so every flag is compared as it is, with no mapping, and so is the set of frames analysed.
Where tcplab reads a capture differently on purpose, the reason is here:

- A pseudowire's Ethernet over MPLS whose first nibble is 0: Wireshark asks its vendor database whether
  both MAC addresses are known to tell a control word from none; tcplab takes a first word of zero flags,
  or a locally administered address, as a control word (the database is not carried along).
- IP fragments: Wireshark keeps every fragment until its datagram is whole; tcplab keeps at most 1,024
  datagrams waiting (the oldest dropped) and 64 KiB each, so that no file makes it grow without bound.

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
ANALYSED = "analysed"  # not a flag: the frame's segment went through the analysis


def tshark_flags(path: Path) -> dict[int, set[str]]:
    """Frame number -> the Wireshark flags tshark sets on it, for every TCP frame."""
    return {frame: flags - {ANALYSED} for frame, flags in _tshark(path).items()}


def _tshark(path: Path) -> dict[int, set[str]]:
    """tshark_flags, with ANALYSED among a frame's flags where its segment went through the analysis."""
    if shutil.which("tshark") is None:
        raise LabError("tshark is missing: install it with `sudo apt-get install -y tshark` or run ./bootstrap")
    argv = ["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f",
            "-e", "frame.number", *[a for f in FIELDS.values() for a in ("-e", f)], "-e", "tcp.len"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"tshark failed on {path}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    out: dict[int, set[str]] = {}
    for line in r.stdout.splitlines():
        cols = line.split("\t")
        out[int(cols[0])] = {name for name, value in zip(COMPARED, cols[1:]) if value and value not in ("0", "False")}
        if len(cols) > len(COMPARED) + 1 and cols[-1]:
            out[int(cols[0])].add(ANALYSED)  # a segment length: the analysis ran (not a quoted header, not a fragment)
    return out


def our_flags(path: Path) -> dict[int, set[str]]:
    """Frame number -> the Wireshark flags tcplab's scanner sets on it, for every TCP frame it read."""
    return {frame: flags - {ANALYSED} for frame, flags in _ours(path).items()}


def _ours(path: Path) -> dict[int, set[str]]:
    """our_flags, with ANALYSED as in _tshark."""
    out: dict[int, set[str]] = {}
    bits = [(name, 1 << capture.WS_FLAGS.index(name)) for name in COMPARED]

    quoted = 1 << 16  # tcpscan.pyx's W_QUOTED: a TCP header quoted in an ICMP error, not analysed

    def on_frames(frames, ws):
        for frame, w in zip(frames.tolist(), ws.tolist()):
            out[frame] = {name for name, bit in bits if w & bit} | (set() if w & quoted else {ANALYSED})

    capture.scan(Path(path), keep_all=False, frame_flags=True, on_frames=on_frames)
    return out


def disagreements(path: Path) -> dict[str, list[int]]:
    """For each compared flag, the frames where tshark and tcplab differ (empty lists: full agreement);
    and under "analysed", if any, the frames only one of them analysed."""
    differ = compare(path)[0]
    if not differ[ANALYSED]:
        del differ[ANALYSED]
    return differ


def compare(path: Path) -> tuple[dict[str, list[int]], collections.Counter]:
    """The frames that differ per flag (and "analysed": a frame one side analysed and the other did
    not), and how many frames tshark flagged per flag."""
    theirs, ours = _tshark(path), _ours(path)
    differ: dict[str, list[int]] = {name: [] for name in COMPARED + [ANALYSED]}
    flagged: collections.Counter = collections.Counter()
    for frame in sorted(set(theirs) | set(ours)):
        t, o = theirs.get(frame, set()), ours.get(frame, set())
        if (ANALYSED in t) != (ANALYSED in o):
            differ[ANALYSED].append(frame)
        for name in COMPARED:
            flagged[name] += name in t
            if (name in t) != (name in o):
                differ[name].append(frame)
    return differ, flagged
