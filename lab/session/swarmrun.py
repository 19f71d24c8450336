"""`up --engine swarm`: an exercise run placed on a Docker Swarm node as a job of the tcplab image
(lab/swarm/jobs.py), its progress shown here as it comes, its results folder back on this machine
and judged here. Input is checked here first, so a bad --set is one line before anything is placed."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

import docker.errors

from .. import ui
from ..backends.docker import images
from ..errors import LabError
from ..naming import check_lab_name
from ..report import verdict
from ..results import folder as results
from ..spec import exercise as exercise_mod
from ..spec import sweep as sweep_mod
from ..swarm import cluster, jobs, sandbox
from . import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from .run import Outcome


PROGRESS = re.compile(r"^\s*\d+\.\d+s\s|^(error|warning):")


def _progress(line: str) -> None:
    """The job's progress lines and errors, shown as they come; its own verdict is not (it is judged again here)."""
    if PROGRESS.match(line):
        ui.relay(line)


def prepare() -> tuple[object, str]:
    """The Swarm's manager and the tcplab image's tag, the image on every node that can take it.

    The image is built by the manager's daemon, except on a sandbox of `invoke swarm up`, whose nodes
    have no way off this machine to Debian's mirror: there this machine's own daemon builds it."""
    client = cluster.manager()
    builder = sandbox.own_daemon() if sandbox.is_manager(os.environ.get("DOCKER_HOST", "")) else client
    tag = images.ensure_tcplab(builder)
    ready = cluster.image_everywhere(client, tag, source=builder)
    ui.step(f"Swarm nodes for labs: {', '.join(n.hostname for n in ready)}")
    return client, tag


def up(name: str, lab: str, sets: Sequence[str], results_dir: Optional[str], placed: Optional[tuple[object, str]] = None,
       stop: Callable[[], bool] = lambda: False) -> Outcome:
    check_lab_name(lab)
    ui.reset_clock()
    ui.stage("starting")
    if sweep_mod.plan(name, sets, lab, {}) is not None:
        raise LabError("--engine swarm runs one lab: give each parameter one value (a sweep's runs are compared on one machine)")
    exercise_mod.load(name, sets, lab)  # every value checked here, before anything is placed
    try:
        return _placed(name, lab, sets, results_dir, placed, stop)
    except docker.errors.DockerException as e:
        raise LabError(f"lab {lab}: the Swarm's manager failed: {str(e).splitlines()[0][:200]}") from None


def _placed(name: str, lab: str, sets: Sequence[str], results_dir: Optional[str], placed: Optional[tuple[object, str]],
            stop: Callable[[], bool]) -> Outcome:
    client, tag = placed or prepare()
    folder = results.create(Path(results_dir) if results_dir else results.default_folder(lab, name))
    args = ["up", name, "--lab", lab, *[a for s in sets for a in ("--set", s)]]
    ui.step(f"placing lab {lab} on the Swarm as service {jobs.service_name(lab)} ({tag})")
    ui.stage("running")
    try:
        ended = jobs.run(client, tag, lab, args, folder, show=_progress, stop=stop)
    except KeyboardInterrupt:
        results.remove_if_empty(folder)
        ui.error(f"interrupted: lab {lab}'s job was removed from the Swarm")
        return Outcome(EXIT_INTERRUPTED)
    if ended.failure:
        results.remove_if_empty(folder)
        raise LabError(f"lab {lab}: {ended.failure}")
    ui.step(f"results of lab {lab} back from node {ended.node_hostname} into {folder}")
    ui.stage("finishing")
    passed = verdict.check_folder(folder)
    return Outcome(EXIT_OK if passed else EXIT_FAILED, folder)
