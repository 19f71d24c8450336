"""`invoke swarm up|down|status`: a Swarm on this machine alone (lab/swarm/sandbox.py), with the
tcplab image (built by this machine's own daemon) loaded on its nodes."""
from __future__ import annotations

import os

import docker.errors

from .. import ui
from ..backends.preflight import require_root
from ..errors import LabError
from ..session import swarmrun
from ..swarm import sandbox
from . import EXIT_OK


def swarm(action: str, name: str, nodes: int) -> int:
    if action not in ("up", "down", "status"):
        raise LabError(f"swarm {action!r}: up, down or status")
    require_root(f"swarm {action}")
    ui.reset_clock()
    if action == "up":
        made = sandbox.up(name, nodes)
        os.environ["DOCKER_HOST"] = made[0].url
        try:
            swarmrun.prepare()  # the image on every node now, so the first lab placed does not wait for it
        except docker.errors.DockerException as e:
            raise LabError(f"sandbox {name}: the tcplab image could not be put on its nodes: {str(e).splitlines()[0][:200]}; "
                           f"`invoke swarm down --name {name}` removes it") from None
        ui.console.print(f"sandbox {name}: {len(made)} node(s), manager {made[0].hostname}: " + ", ".join(f"{n.hostname} ({n.address})" for n in made))
        ui.console.print(f"use it with: export DOCKER_HOST={made[0].url}")
        ui.console.print(f"remove it with: invoke swarm down --name {name}")
    elif action == "down":
        removed = sandbox.down(name)
        ui.console.print(f"sandbox {name}: " + (", ".join(removed) + " removed" if removed else "nothing to remove"))
    else:
        found = sandbox.names()
        if not found:
            ui.console.print("no Swarm sandbox on this machine")
        for n in found:
            nodes_ = sandbox.load(n)
            ui.console.print(f"{n}: DOCKER_HOST={nodes_[0].url}; " + ", ".join(
                f"{x.hostname} ({x.address}, {'running' if sandbox.running(x) else 'stopped'})" for x in nodes_))
    return EXIT_OK

