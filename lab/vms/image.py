"""A VM image, cached: Debian from its package mirror (debootstrap) with images/vm/ laid over it,
its kernel and initrd beside one ext4 disk. VMs boot that kernel directly and write to overlays of
their own (lab/vms/boot.py), so the cached disk is never changed and is shared by every set.

    /var/cache/tcplab/vm-images/<kernel>-<key>/{disk.img, vmlinuz, initrd.img, image.json}

The folder appears whole or not at all (built beside it, then renamed), so a build cut short by
Ctrl-C or SIGKILL leaves only a `.partial` folder, which the next build removes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import ui
from ..backends.debian import MIRROR, debootstrap, one_build_at_a_time, remove_tree
from . import vmset
from ..errors import LabError
from .recipe import VM_DIR, Recipe

CACHE = Path("/var/cache/tcplab/vm-images")


@dataclass(frozen=True)
class Image:
    folder: Path
    kernel_release: str  # "6.1.0-50-amd64"

    @property
    def disk(self) -> Path:
        return self.folder / "disk.img"

    @property
    def vmlinuz(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"


def folder(recipe: Recipe) -> Path:
    return CACHE / f"{recipe.kernel}-{recipe.key()}"


def ensure(recipe: Recipe, rebuild: bool = False) -> Image:
    """The recipe's image, built first if it is not cached (a few minutes, once)."""
    target = folder(recipe)
    with one_build_at_a_time(CACHE / ".lock"):
        if rebuild and target.exists():
            shutil.rmtree(target)
        if not (target / "image.json").is_file():
            _build(recipe, target)
    info = json.loads((target / "image.json").read_text())
    return Image(target, info["kernel_release"])


def _build(recipe: Recipe, target: Path) -> None:
    for tool, package in (("mkfs.ext4", "e2fsprogs"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing, which builds the VM image: `sudo apt-get install -y {package}` or run ./bootstrap")
    for stale in CACHE.glob("*.partial"):  # a build killed midway (the lock says none runs now)
        remove_tree(stale)
    work = target.with_name(target.name + ".partial")
    root = work / "root"
    work.mkdir()
    began = time.monotonic()
    try:
        with ui.activity(f"building the {recipe.kernel} VM image: debootstrap {recipe.suite} from {MIRROR} (a few minutes, once)") as update:
            debootstrap(recipe.suite, root, recipe.packages, lambda line: update(line, milestone=line.startswith("Base system installed")))
        ui.step(f"laying {VM_DIR.relative_to(VM_DIR.parents[1])}/rootfs over it and setting it up")
        _copy_tree(VM_DIR / "rootfs", root)
        shutil.copy(VM_DIR / "setup.sh", root / "tmp" / "tcplab-setup.sh")
        r = subprocess.run(["chroot", str(root), "/bin/sh", "/tmp/tcplab-setup.sh"], capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"setting the VM image up ({VM_DIR / 'setup.sh'}) failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
        (root / "tmp" / "tcplab-setup.sh").unlink()
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError(f"the {recipe.suite} image has no kernel in /boot: is linux-image-amd64 in the recipe (lab/vms/recipe.py)?")
        release = kernels[-1].name[len("vmlinuz-"):]
        shutil.copy(kernels[-1], work / "vmlinuz")
        shutil.copy(root / "boot" / f"initrd.img-{release}", work / "initrd.img")
        ui.step(f"making the disk ({recipe.disk_mb} MB, ext4) with kernel {release}")
        r = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "tcplab-root", "-d", str(root), str(work / "disk.img"), f"{recipe.disk_mb}M"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"mkfs.ext4 of the VM disk failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
        shutil.rmtree(root)
        info = {"kernel": recipe.kernel, "suite": recipe.suite, "kernel_release": release, "key": recipe.key(),
                "packages": list(recipe.packages), "built": time.time(), "mirror": MIRROR}
        (work / "image.json").write_text(json.dumps(info, indent=1) + "\n")
        os.rename(work, target)
    except BaseException:
        remove_tree(work)
        raise
    in_use = {record.image for record in map(vmset.load, vmset.names()) if record is not None}
    for old in CACHE.glob(f"{recipe.kernel}-*"):
        if old != target and not old.name.endswith(".partial") and str(old) not in in_use:
            shutil.rmtree(old, ignore_errors=True)  # an image of an older recipe that no VM set boots from
    ui.step(f"VM image {target} ready ({time.monotonic() - began:.0f} s)")


def _copy_tree(src: Path, dst: Path) -> None:
    """rootfs/ onto the root file system, owned by root whoever checked the project out."""
    for path in sorted(src.rglob("*")):
        to = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            to.mkdir(parents=True, exist_ok=True)
            os.chown(to, 0, 0)
        else:
            if to.is_symlink() or to.exists():
                to.unlink()
            shutil.copy2(path, to, follow_symlinks=False)
            os.lchown(to, 0, 0)
