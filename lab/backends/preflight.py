"""Before anything is built: are we root, and are the tools there? Each failure is one line with the fix."""
from __future__ import annotations

import os
import shutil
import sys

from ..errors import LabError

SBIN = "/usr/sbin:/sbin"


def require_root(task: str) -> None:
    if os.geteuid() != 0:
        invoke = os.path.join(os.path.dirname(sys.executable), "invoke")
        raise LabError(f"tcplab needs root to create namespaces and firewall rules: run `sudo {invoke} {task}` (or `sudo ./bootstrap {task}`)")


def require_tools(tools: dict[str, str]) -> None:
    path = os.environ.get("PATH", "") + ":" + SBIN
    missing = {cmd: pkg for cmd, pkg in tools.items() if shutil.which(cmd, path=path) is None}
    if missing:
        names = ", ".join(missing)
        pkgs = " ".join(sorted(set(missing.values())))
        raise LabError(f"missing tools: {names}; install them with `sudo apt-get install -y {pkgs}` or run ./bootstrap")
    # iproute2 and iptables live in /sbin on Debian, which a non-login root shell may lack.
    if SBIN.split(":")[0] not in os.environ.get("PATH", ""):
        os.environ["PATH"] = path
