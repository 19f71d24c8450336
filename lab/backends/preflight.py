"""Before anything is built: are we root, and are the tools there? Each failure is one line with the fix."""
from __future__ import annotations

import os
import shutil
import sys

from ..errors import LabError

SBIN = "/usr/sbin:/sbin"


# Bits of the capability sets in /proc/self/status (linux/capability.h).
NEEDED_CAPABILITIES = {"NET_ADMIN": 12, "SYS_ADMIN": 21}


def require_root(task: str) -> None:
    if os.geteuid() != 0:
        invoke = os.path.join(os.path.dirname(sys.executable), "invoke")
        raise LabError(f"tcplab needs root to create namespaces and firewall rules: run `sudo {invoke} {task}` (or `sudo ./bootstrap {task}`)")
    problem = capability_problem(_read("/proc/self/status"), _apparmor_profile(), in_container())
    if problem:
        raise LabError(problem)


def capability_problem(status: str, apparmor: str, container: bool) -> str | None:
    """Why root here still cannot make namespaces (a container without the capabilities, or under
    Docker's AppArmor profile, which denies mount), as one line with the fix; None if it can."""
    effective = 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
    missing = [name for name, bit in NEEDED_CAPABILITIES.items() if not effective >> bit & 1]
    if missing:
        fix = ("run the container with " + " ".join(f"--cap-add {name}" for name in missing) if container
               else "run it as root with every capability (not under capsh or a restricted service)")
        return (f"tcplab needs the capabilities NET_ADMIN and SYS_ADMIN to make network namespaces, "
                f"and lacks {' and '.join(missing)}: {fix}")
    if apparmor and "enforce" in apparmor and not apparmor.startswith("unconfined"):
        # docker-default (and containerd's cri-containerd.apparmor.d) say `deny mount,`, and `ip netns add` mounts.
        profile = apparmor.split()[0]
        if os.environ.get("TCPLAB_SWARM_NODE_ID"):
            return (f"this Swarm node confines containers with the AppArmor profile {profile}, which denies mount, and network "
                    f"namespaces mount; a Swarm service cannot ask for another profile: place labs on nodes without AppArmor "
                    f"(drain this one: `docker node update --availability drain NODE`)")
        if os.environ.get("TCPLAB_K8S_NODE_NAME"):
            return (f"this pod runs under the AppArmor profile {profile}, which denies mount, and network namespaces mount: "
                    f"give the container securityContext.appArmorProfile: {{type: Unconfined}}")
        return (f"tcplab makes network namespaces, which mount, and the container's AppArmor profile ({profile}) "
                f"denies mount: run the container with --security-opt apparmor=unconfined as well")
    return None


def in_container() -> bool:
    return bool(os.environ.get("TCPLAB_IMAGE")) or os.path.exists("/.dockerenv")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _apparmor_profile() -> str:
    return (_read("/proc/self/attr/apparmor/current") or _read("/proc/self/attr/current")).strip()


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
