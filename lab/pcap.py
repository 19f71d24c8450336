"""Streaming TCP segment reader for classic pcap files.

Reads record by record with struct rather than through scapy's packet objects: captures of bulk
transfers run to millions of packets, and building a scapy object per packet is about a hundred
times slower than this.
"""
from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, Optional

from .errors import LabError

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


def read_segments(path: Path) -> Iterator[Segment]:
    """Every TCP segment in the capture, in file order; other packets are skipped."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise LabError(f"{path}: cannot open capture: {e.strerror}") from None
    with fh:
        yield from _read(fh, path)


def _read(fh: BinaryIO, path: Path) -> Iterator[Segment]:
    header = fh.read(24)
    if len(header) < 24:
        raise LabError(f"{path}: not a pcap file (too short); was the capture stopped before it started?")
    if header[:4] == b"\x0a\x0d\x0d\x0a":
        raise LabError(f"{path}: pcapng is not supported; convert with `editcap -F pcap {path} out.pcap`")
    if header[:4] not in MAGIC:
        raise LabError(f"{path}: not a pcap file (unknown magic {header[:4].hex()})")
    endian, tick = MAGIC[header[:4]]
    linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    index = 0
    while True:
        rh = fh.read(16)
        if len(rh) < 16:
            return  # a capture killed mid-write ends with a partial record; what came before is good
        sec, frac, incl, _orig = record.unpack(rh)
        data = fh.read(incl)
        if len(data) < incl:
            return
        index += 1
        off = _network_offset(data, linktype)
        if off is None:
            continue
        seg = _parse_ip_tcp(data, off[0], off[1], index, sec + frac * tick)
        if seg is not None:
            yield seg


def _network_offset(data: bytes, linktype: int) -> Optional[tuple[int, int]]:
    """(offset of the IP header, ethertype) for the link types tcpdump writes on Linux."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        off, etype = 14, int.from_bytes(data[12:14], "big")
        while etype in (ETH_VLAN, ETH_QINQ) and len(data) >= off + 4:
            etype = int.from_bytes(data[off + 2 : off + 4], "big")
            off += 4
        return off, etype
    if linktype == LINKTYPE_SLL:
        return (16, int.from_bytes(data[14:16], "big")) if len(data) >= 16 else None
    if linktype == LINKTYPE_SLL2:
        return (20, int.from_bytes(data[0:2], "big")) if len(data) >= 20 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW2):
        if not data:
            return None
        return 0, ETH_IPV4 if data[0] >> 4 == 4 else ETH_IPV6
    if linktype == LINKTYPE_NULL:
        return (4, ETH_IPV4 if data[0] == 2 or data[3] == 2 else ETH_IPV6) if len(data) >= 4 else None
    return None


def _parse_ip_tcp(data: bytes, off: int, etype: int, index: int, ts: float) -> Optional[Segment]:
    if etype == ETH_IPV4:
        if len(data) < off + 20 or data[off + 9] != 6:
            return None
        ihl = (data[off] & 0x0F) * 4
        if int.from_bytes(data[off + 6 : off + 8], "big") & 0x1FFF:
            return None  # a non-first fragment carries no TCP header
        total = int.from_bytes(data[off + 2 : off + 4], "big")
        src = socket.inet_ntop(socket.AF_INET, data[off + 12 : off + 16])
        dst = socket.inet_ntop(socket.AF_INET, data[off + 16 : off + 20])
        t = off + ihl
        ip_payload = total - ihl
    elif etype == ETH_IPV6:
        if len(data) < off + 40 or data[off + 6] != 6:
            return None  # extension headers are not followed; lab traffic has none
        ip_payload = int.from_bytes(data[off + 4 : off + 6], "big")
        src = socket.inet_ntop(socket.AF_INET6, data[off + 8 : off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, data[off + 24 : off + 40])
        t = off + 40
    else:
        return None
    if len(data) < t + 20:
        return None
    sport, dport, seq, ack, doff_flags, win = struct.unpack_from("!HHIIHH", data, t)
    thl = (doff_flags >> 12) * 4
    flags = doff_flags & 0x3F
    wscale = _window_scale(data, t + 20, t + thl) if flags & SYN else None
    return Segment(index, ts, src, sport, dst, dport, seq, ack, flags, win, max(0, ip_payload - thl), wscale)


def _window_scale(data: bytes, start: int, end: int) -> Optional[int]:
    i, end = start, min(end, len(data))
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
            return data[i + 2]
        if length < 2:
            break
        i += length
    return None
