"""Reading pcapng, the format Wireshark and `tshark -w` write (a student's capture often is one): where
each packet's bytes start in the file, how many were captured, when, and on which link type.

lab/analysis/pcap.py then gathers the headers exactly as it does for classic pcap. The blocks are
walked one by one in Python (about a microsecond each): a capture a person takes by hand runs to
thousands of packets, not the millions of the bulk captures tcpdump writes as classic pcap.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import LabError

MAGIC = b"\x0a\x0d\x0d\x0a"
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}  # the section header's byte-order magic, as read
OPT_TSRESOL, OPT_TSOFFSET = 9, 14


def records(path: Path, buf: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start offset, captured length, timestamp in seconds, link type) of every packet, in file order.
    A block cut short ends the file, as a capture stopped mid-write does."""
    starts: list[int] = []
    lengths: list[int] = []
    stamps: list[float] = []
    links: list[int] = []
    interfaces: list[tuple[int, int, int, int]] = []  # (link type, snaplen, ticks per second, offset in seconds)
    endian = ">"
    off, end = 0, len(buf)
    while off + 12 <= end:
        if buf[off:off + 4] == MAGIC:
            order = buf[off + 8:off + 12]
            if order not in BYTE_ORDER:
                raise LabError(f"{path}: a pcapng section at byte {off} has an unknown byte order; is the file damaged?")
            endian = BYTE_ORDER[order]
            interfaces = []  # interface ids count from 0 again in each section
        kind, length = struct.unpack_from(endian + "II", buf, off)
        if length < 12 or length % 4 or off + length > end:
            break
        body = off + 8
        if kind == IDB:
            link, _, snaplen = struct.unpack_from(endian + "HHI", buf, body)
            per_second, shift = _options(buf, endian, body + 8, off + length - 4)
            interfaces.append((link, snaplen, per_second, shift))
        elif kind == EPB or kind == PB:
            if kind == EPB:
                iface, hi, lo, caplen = struct.unpack_from(endian + "IIII", buf, body)
            else:
                iface, _, hi, lo, caplen = struct.unpack_from(endian + "HHIII", buf, body)
            if iface >= len(interfaces):
                raise LabError(f"{path}: a packet at byte {off} names interface {iface}, which no interface block describes")
            link, _, per_second, shift = interfaces[iface]
            ticks = (hi << 32) | lo
            starts.append(body + 20)
            lengths.append(min(caplen, length - 32))
            # Whole seconds and the fraction apart, so the float keeps the microseconds of an epoch time.
            stamps.append(ticks // per_second + shift + (ticks % per_second) / per_second)
            links.append(link)
        elif kind == SPB:
            if not interfaces:
                raise LabError(f"{path}: a simple packet at byte {off} comes before any interface block")
            link, snaplen, _, _ = interfaces[0]
            (orig,) = struct.unpack_from(endian + "I", buf, body)
            starts.append(body + 4)
            lengths.append(min(orig, snaplen or orig, length - 16))
            stamps.append(stamps[-1] if stamps else 0.0)  # a simple packet carries no time: it takes the last one's
            links.append(link)
        off += length
    as_int = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    return as_int(starts), as_int(lengths), np.array(stamps, dtype=np.float64), as_int(links)


def _options(buf: bytes, endian: str, off: int, end: int) -> tuple[int, int]:
    """An interface's timestamp ticks per second (if_tsresol; microseconds by default) and its offset in seconds (if_tsoffset)."""
    per_second, shift = 10 ** 6, 0
    while off + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, off)
        if code == 0:
            break
        value = buf[off + 4:off + 4 + length]
        if code == OPT_TSRESOL and length >= 1:
            per_second = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
        elif code == OPT_TSOFFSET and length >= 8:
            (shift,) = struct.unpack(endian + "q", value[:8])
        off += 4 + length + (-length % 4)
    return per_second, shift
