"""A results folder carried in a container's output: how a lab placed on a Swarm node sends its
folder back through the service's logs, the one channel a manager's API gives for a container on
another node. The folder goes as a gzipped tar in base64 lines between two marker lines; the first
names its size and SHA-256, so a folder cut short on the way is refused, never half-unpacked."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..errors import LabError

BEGIN, END = "tcplab-results-begin", "tcplab-results-end"
LINE = 76


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

    def feed(self, line: str) -> Optional[str]:
        """The line, if it is not part of the folder; None if it was taken."""
        if line.startswith(BEGIN + " "):
            size, digest = line.split()[1:3]
            self.header, self.body, self.complete = (int(size), digest), [], False
            return None
        if self.header is not None and not self.complete:
            if line == END:
                self.complete = True
            else:
                self.body.append(line.strip())
            return None
        return line

    def unpack(self, into: Path) -> None:
        if self.header is None or not self.complete:
            raise LabError("the lab's results folder did not come back whole through the service's logs")
        data = base64.b64decode("".join(self.body))
        size, digest = self.header
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise LabError(f"the lab's results folder came back damaged ({len(data)} of {size} bytes, or another SHA-256)")
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(into, filter="data")  # no absolute paths, links out of the folder, devices


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
