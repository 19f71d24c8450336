"""Damaged captures never crash the scanner: random bytes changed, files cut anywhere, blocks made
up. It is compiled without bounds checks, so each case runs in a child process: a crash there is a
signal, not a lost test run. Every case ends in a reading or in one LabError."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

from tests.unit.test_public_captures import CORPUS

CHILD = r'''
import sys
from pathlib import Path
from lab.analysis import capture, connections, findings
from lab.errors import LabError
for path in sys.argv[1:]:
    try:
        scan, conns = connections.gather(Path(path))
        for c in conns:
            findings.findings(c, "6.12", scan.last_ts)
    except LabError:
        pass
    print("ok", path, flush=True)
'''


def mutations(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = bytearray(data)
        kind = rng.randrange(4)
        if kind == 0:  # bytes changed here and there
            for _ in range(rng.randint(1, 20)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1:  # cut anywhere
            del b[rng.randrange(len(b)):]
        elif kind == 2:  # a run of garbage in the middle
            at = rng.randrange(len(b))
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:  # a length field blown up
            at = rng.randrange(max(1, len(b) - 4))
            b[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x0c\x00\x00\x00", b"\x80\x00\x00\x00"])
        out.append(bytes(b))
    return out


def made_up() -> list[bytes]:
    """pcapng blocks whose fields lie: a packet claiming 256 MB, a block too short for its fields, a
    time resolution no 64-bit count can hold, a packet of an interface never described."""
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 0))
    idb_bad_resol = block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB", 9, 1, 0xFF) + b"\0\0\0" + struct.pack("<HH", 0, 0))
    epb = lambda caplen, data=b"x" * 60: block(6, struct.pack("<IIIII", 0, 0, 1, caplen, caplen) + data)  # noqa: E731
    return [shb + idb + epb(0x10000000), shb + idb + block(6, b"\0" * 8), shb + idb_bad_resol + epb(60),
            shb + epb(60), shb + idb + epb(60)[:-3]]


def test_damaged_captures_end_in_a_reading_or_one_error(tmp_path):
    rng = random.Random(20261207)
    sources = [CORPUS / name for name in (
        "zeek__testing_btest_Traces_tcp_retransmit-timeout.pcapng", "zeek__testing_btest_Traces_vlan-collisions.pcap",
        "arkime__tests_pcap_tcpseq_synthetic.pcap", "zeek__testing_btest_Traces_tcp_retransmit-fast009.pcap",
        "zeek__testing_btest_Traces_redis_pubsub.pcap")]
    paths = []
    for src in sources:
        for k, data in enumerate(mutations(src.read_bytes(), rng, 120)):
            p = tmp_path / f"{src.stem}-{k}{src.suffix}"
            p.write_bytes(data)
            paths.append(str(p))
    for k, data in enumerate(made_up()):
        p = tmp_path / f"made-up-{k}.pcapng"
        p.write_bytes(data)
        paths.append(str(p))
    r = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True, timeout=600,
                       cwd=Path(__file__).resolve().parents[2])
    done = [line.split(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert r.returncode == 0 and len(done) == len(paths), (
        f"exit {r.returncode} after {len(done)} of {len(paths)}; next: {paths[len(done)] if len(done) < len(paths) else '-'}\n{r.stderr[-2000:]}")
