"""Stand-in VMs for the SSH backend's tests: containers running a real sshd, built by the project's own
Docker backend from images/ssh-vm, with fresh host keys and users made at start.

    source (eth1 10.0.2.1) --+
                             +-- observer's bridge br0 (the data plane, as the exercises expect)
    dest   (eth1 10.0.2.2) --+

Each VM also has a management link of its own: a veth from this machine's root namespace (tlsshv<i>,
10.254.<i>.1/30) to the VM's mgmt0 (10.254.<i>.2/30). SSH goes over those links only; the routes they
add cover their /30 alone, so no packet to a lab address ever follows the machine's default route.
Removing the containers removes the veths with them.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lab.backends.docker import DockerBackend, images
from lab.backends.labstate import LabState
from lab.naming import link_alias
from lab.spec.topology import parse

LAB = "sshvms"
ROLES = ("source", "dest", "observer")
DATA = {"source": "10.0.2.1", "dest": "10.0.2.2"}
TOPOLOGY = {
    "nodes": {
        "observer": {"bridges": ["br0"]},
        "source": {"interfaces": {"eth1": {"ipv4": "10.0.2.1/24"}}},
        "dest": {"interfaces": {"eth1": {"ipv4": "10.0.2.2/24"}}},
    },
    "links": [{"endpoints": ["source:eth1", "observer:br0"]}, {"endpoints": ["dest:eth1", "observer:br0"]}],
}
# lab: passwordless sudo; pw: sudo wants a password; root: logs in directly.
USERS_SCRIPT = r"""
set -e
mount -o remount,rw,bind /proc/sys
ssh-keygen -A >/dev/null
for u in lab pw; do
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
  usermod -p '*' "$u"   # no password, but not locked: sshd (UsePAM no) refuses locked accounts
done
echo 'lab ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/lab
echo 'pw ALL=(ALL) ALL' > /etc/sudoers.d/pw
for home in /root /home/lab /home/pw; do
  mkdir -p "$home/.ssh" && printf '%s\n' "$1" > "$home/.ssh/authorized_keys"
  chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys"
done
chown -R lab:lab /home/lab/.ssh && chown -R pw:pw /home/pw/.ssh
/usr/sbin/sshd -o UsePAM=no
"""


@dataclass
class Vms:
    folder: Path
    key: Path
    known_hosts: Path
    mgmt: dict[str, str] = field(default_factory=dict)  # role -> SSH address
    host_keys: dict[str, str] = field(default_factory=dict)  # role -> "ssh-ed25519 AAAA..."

    def ssh_config(self) -> Path:
        """A ~/.ssh/config-style file naming the VMs vm-source, vm-dest, vm-observer (as `vagrant ssh-config` does)."""
        path = self.folder / "ssh_config"
        path.write_text("".join(f"Host vm-{r}\n  HostName {self.mgmt[r]}\n  User root\n  Port 22\n  IdentityFile {self.key}\n"
                                f"  IdentitiesOnly yes\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n\n" for r in ROLES))
        return path

    def inventory(self, name: str = "inventory.yml", with_observer: bool = True, ssh_config: Path | None = None, **overrides) -> Path:
        """An inventory of the VMs; overrides: role -> fields replacing the defaults (None drops the role)."""
        machines = {
            "source": {"host": self.mgmt["source"], "user": "lab", "sudo": True, "address": DATA["source"]},
            "dest": {"host": self.mgmt["dest"], "user": "root", "address": DATA["dest"]},
        }
        if with_observer:
            machines["observer"] = {"host": self.mgmt["observer"], "user": "root", "interface": "br0"}
        for role, fields in overrides.items():
            if fields is None:
                machines.pop(role, None)
            else:
                merged = {**machines.get(role, {}), **fields}
                machines[role] = {k: v for k, v in merged.items() if v is not None}  # None: leave the field out
        path = self.folder / name
        extra = {"ssh_config": str(ssh_config)} if ssh_config else {}
        path.write_text(yaml.safe_dump({"known_hosts": str(self.known_hosts), "defaults": {"key": str(self.key)},
                                        "machines": machines, **extra}))
        return path

    def exec(self, role: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", f"tcplab-{LAB}-{role}", *argv], capture_output=True, text=True, timeout=60)


def start(folder: Path) -> tuple[Vms, DockerBackend, LabState]:
    client = docker.from_env(timeout=600)
    backend = DockerBackend(LAB, image=images.ensure_ssh_vm(client))
    # A VM's /proc/sys is writable by root; a container's is a read-only mount, which the start script
    # remounts (hence SYS_ADMIN). Exercise sysctls are net.* only: the VM's network namespace's own.
    backend.run_options = {"cap_add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]}
    old = LabState(LAB, "docker")
    backend.destroy(old)  # a crashed earlier session's VMs
    # Recorded like any lab (`invoke down --lab sshvms` removes VMs a crashed session left), as kept up.
    state = LabState(LAB, "docker", exercise="stand-in VMs for the SSH tests", kept=True)
    state.save()
    topo = parse(folder / "vms.yml", TOPOLOGY)
    backend.create(topo, state)

    key = ed25519.Ed25519PrivateKey.generate()
    key_file = folder / "id_test"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    key_file.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    vms = Vms(folder, key_file, folder / "known_hosts")

    for i, role in enumerate(ROLES):
        root_end, here, there = f"tlsshv{i}", f"10.254.{i}.1/30", f"10.254.{i}.2"
        ns = f"tcplab-{LAB}-{role}"
        _sh("ip", "link", "add", root_end, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
        _sh("ip", "link", "set", root_end, "alias", link_alias(LAB))
        _sh("ip", "addr", "add", here, "dev", root_end)
        _sh("ip", "link", "set", root_end, "up")
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{there}/30", "dev", "mgmt0")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "mgmt0", "up")
        vms.mgmt[role] = there
        r = vms.exec(role, "sh", "-c", USERS_SCRIPT, "sh", public)
        assert r.returncode == 0, r.stderr
        vms.host_keys[role] = " ".join(vms.exec(role, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])
    vms.known_hosts.write_text("".join(f"{vms.mgmt[r]} {vms.host_keys[r]}\n" for r in ROLES))
    return vms, backend, state


def stop(backend: DockerBackend, state: LabState) -> None:
    backend.destroy(state)
    state.remove()


def _sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


def remote_state(vms: Vms, role: str, lab: str) -> dict:
    """What a lab may have left on a VM: its chain, its folder, processes other than sshd and init."""
    chain = vms.exec(role, "iptables", "-w", "-n", "-L", f"TL_{lab}").returncode == 0
    folders = vms.exec(role, "sh", "-c", f"ls -d /root/.tcplab/{lab} /home/*/.tcplab/{lab} 2>/dev/null").stdout.split()
    ps = vms.exec(role, "ps", "-eo", "comm=").stdout.split()
    stray = [p for p in ps if p not in ("sleep", "sshd", "ps", "docker-init", "tini")]
    return {"chain": chain, "folders": folders, "processes": stray}


def as_json(data) -> str:
    return json.dumps(data, indent=1)
