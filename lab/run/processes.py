"""Stopping a run's processes (every one signalled at once, then SIGKILL for what outlives the grace
period), and waiting on them without sleeping longer than the wait needs."""
from __future__ import annotations

import signal
import time
from typing import Callable, Sequence

from ..backends.base import Process

# Polls start at 1 ms and double to 20 ms: most waits (a program's first event, tcpdump listening, an
# exit after SIGTERM) end within milliseconds, and every run waits on a dozen of them.
FIRST_POLL, LAST_POLL = 0.001, 0.02


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """True once done() holds, False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    pause = FIRST_POLL
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, LAST_POLL)
    return True


def stop(processes: Sequence[Process], sig: int, grace: float) -> None:
    """Signals every running process at once, waits up to `grace` seconds for all, then SIGKILLs the rest."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.signal(sig)
    wait_until(lambda: all(p.poll() is not None for p in running), grace)
    for p in running:
        if p.poll() is None:
            p.signal(signal.SIGKILL)
