"""Fast reader of captures (classic pcap, and pcapng by lab/analysis/pcapng.py) into a table of TCP
segments (one numpy column per field).

Captures of bulk transfers run to millions of packets: a scapy object per packet is about a hundred
times too slow, so the file is read whole, one Python loop finds where each record starts, and every
header field is gathered for all packets at once with numpy.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ..errors import LabError
from . import pcapng

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_RAW2 = 0, 1, 101, 12
LINKTYPE_SLL, LINKTYPE_SLL2 = 113, 276
ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8


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
    wscale: np.ndarray  # int64, -1 where absent or not a SYN
    addresses: list  # id -> text address
    mss: np.ndarray = None  # int64, -1 where absent or not a SYN (None: all absent)

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


def read_table(path: Path) -> SegmentTable:
    """Every TCP segment of a capture, classic pcap (tcpdump -w) or pcapng (Wireshark, tshark -w)."""
    try:
        buf = Path(path).read_bytes()
    except OSError as e:
        raise LabError(f"{path}: cannot open capture: {e.strerror}") from None
    if len(buf) < 24:
        raise LabError(f"{path}: not a capture file (too short); was the capture stopped before it started?")
    w = _Words(buf)
    b = np.frombuffer(buf, dtype=np.uint8)
    if buf[:4] == pcapng.MAGIC:
        starts, lengths, ts, links = pcapng.records(path, buf)
        net, etype, ok = (np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=bool))
        for link in np.unique(links).tolist():  # interfaces of different link types: each read by its own rules
            rows = links == link
            net[rows], etype[rows], ok[rows] = _network(w, b, starts[rows], lengths[rows], int(link))
    elif buf[:4] in MAGIC:
        endian, tick = MAGIC[buf[:4]]
        linktype = struct.unpack(endian + "I", buf[20:24])[0] & 0x0FFFFFFF
        starts, lengths = _records(buf, endian)
        header = _Words(buf, endian)
        ts = header.u32(starts - 16).astype(np.float64) + header.u32(starts - 12).astype(np.float64) * tick
        net, etype, ok = _network(w, b, starts, lengths, linktype)
    else:
        raise LabError(f"{path}: not a pcap or pcapng file (unknown magic {buf[:4].hex()})")
    index = np.arange(1, len(starts) + 1, dtype=np.int64)
    return _tcp(buf, w, b, starts, lengths, net, etype, ok, index, ts)


def _records(buf: bytes, endian: str) -> tuple[np.ndarray, np.ndarray]:
    """Start offset and captured length of every complete record; a record cut short ends the file."""
    found = _records_vectorized(buf, endian)
    return found if found is not None else _records_walk(buf, endian)


# A record header's timestamp lies within this many seconds of the first record's.
CAPTURE_SPAN = 7 * 86400


def _records_vectorized(buf: bytes, endian: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Finds record headers at every byte offset at once, then follows their chain.

    A header has a timestamp near the first record's and incl <= orig. Payload bytes sometimes look
    like that too, so the candidates are chained (next = start + 16 + incl) from offset 24: runs of
    candidates that lead to one another are taken whole, and at each break a lookup jumps to where
    the chain really goes, stepping over impostors. Python loops once per break, not once per record
    (a loop iteration costs about a microsecond). None if the chain leads off the candidates (a
    record with an unexpected timestamp): the caller then walks record by record.
    """
    n = len(buf)
    if n < 40:
        return None
    dt = np.dtype(endian + "u4")
    first = int(np.frombuffer(buf, dtype=dt, count=1, offset=24)[0])
    found = []
    for k in range(4):  # the four alignments of a 32-bit field
        v = np.frombuffer(buf, dtype=dt, count=(n - k) // 4, offset=k)
        j = np.nonzero(v - np.uint32(first) <= CAPTURE_SPAN)[0]  # unsigned: earlier times wrap to huge
        j = j[j + 3 < len(v)]
        incl, orig = v[j + 2], v[j + 3]
        found.append(k + 4 * j[(incl <= orig) & (orig <= 1 << 24)])
    hdr = np.sort(np.concatenate(found))
    hdr = hdr[hdr >= 24]
    if not len(hdr) or hdr[0] != 24:
        return None
    incl = _Words(buf, endian).u32(hdr + 8)
    nxt = hdr + 16 + incl
    leads_on = np.append(nxt[:-1] == hdr[1:], False)
    breaks = np.nonzero(~leads_on)[0]
    runs, i = [], 0
    while True:
        j = int(breaks[np.searchsorted(breaks, i)])  # the run i..j chains; j leads elsewhere
        target = int(nxt[j])
        if target > n:  # record j is cut short by the end of the file
            runs.append((i, j))
            break
        runs.append((i, j + 1))
        k = int(np.searchsorted(hdr, target))
        if k < len(hdr) and hdr[k] == target:
            i = k
            continue
        if n - target >= 16:
            return None  # a whole header the candidates missed
        break
    keep = np.concatenate([np.arange(a, b) for a, b in runs if b > a] or [np.zeros(0, dtype=np.int64)])
    return hdr[keep] + 16, incl[keep]


def _records_walk(buf: bytes, endian: str) -> tuple[np.ndarray, np.ndarray]:
    unpack = struct.Struct(endian + "I").unpack_from
    starts = []
    add = starts.append
    off, end = 24, len(buf)
    while off + 16 <= end:
        incl = unpack(buf, off + 8)[0]
        if off + 16 + incl > end:
            break  # tcpdump killed mid-write: what came before is good
        add(off + 16)
        off += 16 + incl
    s = np.array(starts, dtype=np.int64)
    return s, (_Words(buf, endian).u32(s - 8) if len(s) else s)


class _Words:
    """32-bit words at arbitrary byte offsets, gathered through four aligned views of the file."""

    def __init__(self, buf: bytes, endian: str = ">"):
        self.last = len(buf) - 4
        self.views = [np.frombuffer(buf, dtype=endian + "u4", count=(len(buf) - k) // 4, offset=k) for k in range(4)]

    def u32(self, at: np.ndarray) -> np.ndarray:
        # A word may start in the last three bytes of a short final record: read the file's last word
        # instead; such rows are masked out by the callers' length checks.
        at = np.minimum(at, self.last)
        out = np.empty(len(at), dtype=np.int64)
        align = at & 3
        for k in range(4):
            m = align == k
            out[m] = self.views[k][(at[m] - k) >> 2]
        return out

    def u16(self, at: np.ndarray) -> np.ndarray:
        return self.u32(at) >> 16


def _network(w: _Words, b: np.ndarray, starts: np.ndarray, lengths: np.ndarray, linktype: int):
    """Offset of the IP header and its ethertype, per record; `ok` where the link header was whole."""
    n = len(starts)
    if linktype == LINKTYPE_ETHERNET:
        ok = lengths >= 14
        s = np.where(ok, starts, 0)
        net = s + 14
        etype = np.where(ok, w.u16(s + 12), 0)
        for _ in range(2):  # up to two VLAN tags (802.1Q, QinQ)
            tagged = ok & ((etype == ETH_VLAN) | (etype == ETH_QINQ)) & (net + 4 <= starts + lengths)
            etype = np.where(tagged, w.u16(np.where(tagged, net + 2, 0)), etype)
            net = np.where(tagged, net + 4, net)
        return net, etype, ok
    if linktype == LINKTYPE_SLL:
        ok = lengths >= 16
        return starts + 16, np.where(ok, w.u16(np.where(ok, starts + 14, 0)), 0), ok
    if linktype == LINKTYPE_SLL2:
        ok = lengths >= 20
        return starts + 20, np.where(ok, w.u16(np.where(ok, starts, 0)), 0), ok
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW2, LINKTYPE_NULL):
        skip = 4 if linktype == LINKTYPE_NULL else 0
        ok = lengths > skip
        version = np.where(ok, b[np.where(ok, starts + skip, 0)] >> 4, 0)
        return starts + skip, np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0)), ok
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)


def _tcp(buf, w: _Words, b, starts, lengths, net, etype, ok, index, ts) -> SegmentTable:
    end = starts + lengths

    def at(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.where(rows, offsets, 0)  # offset 0 where the row is not used: always readable

    ip0 = w.u32(at(net, ok))  # version/IHL, TOS, total length (v4); version, class, flow (v6)
    ip8 = w.u32(at(net + 8, ok))  # TTL, protocol (v4)
    ip4 = w.u32(at(net + 4, ok))  # id, fragment (v4); payload length, next header (v6)
    v4 = ok & (etype == ETH_IPV4) & (net + 20 <= end) & (((ip8 >> 16) & 0xFF) == 6)
    v4 &= (ip4 & 0x1FFF) == 0  # a non-first fragment carries no TCP header
    ihl = ((ip0 >> 24) & 0x0F) * 4
    v6 = ok & (etype == ETH_IPV6) & (net + 40 <= end) & (((ip4 >> 8) & 0xFF) == 6)  # no extension headers in lab traffic
    thdr = np.where(v4, net + ihl, net + 40)
    ip_payload = np.where(v4, (ip0 & 0xFFFF) - ihl, ip4 >> 16)
    rows = np.nonzero((v4 | v6) & (thdr + 20 <= end))[0]
    t, n4, is4 = thdr[rows], net[rows], v4[rows]

    ports = w.u32(t)
    doff_flags_win = w.u32(t + 12)
    thl = (doff_flags_win >> 28) * 4
    flags = (doff_flags_win >> 16) & 0x3F
    addresses: list[str] = []
    ids: dict[bytes, int] = {}

    def intern(key: bytes, family: int) -> int:
        if key not in ids:
            ids[key] = len(addresses)
            addresses.append(socket.inet_ntop(family, key))
        return ids[key]

    def address_ids(offset4: int, offset6: int) -> np.ndarray:
        if is4.all():
            uniq, inverse = np.unique(w.u32(n4 + offset4), return_inverse=True)
            return np.array([intern(int(v).to_bytes(4, "big"), socket.AF_INET) for v in uniq], dtype=np.int64)[inverse]
        out = np.empty(len(rows), dtype=np.int64)  # IPv6 present: intern address by address
        for k, (start, four) in enumerate(zip(n4.tolist(), is4.tolist())):
            a = start + (offset4 if four else offset6)
            out[k] = intern(buf[a : a + (4 if four else 16)], socket.AF_INET if four else socket.AF_INET6)
        return out

    wscale = np.full(len(rows), -1, dtype=np.int64)
    mss = np.full(len(rows), -1, dtype=np.int64)
    for k in np.nonzero(flags & SYN)[0].tolist():  # options are parsed on SYNs only: few
        ws, ms = _syn_options(buf, int(t[k]) + 20, min(int(t[k] + thl[k]), int(end[rows[k]])))
        if ws is not None:
            wscale[k] = ws
        if ms is not None:
            mss[k] = ms
    return SegmentTable(
        index=index[rows], ts=ts[rows], src=address_ids(12, 8), dst=address_ids(16, 24),
        sport=ports >> 16, dport=ports & 0xFFFF, seq=w.u32(t + 4), ack=w.u32(t + 8),
        flags=flags, win=doff_flags_win & 0xFFFF,
        plen=np.maximum(0, ip_payload[rows] - thl), wscale=wscale, addresses=addresses, mss=mss,
    )


def _syn_options(data: bytes, start: int, end: int) -> tuple[Optional[int], Optional[int]]:
    """The window scale and MSS options of a SYN's option bytes (None where absent)."""
    i, ws, mss = start, None, None
    while i < end:
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        length = data[i + 1]
        if kind == 3 and length == 3 and i + 2 < end:
            ws = data[i + 2]
        if kind == 2 and length == 4 and i + 3 < end:
            mss = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            break
        i += length
    return ws, mss
