"""A capture's TCP segments as a table (one numpy column per field), for the checks and the tests that
read a lab's small captures whole. The reading itself is lab/analysis/capture.py's streaming scan;
this keeps every row, with the scanner's analysis of each beside it (`columns`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .capture import Scan, scan

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


class Segment(NamedTuple):
    index: int  # 1-based frame number, as Wireshark counts
    ts: float  # capture time, seconds since the epoch (CLOCK_REALTIME)
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    win: int  # raw window field, not yet scaled
    plen: int  # payload length from the IP header, so a short snaplen does not hide data
    wscale: Optional[int]  # window scale option, on SYN segments only
    mss: Optional[int] = None  # MSS option, on SYN segments only


@dataclass
class SegmentTable:
    """Every TCP segment of a capture, in file order, as columns. Addresses are ids into `addresses`."""

    index: np.ndarray  # int64, 1-based frame number
    ts: np.ndarray  # float64
    src: np.ndarray  # int64 address id
    dst: np.ndarray
    sport: np.ndarray  # int64
    dport: np.ndarray
    seq: np.ndarray  # int64 (0 .. 2**32-1)
    ack: np.ndarray
    flags: np.ndarray  # int64
    win: np.ndarray  # int64, raw
    plen: np.ndarray  # int64
    wscale: np.ndarray  # int64, -1 where absent
    addresses: list  # id -> text address
    mss: np.ndarray = None  # int64, -1 where absent or not a SYN (None: all absent)
    columns: dict = field(default_factory=dict, repr=False)  # the scanner's analysis of each row (lab/analysis/tcpscan.pyx)
    scan: Optional[Scan] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mss is None:
            self.mss = np.full(len(self.index), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def segment(self, i: int) -> Segment:
        ws, mss = int(self.wscale[i]), int(self.mss[i])
        return Segment(
            int(self.index[i]), float(self.ts[i]), self.addresses[self.src[i]], int(self.sport[i]),
            self.addresses[self.dst[i]], int(self.dport[i]), int(self.seq[i]), int(self.ack[i]),
            int(self.flags[i]), int(self.win[i]), int(self.plen[i]), ws if ws >= 0 else None, mss if mss >= 0 else None,
        )


def read_table(path: Path, only: Optional[set[int]] = None) -> SegmentTable:
    """Every TCP segment of a capture (classic pcap or pcapng, gzipped or not), with its analysis; with
    `only`, the segments of those connections (numbered from 0 in order of first appearance) alone."""
    batches: list[dict] = []

    def keep(rows: dict) -> None:
        if only is not None:
            mask = np.isin(rows["conv"], list(only))
            rows = {name: col[mask] for name, col in rows.items()}
        batches.append(rows)

    found = scan(Path(path), keep_all=True, on_rows=keep)
    cols = {name: np.concatenate([b[name] for b in batches]) if batches else np.zeros(0, dtype=np.int64)
            for name in (batches[0] if batches else {"conv": 0, "from_server": 0, "index": 0})}
    n = len(cols["index"])
    if not n:
        empty = np.zeros(0, dtype=np.int64)
        return SegmentTable(empty, np.zeros(0), empty, empty, empty, empty, empty, empty, empty, empty, empty, empty,
                            [], empty, {}, found)
    # Addresses: each connection's two ends, interned; a row's source is its sender's.
    addresses: list[str] = []
    ids: dict[str, int] = {}
    ends = np.zeros((found.connections, 2), dtype=np.int64)
    ports = np.zeros((found.connections, 2), dtype=np.int64)
    for conv in range(found.connections):
        for side, (addr, port) in enumerate(found.endpoints(conv)):
            ends[conv, side] = ids.setdefault(addr, len(ids))
            if ends[conv, side] == len(addresses):
                addresses.append(addr)
            ports[conv, side] = port
    conv, side = cols["conv"], cols["from_server"].astype(np.int64)
    return SegmentTable(
        index=cols["index"], ts=cols["ts"], src=ends[conv, side], dst=ends[conv, 1 - side],
        sport=ports[conv, side], dport=ports[conv, 1 - side], seq=cols["seq"], ack=cols["ack"], flags=cols["flags"],
        win=cols["win"], plen=cols["plen"], wscale=cols["wscale"], addresses=addresses, mss=cols["mss"],
        columns=cols, scan=found,
    )

