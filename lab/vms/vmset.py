"""A VM set's folder and record, and the files that let the SSH backend (and a person) reach it.

    /var/lib/tcplab/vms/<name>/
      set.json         the record: kernel, accelerator, namespace, each VM's QEMU PID and SSH port
      id_ed25519       the set's own user key (root on every VM accepts it, nothing else does)
      known_hosts      each VM's host key, made fresh for this set
      ssh_config       `ssh -F ssh_config source` logs in
      inventory.yml    for `invoke up --backend ssh --inventory ...`
      <role>.qcow2, <role>-seed.img, <role>.console.log, <role>.qemu.log, <role>.pid

Everything a set makes on this machine is in that folder, its namespace (tcplabvm-<name>, which
holds its bridges and taps) and its QEMU processes; `down` removes all three from the record alone.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import yaml

from ..errors import LabError

ROOT = Path("/var/lib/tcplab/vms")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,11}$")
NAMESPACE_PREFIX = "tcplabvm-"  # not "tcplab-": a lab's namespaces are tcplab-<lab>-<node>
ROLES_BY_COUNT = {2: ("source", "dest"), 3: ("source", "dest", "observer")}
DATA_ADDRESSES = {"source": "192.168.56.11", "dest": "192.168.56.12"}
DATA_PREFIX = 24
# QEMU's user-mode network, which carries SSH only: the guest's address in it is QEMU's default.
MGMT_ADDRESS = "10.0.2.15"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(f"--name {name!r}: use 1-12 lower-case letters, digits or '_', starting with a letter or digit (for example --name vms2)")
    return name


def namespace(name: str) -> str:
    return f"{NAMESPACE_PREFIX}{name}"


def qemu_name(name: str, role: str) -> str:
    """QEMU's -name, which `down` checks in a PID's command line before it signals it."""
    return f"tcplab-vm-{name}-{role}"


def ssh_alias(name: str, role: str) -> str:
    return f"{name}-{role}"


@dataclass
class VmRecord:
    role: str
    port: int
    address: Optional[str]  # data plane; the observer has none (it bridges)
    interface: str  # data-plane interface inside the VM
    pid: Optional[int] = None
    macs: list[str] = field(default_factory=list)


@dataclass
class SetRecord:
    name: str
    kernel: str
    count: int
    accel: str = ""
    accel_why: str = ""
    kernel_release: str = ""
    image: str = ""
    state: str = "booting"  # booting, up
    created: float = 0.0
    boot_seconds: Optional[float] = None
    owner_pid: int = 0  # the `vms up` booting it, and its start time (so a reused PID is not it)
    owner_started: Optional[int] = None
    vms: dict[str, VmRecord] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    @property
    def namespace(self) -> str:
        return namespace(self.name)

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES_BY_COUNT[self.count]

    def path(self, filename: str) -> Path:
        return self.folder / filename

    def save(self) -> None:
        tmp = self.path("set.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(self.path("set.json"))

    # --- what the SSH backend and people use -------------------------------------------------------

    def write_access(self, host_keys: dict[str, str]) -> Path:
        """known_hosts, ssh_config and inventory.yml; returns the inventory's path."""
        key = self.path("id_ed25519")
        self.path("known_hosts").write_text("".join(f"[127.0.0.1]:{self.vms[r].port} {host_keys[r]}\n" for r in self.roles))
        self.path("ssh_config").write_text("".join(
            f"Host {ssh_alias(self.name, r)} {r}\n  HostName 127.0.0.1\n  Port {self.vms[r].port}\n  User root\n"
            f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {self.path('known_hosts')}\n"
            f"  StrictHostKeyChecking yes\n\n" for r in self.roles))
        machines = {}
        for r in self.roles:
            vm = self.vms[r]
            entry = {"host": ssh_alias(self.name, r)}
            if vm.address:
                entry["address"] = vm.address
            else:
                entry["interface"] = vm.interface
            machines[r] = entry
        inventory = {"ssh_config": "ssh_config", "known_hosts": "known_hosts", "defaults": {"user": "root", "sudo": False}, "machines": machines}
        header = (f"# VM set {self.name}: {self.count} Debian {self.kernel} VMs (kernel {self.kernel_release}), made by `invoke vms up`.\n"
                  f"# invoke up EXERCISE --backend ssh --inventory {self.path('inventory.yml')}\n")
        self.path("inventory.yml").write_text(header + yaml.safe_dump(inventory, sort_keys=False))
        return self.path("inventory.yml")


def load(name: str) -> Optional[SetRecord]:
    """The set's record, or None when it has no folder; a folder whose record cannot be read still
    gives a record (name only), so `down` removes it."""
    folder = ROOT / name
    if not folder.is_dir():
        return None
    try:
        data = json.loads((folder / "set.json").read_text())
        vms = {role: VmRecord(**vm) for role, vm in data.pop("vms", {}).items()}
        return SetRecord(**data, vms=vms)
    except PermissionError:
        raise LabError(f"{folder}: permission denied: VM sets are root's, run this with sudo") from None
    except (OSError, ValueError, TypeError, AttributeError):
        return SetRecord(name=name, kernel="?", count=2, state="unreadable")


@contextlib.contextmanager
def records_locked() -> Iterator[None]:
    """Sets claimed and removed by one `invoke vms` at a time: a flock on the folder of sets itself (no
    lock file to leave behind), held for the moment it takes to check a record and make or remove one."""
    ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with the descriptor, also when the process is killed


def names() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir()) if ROOT.is_dir() else []
