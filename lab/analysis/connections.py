"""Each TCP connection of a capture, from one streaming pass (lab/analysis/capture.py): its summary
(endpoints, duration, bytes each way, handshake RTT, MSS, window scale, SACK and timestamps) and the
segments worth a finding (every one Wireshark flags, every SYN, FIN and RST, with the scanner's
columns). Memory grows with what happened on the wire, not with the size of the file: a bulk transfer
of ten gigabytes keeps its handful of retransmissions and nothing else.
"""
from __future__ import annotations

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


class Connection:
    """One connection: `number` counts from 0 in order of first appearance, as Wireshark's tcp.stream.
    Its summary and endpoints are read from the scan when asked for, and its kept segments are a slice
    of one table shared by all connections: a capture of a million connections costs little more than
    the scanner's own few hundred bytes each."""

    __slots__ = ("number", "_scan", "_store", "_start", "_end", "dropped", "_summary", "_ends")

    def __init__(self, number: int, scan: Scan, store: dict, start: int, end: int, dropped: int):
        self.number, self._scan, self._store, self._start, self._end = number, scan, store, start, end
        self.dropped = dropped  # flagged segments past the caps below, counted and not kept
        self._summary: Optional[dict] = None
        self._ends: Optional[tuple] = None

    @property
    def rows(self) -> dict:
        """The kept segments' columns (lab/analysis/tcpscan.pyx's names), views of the shared table."""
        return {name: col[self._start:self._end] for name, col in self._store.items()}

    @property
    def kept(self) -> int:
        return self._end - self._start

    @property
    def summary(self) -> dict:
        if self._summary is None:
            self._summary = self._scan.summary(self.number)
        return self._summary

    @property
    def client(self) -> tuple[str, int]:
        return self._endpoints()[0]

    @property
    def server(self) -> tuple[str, int]:
        return self._endpoints()[1]

    def _endpoints(self) -> tuple:
        if self._ends is None:
            self._ends = self._scan.endpoints(self.number)
        return self._ends

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
        rows = self.rows
        m = np.ones(self.kept, dtype=bool)
        if label is not None:
            m &= (rows["labels"] & tf.BIT[label]) != 0
        if wireshark is not None:
            m &= (rows["ws"] & (1 << WS_FLAGS.index(wireshark))) != 0
        if sender is not None:
            m &= rows["from_server"].astype(bool) == (sender == tf.SERVER)
        return np.flatnonzero(m)

    def matches(self, a: tuple[str, int], b: tuple[str, int]) -> bool:
        return {self.client, self.server} == {a, b}

    def eventful(self) -> int:
        """How much a timer did here, cheaply (no findings worked out): the kept segments that are more
        than a handshake or a FIN, and a RST counted twice. 0 for a connection with nothing to say."""
        rows = self.rows
        quiet = tf.BIT[tf.SYN_] | tf.BIT[tf.SYN_ACK] | tf.BIT[tf.FIN_] | tf.BIT[tf.DATA] | tf.BIT[tf.PURE_ACK]
        busy = int(np.count_nonzero(rows["labels"] & ~quiet))
        return busy + 2 * int(np.count_nonzero(rows["flags"] & 0x04)) + self.dropped


def gather(path: Path, progress: Optional[Callable[[int], None]] = None,
           on_frames: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> tuple[Scan, list[Connection]]:
    """Every connection of the file, in order of first appearance; each batch of (frame numbers,
    Wireshark flags) of every TCP frame to on_frames, if given."""
    batches: list[dict] = []
    kept = np.zeros(0, dtype=np.int64)  # per connection
    dropped = np.zeros(0, dtype=np.int64)
    total = [0]

    def on_rows(rows: dict) -> None:
        nonlocal kept, dropped
        conv = rows["conv"]
        size = int(conv.max()) + 1
        if size > len(kept):
            kept = np.concatenate([kept, np.zeros(size - len(kept), dtype=np.int64)])
            dropped = np.concatenate([dropped, np.zeros(size - len(dropped), dtype=np.int64)])
        # each row's place among its connection's rows in this batch, to apply the caps to all at once
        order = np.argsort(conv, kind="stable")
        sorted_conv = conv[order]
        first = np.searchsorted(sorted_conv, sorted_conv, side="left")
        rank = np.empty(len(conv), dtype=np.int64)
        rank[order] = np.arange(len(conv)) - first
        keep = kept[conv] + rank < KEEP_PER_CONNECTION
        keep &= np.cumsum(keep) + total[0] <= KEEP_IN_ALL
        np.add.at(dropped, conv[~keep], 1)
        np.add.at(kept, conv[keep], 1)
        total[0] += int(keep.sum())
        if keep.any():
            batches.append({name: col[keep] for name, col in rows.items()})

    found = scan(path, keep_all=False, on_rows=on_rows, progress=progress, frame_flags=on_frames is not None, on_frames=on_frames)
    if batches:
        table = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
        order = np.argsort(table["conv"], kind="stable")
        table = {name: col[order] for name, col in table.items()}
    else:
        table = {name: col[:0].copy() for name, col in found.scanner.out.items()}
    bounds = np.searchsorted(table["conv"], np.arange(found.connections + 1))
    lost = np.zeros(found.connections, dtype=np.int64)
    lost[:len(dropped)] = dropped[:found.connections]
    return found, [Connection(c, found, table, int(bounds[c]), int(bounds[c + 1]), int(lost[c])) for c in range(found.connections)]
