"""Each TCP connection of a capture, from one streaming pass (lab/analysis/capture.py): its summary
(endpoints, duration, bytes each way, handshake RTT, MSS, window scale, SACK and timestamps) and the
segments worth a finding (every one Wireshark flags, every SYN, FIN and RST, with the scanner's
columns). Memory grows with what happened on the wire, not with the size of the file: a bulk transfer
of ten gigabytes keeps its handful of retransmissions and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import tcpflow as tf
from .capture import WS_FLAGS, Scan, scan

# Flagged segments kept per connection, and in all (about 170 bytes each); past these they are counted,
# not kept: a connection with a million retransmissions says what it says in its first tens of thousands.
# Memory then grows with the number of connections (a few hundred bytes each), not with the packets.
KEEP_PER_CONNECTION = 50_000
KEEP_IN_ALL = 1_000_000


@dataclass
class Connection:
    """One connection: `number` counts from 0 in order of first appearance, as Wireshark's tcp.stream."""

    number: int
    client: tuple[str, int]
    server: tuple[str, int]
    summary: dict
    rows: dict = field(repr=False)  # the flagged segments' columns (lab/analysis/tcpscan.pyx's names)
    dropped: int = 0  # flagged segments past KEEP_PER_CONNECTION, not kept

    def __str__(self) -> str:
        return f"{self.client[0]}:{self.client[1]} -> {self.server[0]}:{self.server[1]}"

    @property
    def duration(self) -> float:
        return self.summary["last_ts"] - self.summary["first_ts"]

    @property
    def packets(self) -> int:
        return self.summary["client"]["packets"] + self.summary["server"]["packets"]

    def where(self, label: Optional[str] = None, sender: Optional[str] = None, wireshark: Optional[str] = None) -> np.ndarray:
        """Positions of the kept segments with a tcplab label, a Wireshark flag, from a sender."""
        m = np.ones(len(self.rows["index"]), dtype=bool)
        if label is not None:
            m &= (self.rows["labels"] & tf.BIT[label]) != 0
        if wireshark is not None:
            m &= (self.rows["ws"] & (1 << WS_FLAGS.index(wireshark))) != 0
        if sender is not None:
            m &= self.rows["from_server"].astype(bool) == (sender == tf.SERVER)
        return np.flatnonzero(m)

    def matches(self, a: tuple[str, int], b: tuple[str, int]) -> bool:
        return {self.client, self.server} == {a, b}


def gather(path: Path, progress: Optional[Callable[[int], None]] = None,
           on_frames: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> tuple[Scan, list[Connection]]:
    """Every connection of the file, in order of first appearance; each batch of (frame numbers,
    Wireshark flags) of every TCP frame to on_frames, if given."""
    parts: dict[int, list[dict]] = {}
    kept: dict[int, int] = {}
    dropped: dict[int, int] = {}
    sum_kept = [0]

    def on_rows(rows: dict) -> None:
        conv = rows["conv"]
        order = np.argsort(conv, kind="stable")
        values, starts = np.unique(conv[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for c, a, b in zip(values.tolist(), starts.tolist(), ends.tolist()):
            take = order[a:b]
            room = min(KEEP_PER_CONNECTION - kept.get(c, 0), KEEP_IN_ALL - sum_kept[0])
            if room < len(take):
                dropped[c] = dropped.get(c, 0) + len(take) - max(room, 0)
                take = take[:max(room, 0)]
            if len(take):
                parts.setdefault(c, []).append({name: col[take] for name, col in rows.items()})
                kept[c] = kept.get(c, 0) + len(take)
                sum_kept[0] += len(take)

    found = scan(path, keep_all=False, on_rows=on_rows, progress=progress, frame_flags=on_frames is not None, on_frames=on_frames)
    out = []
    for c in range(found.connections):
        chunks = parts.get(c, [])
        rows = ({name: np.concatenate([p[name] for p in chunks]) for name in chunks[0]} if chunks
                else {name: col[:0].copy() for name, col in found.scanner.out.items()})
        client, server = found.endpoints(c)
        out.append(Connection(c, client, server, found.summary(c), rows, dropped.get(c, 0)))
    return found, out
