"""Stopping a run's processes: every one signalled at once, then SIGKILL for what outlives the grace period."""
from __future__ import annotations

import signal
import time
from typing import Sequence

from ..backends.base import Process

POLL = 0.02


def stop(processes: Sequence[Process], sig: int, grace: float) -> None:
    """Signals every running process at once, waits up to `grace` seconds for all, then SIGKILLs the rest."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.signal(sig)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in running) and time.monotonic() < deadline:
        time.sleep(POLL)
    for p in running:
        if p.poll() is None:
            p.signal(signal.SIGKILL)
