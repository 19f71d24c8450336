"""Hands the results folder to the person who ran the container, or to the server that placed the
lab on a Swarm node.

Inside the tcplab image everything runs as root (namespaces need it), so what a command writes
under the mounted results/ would be root's on the host. After each command, what root owns there
goes to the owner of results/ itself (the host user who made the folder), or to TCPLAB_OWNER
("uid:gid", for a folder Docker made as root because it did not exist yet). A lab placed on a Swarm
node (lab/swarm/jobs.py) has TCPLAB_SHIP_RESULTS name its folder, which is written to the output,
where the service's logs carry it back (lab/swarm/shipping.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import LabError
from ..results.folder import RESULTS_ROOT
from ..swarm import shipping


def owner(root: Path, setting: str | None) -> tuple[int, int] | None:
    """Whose the folder's contents should be: TCPLAB_OWNER if set, else the folder's own owner; None for root."""
    if setting:
        try:
            uid, _, gid = setting.partition(":")
            pair = (int(uid), int(gid or uid))
        except ValueError:
            raise LabError(f"TCPLAB_OWNER={setting!r}: give uid:gid, e.g. -e TCPLAB_OWNER=$(id -u):$(id -g)") from None
        return pair if pair[0] >= 0 and pair[1] >= 0 else None
    try:
        st = root.stat()
    except OSError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def results_to_their_owner(root: Path = RESULTS_ROOT) -> None:
    try:
        who = owner(root, os.environ.get("TCPLAB_OWNER"))
    except LabError as e:
        print(f"error: {e}")
        return
    if who is None or not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            try:
                if os.lstat(path).st_uid == 0:
                    os.lchown(path, *who)
            except OSError:
                pass  # gone meanwhile, or a file system that keeps its own owners (Docker Desktop's shares)
    if os.environ.get("TCPLAB_OWNER"):
        try:
            if root.stat().st_uid == 0:
                os.chown(root, *who)
        except OSError:
            pass


def ship(folder: str) -> None:
    path = Path(folder)
    if not path.is_dir():
        return  # the run stopped before it made one: the job's end says why
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write("".join(line + "\n" for line in shipping.pack(path)))
    sys.stdout.flush()
