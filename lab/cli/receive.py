"""`invoke receive DIR`: a results folder unpacked from a lab's output read on standard input, as a
lab placed elsewhere sends it (`docker service logs --raw SERVICE | invoke receive DIR`, or
`kubectl logs job/NAME | invoke receive DIR`); the other lines pass through to standard output."""
from __future__ import annotations

import sys
from pathlib import Path

from ..results import folder as results
from ..swarm import shipping
from . import EXIT_OK


def receive(into: str) -> int:
    folder = results.create(Path(into))
    receiver = shipping.Receiver()
    for line in shipping.lines(iter(lambda: sys.stdin.buffer.read1(1 << 16), b"")):
        shown = receiver.feed(line)
        if shown is not None:
            print(shown)
    try:
        receiver.unpack(folder)
    except BaseException:
        results.remove_if_empty(folder)
        raise
    print(f"results: {folder}")
    return EXIT_OK
