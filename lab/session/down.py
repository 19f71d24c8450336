"""Everything a lab created removed (`invoke down`, and the lab server for a lab whose worker died),
even after `up` or a keeper was killed; safe to run twice."""
from __future__ import annotations

import os
from typing import Optional

from .. import backends, ui
from ..backends import labstate, localtrace
from ..backends.labstate import LabState
from ..backends.preflight import require_root
from ..errors import LabError
from ..naming import check_lab_name, keeper_log
from ..onhost import procs
from . import labs

OWNER_GRACE = 15.0  # seconds a running `up` gets to tear its own lab down


def down(lab: Optional[str], all_labs: bool, inventory: Optional[str] = None) -> dict[str, list[str]]:
    """Removes one lab (or every lab this machine knows of); returns what was removed, per lab."""
    if all_labs:
        if inventory:
            raise LabError("--all and --inventory do not mix: `invoke down --lab X --inventory FILE` removes lab X from those machines")
        names = labs.known()
    else:
        names = [check_lab_name(lab or "tcplab")]
    docker_labs = set(labs.in_docker()) if names else set()
    plans: list[tuple[str, LabState, Optional[str]]] = []
    for name in names:  # every lab checked before anything is removed
        state = labstate.load(name) or LabState(name, "ssh" if inventory else "docker" if name in docker_labs else "netns")
        if inventory and state.backend != "ssh":
            raise LabError(f"lab {name} runs on {state.backend}, not on SSH machines: drop --inventory")
        if state.backend == "ssh":
            inventory_file = inventory or state.inventory
            if not inventory_file:
                raise LabError(f"lab {name} ran over SSH and its inventory is not recorded: `invoke down --lab {name} --inventory FILE`")
        else:
            inventory_file = None
            require_root("down")
        plans.append((name, state, inventory_file))
    # The Swarm's jobs before the state folders: a lab held there has a worker here mirroring its record
    # into the lab's state folder, and removing that folder under it makes the worker remove the job
    # itself, racing this.
    placed = swarm_jobs(None if all_labs else names)
    out: dict[str, list[str]] = {}
    for name, state, inventory_file in plans:
        if state.owner_alive() and state.owner_pid != os.getpid():
            # `up`, or a hands-on lab's keeper, is still running: let it tear its own lab down, then sweep what is left.
            ui.step(f"lab {name}: stopping its {'keeper' if state.mode == 'hands-on' else '`up`'} (pid {state.owner_pid})")
            procs.stop(state.owner_pid, state.owner_start, grace=OWNER_GRACE)
            state = labstate.load(name) or state
        removed = backends.get(state.backend, name, inventory_file).destroy(state) + localtrace.remove(state)
        state.remove()
        labstate.drop_lock(name)
        keeper_log(name).unlink(missing_ok=True)
        out[name] = removed
    for name, services in placed.items():
        out.setdefault(name, []).extend(f"Swarm service {s}" for s in services)
    return out


def swarm_jobs(names: Optional[list[str]]) -> dict[str, list[str]]:
    """Removes the labs' jobs from the Swarm that the local Docker daemon manages (every lab's with
    None), also after the `up` or server that placed them was killed. Nothing where there is no
    daemon, or it manages no Swarm."""
    if os.environ.get("DOCKER_HOST") is None and not os.path.exists("/var/run/docker.sock"):
        return {}
    import docker
    import docker.errors

    from ..swarm import jobs

    try:
        client = docker.from_env(timeout=10)
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return {}
        out: dict[str, list[str]] = {}
        for service in client.services.list(filters={"label": jobs.LAB_LABEL}):
            labels = service.attrs["Spec"].get("Labels") or {}
            lab = labels.get(jobs.LAB_LABEL, "")
            # --all: the labs placed from this machine; a lab named with --lab, whoever placed it.
            if (names is None and labels.get(jobs.OWNER_LABEL) == jobs.owner()) or (names is not None and lab in names):
                out.setdefault(lab, []).extend(jobs.remove(client, lab))
        return out
    except docker.errors.DockerException:
        return {}
