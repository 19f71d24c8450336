"""The labs this machine knows of: those with a state folder, those whose namespaces outlived it
(the state folder is on tmpfs), and those with containers in Docker."""
from __future__ import annotations

from ..backends import labstate
from ..backends.netns import list_netns
from ..naming import PREFIX


def known() -> list[str]:
    return sorted(set(labstate.labs()) | set(stray()) | set(in_docker()))


def stray() -> list[str]:
    """Labs whose namespaces exist without a state file."""
    out = set()
    for ns in list_netns():
        parts = ns.split("-")
        if len(parts) == 3 and parts[0] == PREFIX:
            out.add(parts[1])
    return sorted(out)


def in_docker() -> list[str]:
    """Labs with containers in Docker; none, quietly, where Docker is absent. The Docker SDK is
    imported here, not at the top: a machine without labs in containers need not pay for it."""
    from ..backends.docker import lab_names

    return lab_names()
