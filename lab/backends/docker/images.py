"""The project's images: built from images/<name>/Dockerfile, offline if need be.

`host` is what every Docker backend host runs; `ssh-vm` is the host image plus sshd, the stand-in VM
the SSH backend's tests reach. A tag carries a hash of its folder (and of its base's), so an edit to a
Dockerfile makes `up` rebuild. Without a registry the Debian base is made from Debian's package mirror
(debootstrap, then `docker import`) and handed to the same Dockerfile as its BASE.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from ... import ui
from ...errors import LabError
from ...naming import STATE_ROOT
from ..debian import MIRROR, debootstrap, one_build_at_a_time

IMAGES = Path(__file__).resolve().parents[3] / "images"
IMAGE_DIR = IMAGES / "host"
REPOSITORY = "tcplab/host"
SSH_VM_DIR = IMAGES / "ssh-vm"
SSH_VM_REPOSITORY = "tcplab/ssh-vm"
REGISTRY_BASE = "debian:bookworm-slim"
OFFLINE_BASE = "tcplab/debian-base:bookworm"
LABEL = "tcplab.image"


def content_hash(folder: Path | None = None) -> str:
    folder = folder or IMAGE_DIR
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def tag() -> str:
    return f"{REPOSITORY}:{content_hash()}"


def ssh_vm_tag() -> str:
    # Built on the host image, so a change to either folder makes a new tag.
    return f"{SSH_VM_REPOSITORY}:{content_hash(SSH_VM_DIR)}-{content_hash()}"


def ensure(client: docker.DockerClient, rebuild: bool = False) -> str:
    """The host image's tag, built first if it is missing or out of date."""
    wanted = tag()
    if rebuild or not _exists(client, wanted):
        with one_build_at_a_time(STATE_ROOT / "images.lock"):
            if rebuild or not _exists(client, wanted):  # another `up` may have built it while this one waited
                _build(client, IMAGE_DIR, wanted, _base(client), "host")
    return wanted


def ensure_ssh_vm(client: docker.DockerClient, rebuild: bool = False) -> str:
    """The stand-in VM image's tag, built on the host image first if it is missing or out of date."""
    wanted = ssh_vm_tag()
    if rebuild or not _exists(client, wanted):
        base = ensure(client)
        with one_build_at_a_time(STATE_ROOT / "images.lock"):
            if rebuild or not _exists(client, wanted):
                _build(client, SSH_VM_DIR, wanted, base, "ssh-vm")
    return wanted


def _exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(client: docker.DockerClient, folder: Path, wanted: str, base: str, label: str) -> None:
    ui.step(f"building {wanted} from {folder}/Dockerfile on {base}")
    try:
        # forcerm: the intermediate build container goes even when a step fails.
        stream = client.api.build(path=str(folder), tag=wanted, buildargs={"BASE": base}, network_mode="host",
                                  rm=True, forcerm=True, decode=True, labels={LABEL: label})
        for chunk in stream:
            if "error" in chunk:
                raise LabError(f"building {wanted} failed: {chunk['error'].strip()}")
            line = (chunk.get("stream") or "").strip()
            if line.startswith("Step ") or line.startswith("Successfully"):
                ui.step(f"  {line}")
    except docker.errors.APIError as e:
        raise LabError(f"building {wanted} failed: {e.explanation or e}") from None


def _base(client: docker.DockerClient) -> str:
    for name in (REGISTRY_BASE, OFFLINE_BASE):
        if _exists(client, name):
            return name
    ui.step(f"pulling {REGISTRY_BASE}")
    try:
        client.images.pull(REGISTRY_BASE)
        return REGISTRY_BASE
    except docker.errors.APIError as e:
        reason = (e.explanation or str(e)).splitlines()[0][:160]
    ui.warn(f"cannot pull {REGISTRY_BASE} ({reason}); making the base from Debian's mirror with debootstrap instead")
    return debootstrap_base(client)


def debootstrap_base(client: docker.DockerClient) -> str:
    """A minimal Debian bookworm from the package mirror, imported as OFFLINE_BASE."""
    with tempfile.TemporaryDirectory(prefix="tcplab-debootstrap-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        ui.step(f"debootstrap --variant=minbase bookworm from {MIRROR} (about a minute)")
        debootstrap("bookworm", root)
        ui.step(f"importing the root file system as {OFFLINE_BASE}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(root), arcname=".")
        buf.seek(0)
        repo, _, image_tag = OFFLINE_BASE.partition(":")
        client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=image_tag)
    return OFFLINE_BASE
