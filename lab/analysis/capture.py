"""Reading a capture file as a stream: classic pcap or pcapng, gzipped or not, block by block into the
compiled scanner (lab/analysis/tcpscan.pyx), so that memory stays flat however large the file is.

`scan()` yields the scanner's rows as they fill; what the file held that was not TCP is counted in the
Scan it returns, with the reason.
"""
from __future__ import annotations

import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import LabError

try:
    from . import tcpscan
except ImportError:  # a checkout whose compiled scanner was never built
    raise LabError("the capture scanner (lab/analysis/tcpscan.pyx) is not built: run ./bootstrap, "
                   "or `.venv/bin/pip install -e .`") from None

WS_FLAGS: list[str] = tcpscan.WS_FLAGS  # Wireshark's TCP analysis flags, bit i of a row's `ws` for WS_FLAGS[i]
format_frames = tcpscan.format_frames  # (frame numbers, flags) -> b"frame\tflag,flag\n" lines
BLOCK = 8 << 20  # bytes read at a time: large enough that the per-block work is nothing, small enough to stay flat
ROWS = 1 << 16  # rows the scanner fills before handing them over
GZIP_MAGIC = b"\x1f\x8b"


class CaptureError(LabError):
    """A file that cannot be read as a capture: the message names the file and says why, in one line."""


@dataclass
class Scan:
    """What one pass over a file found besides the rows: counts, skips, the connections' endpoints."""

    path: Path
    scanner: "tcpscan.Scanner" = field(repr=False)

    @property
    def frames(self) -> int:
        return self.scanner.frames

    @property
    def cut_short(self) -> bool:
        return self.scanner.cut_short

    @property
    def links(self) -> set[int]:
        """The link types (LINKTYPE_*) of the file's interfaces."""
        return set(self.scanner.links)

    @property
    def last_ts(self) -> float:
        """The last frame's time: where the capture ends."""
        return self.scanner.last_ts

    @property
    def damaged(self) -> Optional[str]:
        """Why reading stopped before the end of the file (the frames before were read), or None."""
        return self.scanner.damaged

    def skipped(self) -> dict[str, int]:
        """Frames that gave no TCP segment, by reason."""
        return {tcpscan.SKIP_REASONS.get(k, str(k)): v for k, v in sorted(self.scanner.skipped.items())}

    def endpoints(self, conv: int) -> tuple[tuple[str, int], tuple[str, int]]:
        """A connection's (client, server) as (address, port)."""
        family, caddr, cport, saddr, sport = self.scanner.endpoints[conv]
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        return (socket.inet_ntop(af, caddr), cport), (socket.inet_ntop(af, saddr), sport)

    def summary(self, conv: int) -> dict:
        return self.scanner.summary(conv)

    @property
    def connections(self) -> int:
        return self.scanner.connections


class _Gunzip:
    """A gzip stream read as far as it goes: a file cut mid-stream (a capture copied while it was being
    written, compressed on the fly) gives everything before the cut, and says where it broke. gzip's
    own reader raises and drops what it had decompressed of the last read. Members one after another
    (`cat a.gz b.gz`) read as one stream, as gunzip does."""

    def __init__(self, raw):
        self.raw = raw
        self.z = zlib.decompressobj(31)
        self.buffer = b""
        self.broken: Optional[str] = None
        self.done = False

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n and not self.done:
            chunk = self.raw.read(1 << 20)
            try:
                if not chunk:
                    self.done = True
                    if not self.z.eof:
                        self.broken = "the compressed stream ends before its end marker"
                    self.buffer += self.z.flush()
                    break
                self.buffer += self.z.decompress(chunk)
                while self.z.eof and self.z.unused_data:  # another member follows
                    rest = self.z.unused_data
                    self.z = zlib.decompressobj(31)
                    self.buffer += self.z.decompress(rest)
            except zlib.error as e:
                self.broken, self.done = f"the compressed stream is damaged ({e})", True
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def close(self) -> None:
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_capture(path: Path):
    """The file's bytes, decompressed where it is gzipped; `.broken` (on a gzip reader) says why it
    ended early. A file that cannot be opened is a CaptureError."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CaptureError(f"{path}: cannot open: {e.strerror}") from None
    head = f.read(2)
    f.seek(0)
    return _Gunzip(f) if head == GZIP_MAGIC else f


def scan(path: Path, keep_all: bool = True, frame_flags: bool = False,
         on_rows: Optional[Callable[[dict], None]] = None,
         on_frames: Optional[Callable[[np.ndarray, np.ndarray], None]] = None,
         progress: Optional[Callable[[int], None]] = None) -> Scan:
    """One pass over the file: each batch of rows to on_rows (every segment with keep_all, else the
    flagged ones), each batch of (frame numbers, Wireshark flags) to on_frames with frame_flags."""
    path = Path(path)
    scanner = tcpscan.Scanner(ROWS, keep_all, frame_flags)
    pending = b""
    if path.is_dir():
        raise CaptureError(f"{path}: a folder, not a capture file")
    with open_capture(path) as f:
        eof = False
        while not eof:
            try:
                block = f.read(BLOCK)
            except OSError as e:
                raise CaptureError(f"{path}: cannot read: {e.strerror}") from None
            eof = not block
            if eof and getattr(f, "broken", None) and not scanner.damaged:
                scanner.damaged = f.broken
            data = pending + block if pending else block
            used = 0
            while True:
                try:
                    used += scanner.feed(memoryview(data)[used:], eof)
                except ValueError as e:  # not a capture at all
                    raise CaptureError(f"{path}: {e}") from None
                full = scanner.rows >= ROWS or scanner.frame_rows >= ROWS
                if scanner.rows and (full or eof or scanner.damaged or used >= len(data)):
                    rows = scanner.take()
                    if on_rows:
                        on_rows(rows)
                if scanner.frame_rows and (full or eof or scanner.damaged or used >= len(data)):
                    frames = scanner.take_frames()
                    if on_frames:
                        on_frames(*frames)
                if not full or scanner.damaged:
                    break
            if scanner.damaged:
                break
            pending = bytes(memoryview(data)[used:])
            if progress:
                progress(scanner.offset)
    if scanner.damaged and scanner.frames == 0:
        raise CaptureError(f"{path}: {scanner.damaged}: the file is damaged before its first packet")
    if scanner.offset == 0:
        raise CaptureError(f"{path}: empty: not a capture file")
    return Scan(path, scanner)
