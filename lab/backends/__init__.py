"""Backends by name: where a lab's hosts live. `get` imports only the one asked for: the Docker SDK
takes about 0.3 s to import and paramiko 0.2 s, which a lab on namespaces should not pay."""
from __future__ import annotations

from typing import Optional

from ..errors import LabError
from .base import Backend

BACKENDS = ("netns", "docker", "ssh")


def get(name: str, lab: str, inventory: Optional[str] = None, accept_new_host_keys: bool = False) -> Backend:
    if name not in BACKENDS:
        raise LabError(f"--backend {name!r}: unknown backend; available: {', '.join(BACKENDS)}")
    if name == "ssh":
        if not inventory:
            raise LabError("--backend ssh needs --inventory FILE, the machines to use (README: \"The SSH backend\")")
        from ..spec import inventory as inventory_mod
        from .ssh import SshBackend

        return SshBackend(lab, inventory_mod.load(inventory), accept_new_host_keys)
    if inventory or accept_new_host_keys:
        raise LabError(f"--inventory and --accept-new-host-keys are for --backend ssh, not {name}")
    if name == "docker":
        from .docker import DockerBackend

        return DockerBackend(lab)
    from .netns import NetnsBackend

    return NetnsBackend(lab)
