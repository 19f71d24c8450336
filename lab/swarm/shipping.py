"""A results folder carried in a container's output: how a lab placed on a Swarm node sends its
folder back through the service's logs, the one channel a manager's API gives for a container on
another node. The folder goes as a gzipped tar in base64 lines between two marker lines; the first
names its size and SHA-256, so a folder cut short on the way is refused, never half-unpacked."""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..errors import LabError

BEGIN, END = "tcplab-results-begin", "tcplab-results-end"
LINE = 76
# What a lab's folder may be (an exercise's is well under a megabyte; a student's own long capture more),
# so a folder made large on purpose fills neither the server's memory nor its disk.
MAX_BYTES = 200 * 10**6
MAX_UNPACKED = 1000 * 10**6
MAX_FILES = 10_000


def pack(folder: Path) -> Iterator[str]:
    """The lines that carry `folder`, markers included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(folder), arcname=".")
    data = buf.getvalue()
    yield f"{BEGIN} {len(data)} {hashlib.sha256(data).hexdigest()}"
    text = base64.b64encode(data).decode()
    for i in range(0, len(text), LINE):
        yield text[i:i + LINE]
    yield END


class Receiver:
    """Takes output lines one by one: ordinary lines are returned for showing, the folder's are kept."""

    def __init__(self) -> None:
        self.header: Optional[tuple[int, str]] = None
        self.body: list[str] = []
        self.complete = False
        self.length = 0

    def feed(self, line: str) -> Optional[str]:
        """The line, if it is not part of the folder; None if it was taken."""
        if line.startswith(BEGIN + " "):
            try:
                size, digest = line.split()[1:3]
                self.header, self.body, self.complete, self.length = (int(size), digest), [], False, 0
            except ValueError:
                return line  # not a header after all: shown as any line
            return None
        if self.header is not None and not self.complete:
            if line == END:
                self.complete = True
            elif self.length <= MAX_BYTES * 4 // 3 + LINE:  # past the limit the rest is dropped, and unpack refuses it
                self.body.append(line.strip())
                self.length += len(line)
            return None
        return line

    def unpack(self, into: Path) -> None:
        """The folder written into `into`; a LabError, and nothing written, for one that is missing,
        cut, damaged, too large, or holds what a results folder never does (links out of it, devices)."""
        if self.header is None or not self.complete:
            raise LabError("the lab's results folder did not come back whole through the lab's output")
        size, digest = self.header
        if size > MAX_BYTES:
            raise LabError(f"the lab's results folder is {size / 1e6:.0f} MB packed, over the {MAX_BYTES // 10**6} MB a lab's may be")
        try:
            data = base64.b64decode("".join(self.body), validate=True)
        except (binascii.Error, ValueError):
            raise LabError("the lab's results folder came back damaged (not base64)") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise LabError(f"the lab's results folder came back damaged ({len(data)} of {size} bytes, or another SHA-256)")
        if not hasattr(tarfile, "data_filter"):
            raise LabError("unpacking a results folder safely needs tarfile's data filter: Python 3.9.17, 3.10.12, 3.11.4 or later")
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = tar.getmembers()
                if sum(m.size for m in members) > MAX_UNPACKED or len(members) > MAX_FILES:
                    raise LabError(f"the lab's results folder would unpack to over {MAX_UNPACKED // 10**6} MB or {MAX_FILES} files")
                into.mkdir(parents=True, exist_ok=True)
                tar.extractall(into, members=members, filter="data")  # no absolute paths, links out of the folder, devices
        except (tarfile.TarError, OSError, EOFError) as e:
            raise LabError(f"the lab's results folder could not be unpacked: {e}") from None


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines from a stream of byte chunks cut anywhere."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line.decode(errors="replace").rstrip("\r")
    if rest:
        yield rest.decode(errors="replace")
