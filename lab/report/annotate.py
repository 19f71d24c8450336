"""A capture written again as pcapng with tcplab's reading on its packets: each finding, and each
check's verdict, as a packet comment (opt_comment) on the frames it rests on. Wireshark shows them in
the packet list (the "Packet comments" column, `frame.comment`) and in Expert Information, so a
student opens one file and sees the verdict on the packets.

Classic pcap and pcapng, gzipped or not, are copied record by record, streaming: every packet keeps its
bytes, time and interface; the comments are added, nothing else changes.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Iterator

from ..analysis.capture import open_capture
from ..errors import LabError

MAGIC_NG = b"\x0a\x0d\x0d\x0a"
PCAP_MAGIC = {  # byte order, digits of the fraction, bytes a record header has past 16 (modified pcap: 8)
    b"\xd4\xc3\xb2\xa1": ("<", 6, 0), b"\xa1\xb2\xc3\xd4": (">", 6, 0),
    b"\x4d\x3c\xb2\xa1": ("<", 9, 0), b"\xa1\xb2\x3c\x4d": (">", 9, 0),
    b"\x34\xcd\xb2\xa1": ("<", 6, 8), b"\xa1\xb2\xcd\x34": (">", 6, 8),
}
OPT_END, OPT_COMMENT, IF_TSRESOL = 0, 1, 9
SHB, IDB, EPB = 0x0A0D0D0A, 1, 6
CHUNK = 1 << 20


def annotate(src: Path, out: Path, comments: dict[int, list[str]]) -> int:
    """Writes `out` (pcapng) from `src` with comments[frame] on each frame (1-based); returns how many
    frames got a comment."""
    with open_capture(src) as f, open(out, "wb") as w:
        head = f.read(4)
        if head == MAGIC_NG:
            return _from_pcapng(f, head, w, comments)
        if head in PCAP_MAGIC:
            return _from_pcap(f, head, w, comments)
    raise LabError(f"{src}: not a pcap or pcapng file: nothing to annotate")


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", kind, n) + body + struct.pack("<I", n)


def _comment_options(texts: list[str]) -> bytes:
    return b"".join(_option(OPT_COMMENT, t.encode()) for t in texts) + _option(OPT_END, b"")


def _from_pcap(f: BinaryIO, magic: bytes, w: BinaryIO, comments: dict[int, list[str]]) -> int:
    endian, digits, extra = PCAP_MAGIC[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise LabError("the pcap header is cut short: nothing to annotate")
    snaplen, link = struct.unpack(endian + "II", rest[12:20])
    w.write(_block(SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
    w.write(_block(IDB, struct.pack("<HHI", link & 0xFFFF, 0, snaplen) + _option(IF_TSRESOL, bytes([digits])) + _option(OPT_END, b"")))
    per = 10 ** digits
    done = 0
    for frame, (sec, frac, incl, orig, data) in enumerate(_pcap_records(f, endian, extra), start=1):
        ticks = sec * per + frac
        body = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, incl, orig) + data + b"\0" * (-incl % 4)
        texts = comments.get(frame)
        if texts:
            body += _comment_options(texts)
            done += 1
        w.write(_block(EPB, body))
    return done


def _pcap_records(f: BinaryIO, endian: str, extra: int = 0) -> Iterator[tuple[int, int, int, int, bytes]]:
    head = struct.Struct(endian + "IIII")
    while True:
        h = f.read(16 + extra)
        if len(h) < 16 + extra:
            return
        sec, frac, incl, orig = head.unpack(h[:16])
        data = f.read(incl)
        if len(data) < incl:
            return  # cut short: the record the capture was writing when it stopped
        yield sec, frac, incl, orig, data


def _from_pcapng(f: BinaryIO, first: bytes, w: BinaryIO, comments: dict[int, list[str]]) -> int:
    """Blocks copied as they are; an enhanced packet block of a commented frame gets the comments added
    to its options (in the section's byte order)."""
    frame = done = 0
    endian = "<"
    pending = first
    while True:
        h = pending + f.read(8 - len(pending))
        pending = b""
        if len(h) < 8:
            return done
        if h[:4] == MAGIC_NG:
            order = f.read(4)
            endian = "<" if order == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(endian + "I", h[4:8])[0]
            body = order + f.read(length - 12)
        else:
            kind, length = struct.unpack(endian + "II", h)
            body = f.read(length - 8)
        if len(body) < length - 8 and h[:4] != MAGIC_NG:
            return done
        kind = struct.unpack(endian + "I", h[:4])[0]
        if kind in (EPB, 2, 3):
            frame += 1
        texts = comments.get(frame) if kind == EPB else None
        if not texts:
            w.write(h + body)
            continue
        caplen = struct.unpack(endian + "I", body[12:16])[0]
        fixed = 20 + caplen + (-caplen % 4)
        options = body[fixed:-4]
        # the existing options up to their end marker, then ours, then the end marker
        kept, off = b"", 0
        while off + 4 <= len(options):
            code, n = struct.unpack(endian + "HH", options[off:off + 4])
            if code == OPT_END:
                break
            kept += options[off:off + 4 + n + (-n % 4)]
            off += 4 + n + (-n % 4)
        ours = b"".join(struct.pack(endian + "HH", OPT_COMMENT, len(t.encode())) + t.encode() + b"\0" * (-len(t.encode()) % 4)
                        for t in texts) + struct.pack(endian + "HH", OPT_END, 0)
        new_body = body[:fixed] + kept + ours
        total = len(new_body) + 12
        w.write(struct.pack(endian + "II", EPB, total) + new_body + struct.pack(endian + "I", total))
        done += 1


ANNOTATED = "{capture}-annotated.pcapng"


def annotate_folder(ctx, results: list[dict]) -> list[str]:
    """A results folder's captures the checks judged, each written again beside it as
    <capture>-annotated.pcapng: the findings `invoke analyze` gives on it, and every check's verdict on
    the frames that check judged. Returns the files written (the folder's view is a Context)."""
    from ..analysis import connections, findings  # the analysis of the capture, again: what the verdict rests on

    written = []
    judged: dict[str, dict[int, list[str]]] = {}
    for r in results:
        for capture, frames in (r.get("frames") or {}).items():
            verdict = "passed" if r["passed"] else "FAILED"
            text = f"tcplab check {r['name']} {verdict}: observed {r['observed']}; expected {r['expected']}"
            for frame in frames:
                judged.setdefault(capture, {}).setdefault(frame, []).append(text)
    for capture, verdicts in sorted(judged.items()):
        path = ctx.capture_file(capture)
        scan, conns = connections.gather(path)
        comments: dict[int, list[str]] = {}
        hz = ctx.hz
        release = ctx.kernel_release or "host"
        for conn in conns:
            for f in findings.findings(conn, release, scan.last_ts, hz):
                for frame, text in f.comments.items():
                    comments.setdefault(frame, []).append(f"tcplab: {text}")
        for frame, texts in verdicts.items():
            comments.setdefault(frame, []).extend(texts)
        out = ctx.folder / ANNOTATED.format(capture=path.stem)
        annotate(path, out, comments)
        written.append(out.name)
    return written
