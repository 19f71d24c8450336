"""Stopping processes by PID, and only the ones we started: a PID is checked against its start time."""
from __future__ import annotations

import os
import signal
import time
from typing import Optional


def start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def same_process(pid: int, start: Optional[int]) -> bool:
    """Whether the process still runs (a zombie, dead and waiting for its parent, does not)."""
    if pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and (start is None or now == start) and not _zombie(pid)


def stop(pid: int, start: Optional[int], sig: int = signal.SIGTERM, grace: float = 3.0) -> bool:
    """Sends `sig`, then SIGKILL after `grace` seconds; False if the PID is no longer ours."""
    if not same_process(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not same_process(pid, start) or _zombie(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _zombie(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
