"""`up --engine swarm`: an exercise run placed on a Docker Swarm node as a job of the tcplab image
(lab/swarm/jobs.py), its progress shown here as it comes, its results folder back on this machine
and judged here; and a hands-on lab held on a node for the lab server. Input is checked here first,
so a bad --set is one line before anything is placed."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import docker.errors

from .. import ui
from ..backends.docker import images
from ..errors import LabError
from ..handson import record
from ..naming import check_lab_name, state_dir
from ..report import verdict
from ..results import folder as results
from ..spec import exercise as exercise_mod
from ..spec import sweep as sweep_mod
from ..swarm import cluster, jobs, sandbox, shipping
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


def placed_as(image: Optional[str]) -> Optional[tuple[object, str]]:
    """The manager and an image the caller has already put on the nodes (the lab server's); None: prepare anew."""
    return (cluster.manager(), image) if image else None


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


PLACEMENT = "swarm.json"  # in the lab's state folder here: where its container runs, for its terminals
MIRROR_EVERY = 0.5


def handson(name: str, lab: str, sets: Sequence[str], assigned: Sequence[str], results_dir: str,
            request: Callable[[], Optional[str]], placed: Optional[tuple[object, str]] = None) -> Outcome:
    """A hands-on lab held by a job on a Swarm node (`tcplab start` in the container holds it): its
    record mirrored here, where the lab server reads its steps and live wire as for a local lab; shells
    through the node's own Docker API (shell_argv); finished in the container when asked, its results
    folder coming back in the output of that `tcplab finish`."""
    check_lab_name(lab)
    ui.reset_clock()
    ui.stage("starting")
    exercise_mod.load(name, sets, lab)
    client, tag = placed or prepare()
    args = ["start", name, "--lab", lab, *[a for s in sets for a in ("--set", s)]]
    if assigned:
        args += ["--assigned", ",".join(assigned)]
    ui.step(f"placing hands-on lab {lab} on the Swarm as service {jobs.service_name(lab)}")
    service = jobs.create(client, tag, lab, args)
    local = state_dir(lab)
    try:
        ended, container = jobs.placed(client, service.id)
        if container is None:
            raise LabError(f"lab {lab}: {ended.failure}")
        api = jobs.node_api(client, ended.node_id)
        node = docker.DockerClient(base_url=api, timeout=120) if api else client
        local.mkdir(parents=True, exist_ok=True)
        (local / PLACEMENT).write_text(json.dumps({"api": api, "container": container, "node": ended.node_hostname}))
        ui.step(f"hands-on lab {lab} on node {ended.node_hostname}")
        ready = False
        while True:
            data = jobs.read_file(node, container, f"/run/tcplab/{lab}/{record.FILE}")
            if data:
                tmp = local / (record.FILE + ".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, local / record.FILE)
                rec = record.load(lab)
                if not ready and rec is not None and rec.status == record.READY:
                    ready = True
                    ui.stage("running")
            action = request()
            if action == "finish" and ready:
                return _finish_there(client, node, container, lab, Path(results_dir))
            if action == "stop":
                raise KeyboardInterrupt
            if jobs.node_gone(client, ended.node_id):
                raise LabError(f"lab {lab}: {jobs.node_left(client, ended)}")
            try:
                t = jobs.last_task(client, service.id)
            except jobs.Removed as e:
                raise LabError(f"lab {lab}: {e}") from None
            status = (t or {}).get("Status") or {}
            if status.get("State") in jobs.ENDED:
                said = status.get("Err") or status.get("Message") or ""
                if jobs.node_leaving(client, ended.node_id, status["State"], said):
                    raise LabError(f"lab {lab}: {jobs.node_left(client, ended)}")
                raise LabError(f"lab {lab}: its job ended before it was finished ({status['State']}: {said})")
            time.sleep(MIRROR_EVERY)
    finally:
        jobs.remove(client, lab)
        for f in (PLACEMENT, record.FILE):
            (local / f).unlink(missing_ok=True)
        try:
            local.rmdir()
        except OSError:
            pass


def _finish_there(client, node, container: str, lab: str, into: Path) -> Outcome:
    ui.stage("finishing")
    folder = results.create(into)
    inside = f"results/{into.name}"
    lines, status = jobs.exec_lines(node, container, ["tcplab", "finish", "--lab", lab, "--results", inside],
                                    {"TCPLAB_SHIP_RESULTS": inside, "COLUMNS": "100"})
    receiver = shipping.Receiver()
    for line in lines:
        shown = receiver.feed(line)
        if shown is not None:
            _progress(shown)
    try:
        receiver.unpack(folder)
    except LabError as e:
        results.remove_if_empty(folder)
        raise LabError(f"lab {lab}: `tcplab finish` in its container (exit status {status()}): {e}") from None
    passed = verdict.check_folder(folder)
    return Outcome(EXIT_OK if passed else EXIT_FAILED, folder)


def shell_argv(lab: str, host: str) -> Optional[list[str]]:
    """A shell on a host of a hands-on lab held on a Swarm node: `docker exec` through the node's own
    API (a manager cannot exec into a container on another node); None if the lab is not on the Swarm."""
    try:
        where = json.loads((state_dir(lab) / PLACEMENT).read_text())
    except (OSError, ValueError):
        return None
    return ["docker", *(["-H", where["api"]] if where.get("api") else []), "exec", "-it", where["container"],
            "tcplab", "shell", host, "--lab", lab]
