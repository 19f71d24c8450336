"""tracefs primitives for tracing TCP state changes: find or mount tracefs, make a private instance
with the `sock:inet_sock_set_state` event and a stacktrace trigger, read it, remove it.

Standard library only, Python 3.7 or later: the SSH backend uploads this file beside its agent, and
lab/backends/localtrace.py uses it on this machine. Every instance and mount is handed to a `record` callback
before it is made, so whoever calls can find it again after a crash.
"""
from __future__ import annotations

import os
import socket
import subprocess
from typing import Callable, List, Tuple

try:
    from ..errors import TraceError
except ImportError:  # uploaded beside the SSH agent, outside the package: errors.py is uploaded with it
    from errors import TraceError  # type: ignore[no-redef]

SYSTEM = "/sys/kernel/tracing"
EVENT = "events/sock/inet_sock_set_state"


def root(mount_point: str, record_mount: Callable[[str], None]) -> str:
    """The tracefs to use: the system's where it is mounted, else one mounted at `mount_point`."""
    if os.path.isdir(os.path.join(SYSTEM, "instances")):
        return SYSTEM
    record_mount(mount_point)
    os.makedirs(mount_point, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", mount_point], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or ["mount failed"])[0]
        raise TraceError("tracefs is not mounted and cannot be (%s): state tracing is unavailable" % reason)
    return mount_point


def start(tracefs: str, name: str, port: int, record_instance: Callable[[str], None]) -> str:
    """Makes instance `name` tracing the state changes of TCP port `port`, with their stacks; returns its path."""
    if not os.path.exists(os.path.join(tracefs, EVENT)):
        raise TraceError("this kernel has no %s tracepoint under %s: state tracing is unavailable" % (EVENT, tracefs))
    path = os.path.join(tracefs, "instances", name)
    record_instance(path)
    try:
        os.mkdir(path)
    except FileExistsError:
        raise TraceError("tracefs instance %s exists already (another run of this lab?)" % path) from None
    except OSError as e:
        raise TraceError("cannot make tracefs instance %s: %s" % (path, e.strerror)) from None
    keep = "protocol == 6 && (sport == %d || dport == %d)" % (int(port), int(port))
    # trace_clock mono is the clock time.monotonic() reads, so events can be put on the wall clock.
    # A trigger does not obey the event's filter: it needs its own, or every other socket's stack lands here.
    for setting, value in (("trace_clock", "mono"), ("buffer_size_kb", "4096")):
        write(os.path.join(path, setting), value)
    _warm_up(path)
    for setting, value in ((EVENT + "/filter", keep), (EVENT + "/trigger", "stacktrace if " + keep), (EVENT + "/enable", "1")):
        write(os.path.join(path, setting), value)
    return path


WARM_UP_PORT = 9  # discard: nothing listens, so a connect() there is two state changes and a RST


def _warm_up(path: str) -> None:
    """One traced connect() on loopback before the real filter goes in, then an empty buffer: the
    first state change the exercise makes costs what the others do. Without it, the stack unwinding
    of the first traced event runs cold, which under emulation (QEMU's TCG) delays that first SYN by
    milliseconds beyond its transition."""
    keep = "protocol == 6 && dport == %d" % WARM_UP_PORT
    for setting, value in ((EVENT + "/filter", keep), (EVENT + "/trigger", "stacktrace if " + keep), (EVENT + "/enable", "1")):
        write(os.path.join(path, setting), value)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(("127.0.0.1", WARM_UP_PORT))
    except OSError:
        pass
    s.close()
    write(os.path.join(path, EVENT, "enable"), "0")
    write(os.path.join(path, EVENT, "trigger"), "!stacktrace if " + keep)
    write(os.path.join(path, "trace"), "")  # the warm-up's events gone


def stop(path: str) -> str:
    """Stops an instance's tracing and returns its trace (events and stacks)."""
    write(os.path.join(path, EVENT, "enable"), "0")
    try:
        with open(os.path.join(path, "trace")) as f:
            return f.read()
    except OSError as e:
        raise TraceError("cannot read the state trace from %s: %s" % (path, e.strerror)) from None


def remove(instances: List[str], mounts: List[str]) -> Tuple[List[str], List[str], List[str]]:
    """Removes instances, then unmounts mounts; idempotent. Returns what was removed, and the instances
    and mounts that could not be (to try again later)."""
    removed, left, mounts_left = [], [], []
    for path in instances:
        if not os.path.isdir(path):
            continue
        for setting, value in ((EVENT + "/enable", "0"), (EVENT + "/trigger", "!stacktrace")):  # a trigger pins the instance
            try:
                write(os.path.join(path, setting), value)
            except TraceError:
                pass
        try:
            os.rmdir(path)
            removed.append("tracefs instance %s" % os.path.basename(path))
        except OSError:
            left.append(path)
    for mount in mounts:
        if subprocess.run(["mountpoint", "-q", mount]).returncode == 0:
            if subprocess.run(["umount", mount], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
                mounts_left.append(mount)
                continue
            removed.append("tracefs mount %s" % mount)
        try:
            os.rmdir(mount)
        except OSError:
            pass
    return removed, left, mounts_left


def write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise TraceError("tracefs refused %r in %s: %s" % (value, path, e.strerror)) from None
