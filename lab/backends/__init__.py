"""Backends by name. Each one lives in its own module; `get` imports only the one asked for."""
from __future__ import annotations

import importlib
from typing import Optional

from ..errors import LabError
from .base import Backend

BACKENDS = {
    "netns": "lab.backends.netns:NetnsBackend",
    "docker": "lab.backends.docker:DockerBackend",
    "ssh": "lab.backends.ssh:SshBackend",
}


def get(name: str, lab: str, inventory: Optional[str] = None, accept_new_host_keys: bool = False) -> Backend:
    if name not in BACKENDS:
        raise LabError(f"--backend {name!r}: unknown backend; available: {', '.join(BACKENDS)}")
    if name == "ssh":
        if not inventory:
            raise LabError("--backend ssh needs --inventory FILE, the machines to use (README: \"The SSH backend\")")
        from .. import inventory as inventory_mod
        from .ssh import SshBackend

        return SshBackend(lab, inventory_mod.load(inventory), accept_new_host_keys)
    if inventory or accept_new_host_keys:
        raise LabError(f"--inventory and --accept-new-host-keys are for --backend ssh, not {name}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(lab)
