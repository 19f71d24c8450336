"""`invoke images`: a project image built (offline from Debian's mirror when no registry answers)."""
from __future__ import annotations

from .. import ui
from ..backends.docker import client, images as images_mod
from ..backends.preflight import require_root
from ..errors import LabError
from . import EXIT_OK

BUILDERS = {"host": images_mod.ensure, "ssh-vm": images_mod.ensure_ssh_vm, "tcplab": images_mod.ensure_tcplab}


def images(rebuild: bool, image: str = "host") -> int:
    if image not in BUILDERS:
        raise LabError(f"--image {image!r}: images: {', '.join(BUILDERS)}")
    require_root("images")
    ui.reset_clock()
    tag = BUILDERS[image](client(), rebuild=rebuild)
    ui.console.print(f"image: {tag}")
    return EXIT_OK
