"""Each VM's seed: a small read-only ext4 disk with what makes it this VM (read at boot by
images/vm/rootfs/usr/local/sbin/tcplab-seed): hostname, SSH host key, the set's user key, and
networkd files for its management NIC, its data NIC(s) and, on the observer, the bridge joining them.
Keys are made here, fresh for every set, with the cryptography library paramiko already needs."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import LabError
from .vmset import DATA_PREFIX, MGMT_ADDRESS, VmRecord

# No IPv6 and no router solicitations: the captures hold the exercise's packets and ARP alone.
QUIET = "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"


def keypair(private_file: Path, comment: str) -> str:
    """A new ed25519 key in OpenSSH's format (private_file, and .pub beside it); returns the public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    private_file.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    private_file.with_name(private_file.name + ".pub").write_text(f"{public} {comment}\n")
    return public


def network_files(vm: VmRecord) -> dict[str, str]:
    mgmt, data = vm.macs[0], vm.macs[1:]
    files = {"10-mgmt.network": f"[Match]\nMACAddress={mgmt}\n\n[Network]\nAddress={MGMT_ADDRESS}/24\n{QUIET}"}
    if vm.address:
        files["20-data.network"] = f"[Match]\nMACAddress={data[0]}\n\n[Network]\nAddress={vm.address}/{DATA_PREFIX}\n{QUIET}"
    else:
        # The observer: its data NICs are the ports of a bridge, as a Vagrant observer's would be.
        files[f"20-{vm.interface}.netdev"] = f"[NetDev]\nName={vm.interface}\nKind=bridge\n\n[Bridge]\nSTP=no\nForwardDelaySec=0\n"
        files[f"20-{vm.interface}.network"] = f"[Match]\nName={vm.interface}\n\n[Network]\nConfigureWithoutCarrier=yes\n{QUIET}"
        for i, mac in enumerate(data):
            files[f"21-port{i}.network"] = f"[Match]\nMACAddress={mac}\n\n[Network]\nBridge={vm.interface}\n{QUIET}"
    return files


def make(vm: VmRecord, hostname: str, user_public_key: str, image: Path) -> str:
    """Writes the seed disk to `image`; returns the VM's public host key ("ssh-ed25519 AAAA...")."""
    with tempfile.TemporaryDirectory(prefix="tcplab-seed-") as tmp:
        seed = Path(tmp)
        (seed / "hostname").write_text(hostname + "\n")
        host_public = keypair(seed / "ssh_host_ed25519_key", f"root@{hostname}")
        (seed / "authorized_keys").write_text(user_public_key + "\n")
        (seed / "network").mkdir()
        for name, text in network_files(vm).items():
            (seed / "network" / name).write_text(text)
        r = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "tcplab-seed", "-d", str(seed), str(image), "8M"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"mkfs.ext4 of {image} failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return host_public
