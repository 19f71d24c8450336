"""Debian's package mirror and debootstrap: the one way this project makes a root file system
offline, for the Docker backend's base image and for the VMs' disks (lab/vms/image.py)."""
from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import LabError

MIRROR = "http://deb.debian.org/debian"


def debootstrap(suite: str, root: Path, include: Sequence[str] = (), progress: Callable[[str], None] = lambda line: None) -> None:
    """A minimal Debian `suite` in `root`, with the `include` packages; each of debootstrap's
    "I: ..." lines goes to `progress` as it comes (it takes a minute or two)."""
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing, which builds Debian offline from its package mirror: "
                       "`sudo apt-get install -y debootstrap` or run ./bootstrap")
    argv = ["debootstrap", "--variant=minbase"]
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [suite, str(root), MIRROR]
    tail: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.strip()
                tail = (tail + [line])[-3:]
                if line.startswith("I: "):
                    progress(line[3:])
        except BaseException:
            # Ctrl-C reaches debootstrap too, SIGTERM only us: either way it stops with us, given time to
            # unmount what it mounted in the target, and what it leaves mounted is unmounted here.
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            unmount_under(root)
            raise
    if proc.returncode != 0:
        raise LabError(f"debootstrap {suite} from {MIRROR} failed: {' / '.join(tail) or f'exit status {proc.returncode}'}")


def unmount_under(root: Path) -> None:
    """Unmounts whatever is mounted at or below `root` (debootstrap mounts /proc and /sys in its target),
    deepest first, so the folder can be removed; nothing outside `root` is touched."""
    top = str(root.resolve())
    try:
        with open("/proc/self/mounts") as f:
            # Mount points are written with octal escapes for spaces and the like.
            points = [line.split()[1].encode().decode("unicode_escape") for line in f if len(line.split()) > 1]
    except OSError:
        return
    for point in sorted((p for p in points if p == top or p.startswith(top + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_tree(folder: Path) -> None:
    """A build folder removed with anything still mounted in it; a LabError if it cannot be."""
    if not folder.exists():
        return
    unmount_under(folder)
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        raise LabError(f"{folder} could not be removed (is something still mounted in it? see `findmnt -R {folder}`): remove it by hand")


@contextlib.contextmanager
def one_build_at_a_time(lock_file: Path) -> Iterator[None]:
    """An image built by one process at a time: labs or VM sets started together wait for the first
    one's build, then find the image made."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
