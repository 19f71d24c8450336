"""Bringing a VM set down from its record alone: its QEMU processes (by recorded PID, each checked
to be this set's VM before it is signalled), its namespace (with the bridges; the taps went with
QEMU), and its folder. Safe to run twice, and after `vms up` was killed at any point."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Optional

from .. import ui
from ..onhost import procs
from .vmset import SetRecord, qemu_name

STOP_GRACE = 5.0


def pid_alive(pid: Optional[int], qname: str) -> bool:
    """Whether `pid` is running and is the QEMU named `qname` (not a reused PID, not a zombie)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(a.split(b",")[0] == qname.encode() for a in argv)


def being_booted(record: SetRecord) -> bool:
    """The set is being booted by a `vms up` that still runs (its PID, started when it was)."""
    return record.state == "booting" and record.owner_started is not None and procs.same_process(record.owner_pid, record.owner_started)


def _pids(record: SetRecord) -> dict[str, int]:
    """Each VM's PID: the record's, or QEMU's pidfile (written by QEMU itself, so it is there even if
    `up` was killed before recording the PID)."""
    found = {}
    for role in ("source", "dest", "observer"):
        candidates = []
        vm = record.vms.get(role)
        if vm and vm.pid:
            candidates.append(vm.pid)
        try:
            candidates.append(int(record.path(f"{role}.pid").read_text().strip()))
        except (OSError, ValueError):
            pass
        for pid in candidates:
            if pid_alive(pid, qemu_name(record.name, role)):
                found[role] = pid
                break
    return found


def alive(record: SetRecord) -> bool:
    """Every VM of the set is running."""
    return set(_pids(record)) == set(record.roles)


def down(record: SetRecord, quiet: bool = False) -> list[str]:
    """Removes the set; returns what was removed."""
    removed = []
    pids = _pids(record)
    for role, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)  # QEMU exits at once on SIGTERM
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    for role, pid in pids.items():
        while pid_alive(pid, qemu_name(record.name, role)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid, qemu_name(record.name, role)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended from the SIGTERM just now
            killed = time.monotonic() + STOP_GRACE
            while pid_alive(pid, qemu_name(record.name, role)) and time.monotonic() < killed:
                time.sleep(0.05)
            if pid_alive(pid, qemu_name(record.name, role)):
                ui.warn(f"QEMU PID {pid} (VM {role}) does not end even on SIGKILL (stuck in the kernel?); "
                        f"the rest of the set is removed")
        _reap(pid)
        removed.append(f"VM {role} (QEMU PID {pid})")
    if os.path.exists(f"/run/netns/{record.namespace}"):
        r = subprocess.run(["ip", "netns", "del", record.namespace], capture_output=True, text=True)
        if r.returncode == 0:
            removed.append(f"namespace {record.namespace}")
        else:
            ui.warn(f"cannot remove namespace {record.namespace}: {r.stderr.strip()}")
    if record.folder.exists():
        shutil.rmtree(record.folder)
        removed.append(f"folder {record.folder}")
    if not quiet:
        for what in removed:
            ui.step(f"removed {what}")
    return removed


def _reap(pid: int) -> None:
    """A QEMU this very process started is its child: collected, so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
