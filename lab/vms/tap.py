"""Tap devices made inside a VM set's namespace and handed to QEMU as open files.

QEMU runs in this machine's own namespace (its management port forward listens on 127.0.0.1 here)
while each VM's data NIC must sit on a bridge inside the set's namespace. A tap belongs to the
namespace it was created in, whoever holds it: so this process steps into the set's namespace
(setns, on this thread only), creates the tap by opening /dev/net/tun there, and steps back. The
tap is not persistent: it vanishes when QEMU, its last holder, exits (or is killed).

Python 3.11 has no os.setns, hence libc's through ctypes.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from contextlib import contextmanager
from typing import Iterator

from ..errors import LabError

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"cannot enter a network namespace: {os.strerror(err)}")


@contextmanager
def inside(namespace: str) -> Iterator[None]:
    """This thread in /run/netns/<namespace> for the block, and back in its own after it."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    except OSError as e:
        os.close(home)
        raise LabError(f"network namespace {namespace}: {e.strerror}") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def open_tap(namespace: str, name: str) -> int:
    """An open file of a new tap `name` in `namespace` (inheritable, for QEMU's -netdev tap,fd=)."""
    with inside(namespace):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(fd)
            raise LabError(f"cannot create tap {name} in {namespace}: {e.strerror}") from None
    os.set_inheritable(fd, True)
    return fd
