"""What a VM image is made of. An image is cached under the hash of its recipe and of images/vm/,
so an edit to either makes the next `invoke vms up` build it again."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LabError

VM_DIR = Path(__file__).resolve().parents[2] / "images" / "vm"
# What the SSH backend and the exercises use on a machine (lab/backends/ssh/preflight.py), a kernel
# and an init to boot it, sshd to reach it.
PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "kmod", "openssh-server", "python3",
    "tcpdump", "iptables", "iproute2", "nftables", "procps", "ethtool",
)
# Bumped when the way an image is put together (lab/vms/image.py) changes.
BUILD_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    kernel: str  # what --kernel names: the Debian release whose kernel the VMs run
    suite: str
    packages: tuple[str, ...] = PACKAGES
    disk_mb: int = 2048

    def key(self) -> str:
        h = hashlib.sha256(json.dumps({**asdict(self), "build": BUILD_VERSION}, sort_keys=True).encode())
        for path in sorted(p for p in VM_DIR.rglob("*") if p.is_file() or p.is_symlink()):
            h.update(str(path.relative_to(VM_DIR)).encode() + b"\0")
            h.update((path.read_bytes() if not path.is_symlink() else str(path.readlink()).encode()) + b"\0")
            h.update(oct(path.lstat().st_mode).encode())
        return h.hexdigest()[:12]


# Debian releases whose kernels a VM set can run: bookworm 6.1, trixie 6.12.
RECIPES = {name: Recipe(kernel=name, suite=name) for name in ("bookworm", "trixie")}


def recipe(kernel: str) -> Recipe:
    if kernel not in RECIPES:
        raise LabError(f"--kernel {kernel!r}: VM kernels are {', '.join(RECIPES)} (Debian's releases)")
    return RECIPES[kernel]
