"""The project's images: built from images/<name>/Dockerfile, offline if need be.

`host` is what every Docker backend host runs; `ssh-vm` is the host image plus sshd, the stand-in VM
the SSH backend's tests reach; `tcplab` is tcplab itself, whose labs run inside it (built from the
repository's root, the context its .dockerignore allows). A tag carries a hash of what goes into the
image (and of its base's), so an edit makes the next build rebuild. Without a registry the Debian base
is made from Debian's package mirror (debootstrap, then `docker import`) and handed to the same
Dockerfile as its BASE.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from docker.utils.build import exclude_paths

from ... import ui
from ...errors import LabError
from ...naming import STATE_ROOT
from ..debian import MIRROR, debootstrap, one_build_at_a_time

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "images"
IMAGE_DIR = IMAGES / "host"
REPOSITORY = "tcplab/host"
SSH_VM_DIR = IMAGES / "ssh-vm"
SSH_VM_REPOSITORY = "tcplab/ssh-vm"
TCPLAB_DOCKERFILE = "images/tcplab/Dockerfile"
TCPLAB_REPOSITORY = "tcplab/tcplab"
REGISTRY_BASE = "debian:bookworm-slim"
OFFLINE_BASE = "tcplab/debian-base:bookworm"
# The tcplab image is Debian 13: its Python libraries are new enough (images/tcplab/Dockerfile says why).
TRIXIE_REGISTRY_BASE = "debian:trixie-slim"
TRIXIE_OFFLINE_BASE = "tcplab/debian-base:trixie"
LABEL = "tcplab.image"


def content_hash(folder: Path | None = None) -> str:
    folder = folder or IMAGE_DIR
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def tag() -> str:
    return f"{REPOSITORY}:{content_hash()}"


def context_files() -> list[str]:
    """The files the tcplab image is built from: the repository's root less what .dockerignore leaves out."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return sorted(p for p in exclude_paths(str(ROOT), patterns, dockerfile=TCPLAB_DOCKERFILE) if (ROOT / p).is_file())


def tcplab_tag() -> str:
    """tcplab/tcplab:<hash of its recipe>: the Dockerfile and every file of its context."""
    h = hashlib.sha256()
    for name in context_files():  # the Dockerfile and .dockerignore among them
        h.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return f"{TCPLAB_REPOSITORY}:{h.hexdigest()[:12]}"


def ssh_vm_tag() -> str:
    # Built on the host image, so a change to either folder makes a new tag.
    return f"{SSH_VM_REPOSITORY}:{content_hash(SSH_VM_DIR)}-{content_hash()}"


def ensure(client: docker.DockerClient, rebuild: bool = False) -> str:
    """The host image's tag, built first if it is missing or out of date."""
    wanted = tag()
    if rebuild or not exists(client, wanted):
        with one_build_at_a_time(STATE_ROOT / "images.lock"):
            if rebuild or not exists(client, wanted):  # another `up` may have built it while this one waited
                _build(client, IMAGE_DIR, wanted, _base(client), "host")
    return wanted


def ensure_ssh_vm(client: docker.DockerClient, rebuild: bool = False) -> str:
    """The stand-in VM image's tag, built on the host image first if it is missing or out of date."""
    wanted = ssh_vm_tag()
    if rebuild or not exists(client, wanted):
        base = ensure(client)
        with one_build_at_a_time(STATE_ROOT / "images.lock"):
            if rebuild or not exists(client, wanted):
                _build(client, SSH_VM_DIR, wanted, base, "ssh-vm")
    return wanted


def ensure_tcplab(client: docker.DockerClient, rebuild: bool = False) -> str:
    """The tcplab image's tag, built first if it is missing or out of date."""
    wanted = tcplab_tag()
    if rebuild or not exists(client, wanted):
        with one_build_at_a_time(STATE_ROOT / "images.lock"):
            if rebuild or not exists(client, wanted):
                base = _base(client, TRIXIE_REGISTRY_BASE, TRIXIE_OFFLINE_BASE, "trixie")
                _build(client, ROOT, wanted, base, "tcplab", dockerfile=TCPLAB_DOCKERFILE)
                drop_older(client, TCPLAB_REPOSITORY, wanted)
    return wanted


def drop_older(client: docker.DockerClient, repository: str, keep: str) -> None:
    """Earlier tags of the image (each edit of tcplab makes one): untagged, their layers freed where nothing uses them."""
    for image in client.images.list(name=repository):
        for t in image.tags:
            if t != keep:
                try:
                    client.images.remove(t)
                except docker.errors.APIError:
                    pass  # a container still uses it


def exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(client: docker.DockerClient, folder: Path, wanted: str, base: str, label: str, dockerfile: str = "Dockerfile") -> None:
    ui.step(f"building {wanted} from {folder / dockerfile} on {base}")
    try:
        # forcerm: the intermediate build container goes even when a step fails.
        stream = client.api.build(path=str(folder), dockerfile=dockerfile, tag=wanted, buildargs={"BASE": base},
                                  network_mode="host", rm=True, forcerm=True, decode=True, labels={LABEL: label})
        for chunk in stream:
            if "error" in chunk:
                raise LabError(f"building {wanted} failed: {chunk['error'].strip()}")
            line = (chunk.get("stream") or "").strip()
            if line.startswith("Step ") or line.startswith("Successfully"):
                ui.step(f"  {line}")
    except docker.errors.APIError as e:
        raise LabError(f"building {wanted} failed: {e.explanation or e}") from None


def _base(client: docker.DockerClient, registry: str = REGISTRY_BASE, offline: str = OFFLINE_BASE,
          suite: str = "bookworm") -> str:
    for name in (registry, offline):
        if exists(client, name):
            return name
    ui.step(f"pulling {registry}")
    try:
        client.images.pull(registry)
        return registry
    except docker.errors.APIError as e:
        reason = (e.explanation or str(e)).splitlines()[0][:160]
    ui.warn(f"cannot pull {registry} ({reason}); making the base from Debian's mirror with debootstrap instead")
    return debootstrap_base(client, suite, offline)


def debootstrap_base(client: docker.DockerClient, suite: str = "bookworm", name: str = OFFLINE_BASE) -> str:
    """A minimal Debian `suite` from the package mirror, imported as `name`."""
    with tempfile.TemporaryDirectory(prefix="tcplab-debootstrap-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        ui.step(f"debootstrap --variant=minbase {suite} from {MIRROR} (about a minute)")
        debootstrap(suite, root)
        ui.step(f"importing the root file system as {name}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(root), arcname=".")
        buf.seek(0)
        repo, _, image_tag = name.partition(":")
        client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=image_tag)
    return name
