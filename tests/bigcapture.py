"""Large captures made fast, for the analyzer's memory and speed: one bulk connection of `packets`
segments (two full data segments from the client, then the server's ACK of both, over and over),
headers only as `tcpdump -s 54` keeps them, written with numpy a million packets at a time."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.pcapbuild import MACS

MSS = 1448
SNAP = 54  # Ethernet, IPv4 and TCP headers without options
CHUNK = 999_999  # packets written at a time (a multiple of 3: data, data, ACK)


def _header(src: str, dst: str, sport: int, dport: int, plen: int) -> bytes:
    pkt = Ether(**MACS) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A", window=65535)
    raw = bytearray(bytes(pkt))
    struct.pack_into(">H", raw, 16, 40 + plen)  # the IP total length: the payload the snaplen cut
    return bytes(raw[:SNAP])


def bulk(path: Path, packets: int) -> Path:
    """Writes the capture; its frames' times are 10 microseconds apart."""
    data = _header("10.0.1.1", "10.0.1.2", 40000, 5001, MSS)
    ack = _header("10.0.1.2", "10.0.1.1", 5001, 40000, 0)
    record = np.zeros((3, 16 + SNAP), dtype=np.uint8)
    for i, head in enumerate((data, data, ack)):
        orig = len(head) + (MSS if head is data else 0)
        record[i, :16] = np.frombuffer(struct.pack("<IIII", 0, 0, SNAP, orig), dtype=np.uint8)
        record[i, 16:] = np.frombuffer(head, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAP, 1))
        done = 0
        while done < packets:
            n = min(CHUNK, packets - done)
            k = np.arange(done, done + n, dtype=np.int64)
            rows = record[k % 3].copy()
            usec = k * 10
            rows[:, 0:4] = (1_000_000 + usec // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
            rows[:, 4:8] = (usec % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
            pair = k // 3  # data segments 2*pair and 2*pair+1, acknowledged together
            sent = (1 + MSS * (2 * pair + (k % 3 == 1))) % 2**32
            acked = (1 + MSS * (2 * pair + 2)) % 2**32
            is_data = (k % 3) != 2
            seq = np.where(is_data, sent, 1).astype(">u4").view(np.uint8).reshape(-1, 4)
            ackno = np.where(is_data, 1, acked).astype(">u4").view(np.uint8).reshape(-1, 4)
            rows[:, 16 + 38:16 + 42] = seq  # TCP sequence number (Ethernet 14 + IP 20 + 4)
            rows[:, 16 + 42:16 + 46] = ackno
            f.write(rows.tobytes())
            done += n
    return path
