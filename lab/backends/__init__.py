"""Backends by name. Each one lives in its own module; `get` imports only the one asked for."""
from __future__ import annotations

import importlib

from ..errors import LabError
from .base import Backend

BACKENDS = {"netns": "lab.backends.netns:NetnsBackend", "docker": "lab.backends.docker:DockerBackend"}


def get(name: str, lab: str) -> Backend:
    if name not in BACKENDS:
        raise LabError(f"--backend {name!r}: unknown backend; available: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(lab)
