"""One lab as a Swarm job: `docker service create --mode replicated-job` of the tcplab image running
`tcplab up …` on the netns backend, placed by Swarm's scheduler on a node that holds the image, with
the capabilities namespaces need and a reservation so a node is not overfilled; its output followed
through the service's logs (progress shown as it comes, the results folder unpacked at the end);
removed when it ends, whether it passed, failed, or its node left the Swarm.
"""
from __future__ import annotations

import io
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import docker
import docker.errors
from docker.types import Resources, RestartPolicy, ServiceMode

from .. import ui
from ..errors import LabError
from . import cluster, shipping

LAB_LABEL = "tcplab.lab"
# On the job's container: not tcplab.lab, which the Docker backend's own hosts carry on a node's daemon.
JOB_LABEL = "tcplab.job"
# Which machine placed the job, so `invoke down --all` there removes its own labs, not another machine's.
OWNER_LABEL = "tcplab.placed-from"
PLACING_TIMEOUT = 180.0  # seconds a job may wait for a node before the lab is failed with Swarm's reason
WAITING = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
CAPABILITIES = ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
# What a lab reserves on its node: a tenth of a core and 200 MB, so that Swarm spreads a class over
# the nodes rather than piling it on the first (a lab uses about that while it runs; see README).
CPU_RESERVATION = 0.1
MEMORY_RESERVATION = 200 * 1024 * 1024
ENDED = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
RESULTS_GRACE = 15.0  # seconds, after the task ended, for the last of its logs to arrive
NODE_GONE = {"down", "unknown", "disconnected"}
NODE_SETTLE = 30.0  # seconds a job's task, ended without a word from tcplab, waits for its node to be called down


def service_name(lab: str) -> str:
    return f"tcplab-{lab}"


def owner() -> str:
    return socket.gethostname()


@dataclass
class Ended:
    """How a job ended: its node, the task's last state and message, and the folder if it came back."""

    node_id: str = ""
    node_hostname: str = ""
    state: str = ""
    message: str = ""
    folder: Optional[Path] = None
    failure: str = ""
    shown: list[str] = field(default_factory=list)


def create(client: docker.DockerClient, tag: str, lab: str, args: list[str], env: Sequence[str] = ()):
    """Lab `lab`'s job, created: `tcplab ARGS` in the image `tag`, placed by Swarm's scheduler. Refused
    while a job of the same lab runs (another `up --lab` of that name, here or on another machine)."""
    for s in client.services.list(filters={"label": f"{LAB_LABEL}={lab}"}):
        t = last_task(client, s.id)
        if t is None or (t.get("Status") or {}).get("State") not in ENDED:
            raise LabError(f"lab {lab} runs on the Swarm already (service {s.name}, placed from "
                           f"{(s.attrs['Spec'].get('Labels') or {}).get(OWNER_LABEL, '?')}): give another --lab, "
                           f"or `invoke down --lab {lab}` to remove it")
    remove(client, lab)  # an ended job of the same lab, left by a killed run
    return client.services.create(
        tag, args=args, name=service_name(lab),
        labels={LAB_LABEL: lab, OWNER_LABEL: owner()}, container_labels={JOB_LABEL: lab},
        env=["TCPLAB_SWARM_NODE_ID={{.Node.ID}}", "TCPLAB_SWARM_NODE_HOSTNAME={{.Node.Hostname}}", "COLUMNS=100", *env],
        cap_add=CAPABILITIES, mode=ServiceMode("replicated-job", replicas=1, concurrency=1),
        restart_policy=RestartPolicy(condition="none", max_attempts=0),
        resources=Resources(cpu_reservation=int(CPU_RESERVATION * 1e9), mem_reservation=MEMORY_RESERVATION),
        constraints=[f"node.labels.{cluster.IMAGE_LABEL}=={tag}"])


def run(client: docker.DockerClient, tag: str, lab: str, args: list[str], into: Path,
        show: Callable[[str], None] = ui.relay, stop: Callable[[], bool] = lambda: False) -> Ended:
    """Runs `tcplab ARGS` as lab `lab`'s job and unpacks its results folder into `into`."""
    folder_in_container = f"results/{into.name}"
    service = create(client, tag, lab, [*args, "--results", folder_in_container], [f"TCPLAB_SHIP_RESULTS={folder_in_container}"])
    ended = Ended()
    receiver = shipping.Receiver()
    done_reading = threading.Event()
    started = time.monotonic()

    def read() -> None:
        try:
            stream = client.api.service_logs(service.id, follow=True, stdout=True, stderr=True)
            for line in shipping.lines(stream):
                shown = receiver.feed(line)
                if shown is not None:
                    show(shown)
                    if shown.startswith("error:"):
                        ended.shown.append(shown[len("error:"):].strip())
                if receiver.complete:
                    break
        except (docker.errors.DockerException, OSError, ValueError):
            pass  # the service went (removed, or its node with it): what came is judged below
        finally:
            done_reading.set()

    reader = threading.Thread(target=read, name=f"logs-{lab}", daemon=True)
    reader.start()
    try:
        ended_at = None
        while True:
            try:
                task = last_task(client, service.id)
            except Removed as e:
                ended.failure = str(e)
                break
            if task is not None:
                ended.node_id = task.get("NodeID") or ended.node_id
                status = task.get("Status") or {}
                ended.state = status.get("State", "")
                ended.message = status.get("Err") or status.get("Message") or ""
                if ended.node_id and not ended.node_hostname:
                    ended.node_hostname = hostname(client, ended.node_id)
                if ended.state in ENDED and ended_at is None:
                    ended_at = time.monotonic()
                if ended.state in WAITING and ended.state != "starting" and time.monotonic() - started > PLACING_TIMEOUT:
                    ended.failure = (f"Swarm placed the lab on no node in {PLACING_TIMEOUT:.0f} s ({ended.state}: "
                                     f"{ended.message or 'no reason given'}): `docker node ls` shows the nodes")
                    break
                if ended.node_id and ended.state not in ENDED and node_gone(client, ended.node_id):
                    ended.failure = node_left(client, ended)
                    break
            if receiver.complete or done_reading.is_set() and ended_at is not None:
                break
            if ended_at is not None and time.monotonic() - ended_at > RESULTS_GRACE:
                break
            if stop():
                ended.failure = "stopped"
                break
            time.sleep(1.0)  # forty labs polling the manager must not load it
        done_reading.wait(2)
        if not ended.failure:
            if receiver.complete:
                receiver.unpack(into)
                ended.folder = into
            elif not ended.shown and ended.node_id and node_leaving(client, ended.node_id, ended.state, ended.message):
                ended.failure = node_left(client, ended)
            else:
                said = f": {ended.shown[-1]}" if ended.shown else ""
                ended.failure = (f"the lab's job ended ({ended.state}{': ' + ended.message if ended.message else ''}) "
                                 f"on node {ended.node_hostname or '?'} without sending its results back{said}")
    finally:
        remove(client, lab)
    return ended


def node_left(client: docker.DockerClient, ended: Ended) -> str:
    return (f"node {ended.node_hostname or ended.node_id[:12]} left the Swarm mid-lab (its state: {_node_state(client, ended.node_id)}); "
            f"start the lab again and Swarm places it elsewhere")


class Removed(LabError):
    """The job's service is gone: removed by someone else (`invoke down`) while this one followed it."""


def last_task(client: docker.DockerClient, service_id: str) -> Optional[dict]:
    """The service's newest task (None while it has none, or the manager did not answer this time)."""
    try:
        tasks = client.api.tasks(filters={"service": service_id})
    except docker.errors.NotFound:
        raise Removed("its job was removed from the Swarm meanwhile (`invoke down`?)") from None
    except docker.errors.APIError:
        return None
    return max(tasks, key=lambda t: t.get("CreatedAt", "")) if tasks else None


def _node_state(client: docker.DockerClient, node_id: str) -> str:
    try:
        return client.nodes.get(node_id).attrs["Status"]["State"]
    except docker.errors.DockerException:
        return "gone"


def node_gone(client: docker.DockerClient, node_id: str) -> bool:
    return _node_state(client, node_id) in NODE_GONE | {"gone"}


def node_leaving(client: docker.DockerClient, node_id: str, state: str, message: str) -> bool:
    """Whether the node of a task that ended so is gone, or goes within NODE_SETTLE seconds where the
    task's end is how a node's loss first shows: a node whose daemon died may have its task rejected
    ("assigned node no longer meets constraints") or orphaned before the manager, which waits some
    heartbeats, calls the node down. Any other end is told as it is, at once."""
    if state in ("complete", "failed"):
        return False  # the lab's own program ended it
    losing = state == "orphaned" or "no longer meets constraints" in message
    deadline = time.monotonic() + (NODE_SETTLE if losing else 0.0)
    while not node_gone(client, node_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)
    return True


def hostname(client: docker.DockerClient, node_id: str) -> str:
    try:
        return client.nodes.get(node_id).attrs["Description"]["Hostname"]
    except docker.errors.DockerException:
        return ""


def remove(client: docker.DockerClient, lab: Optional[str] = None) -> list[str]:
    """Removes lab `lab`'s job (every lab's with None), and its ended containers on the nodes, which
    Swarm leaves behind for a while after a job's service is removed; the names of the services."""
    label = f"{LAB_LABEL}={lab}" if lab else LAB_LABEL
    gone = []
    for s in client.services.list(filters={"label": label}):
        try:
            s.remove()
            gone.append(s.name)
        except docker.errors.NotFound:
            pass
    if gone:
        _remove_containers(client, lab)
    return gone


def _remove_containers(client: docker.DockerClient, lab: Optional[str]) -> None:
    label = f"{JOB_LABEL}={lab}" if lab else JOB_LABEL
    for node in cluster.nodes(client):
        if node.state != "ready":
            continue  # a node that is down takes its containers with it
        try:
            c = cluster.node_client(client, node)
            for container in c.containers.list(all=True, filters={"label": label}) if c else []:
                container.remove(force=True)
        except docker.errors.DockerException:
            pass  # gone meanwhile, or the node's API does not answer: Swarm removes them in its own time


def placed(client: docker.DockerClient, service_id: str, timeout: float = 120) -> tuple[Ended, Optional[str]]:
    """Waits until the job's task runs: where (its node), and its container's ID; or how it ended first."""
    ended = Ended()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = last_task(client, service_id)
        if t is not None:
            status = t.get("Status") or {}
            ended.node_id = t.get("NodeID") or ""
            ended.state = status.get("State", "")
            ended.message = status.get("Err") or status.get("Message") or ""
            container = (status.get("ContainerStatus") or {}).get("ContainerID")
            if ended.state == "running" and container:
                ended.node_hostname = hostname(client, ended.node_id)
                return ended, container
            if ended.state in ENDED:
                ended.failure = f"the lab's job ended ({ended.state}: {ended.message}) before it ran"
                return ended, None
        time.sleep(0.3)
    ended.failure = f"the lab's job was not running after {timeout:.0f} s ({ended.state or 'no task'}: {ended.message})"
    return ended, None


def node_api(client: docker.DockerClient, node_id: str) -> Optional[str]:
    """The Docker API of a node, as a `docker -H` takes it (None for the local daemon)."""
    node = next((n for n in cluster.nodes(client) if n.id == node_id), None)
    return node.api if node else None


READ_LIMIT = 4 * 10**6


def read_file(c: docker.DockerClient, container: str, path: str) -> Optional[bytes]:
    """One file of a running container, through its node's API; None if it is not there (yet)."""
    try:
        stream, stat = c.api.get_archive(container, path)
        if stat.get("size", 0) > READ_LIMIT:
            return None  # a record made huge in the container is not read (the lab then shows no progress)
        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            f = tar.extractfile(member) if member is not None and member.isfile() else None
            return f.read(READ_LIMIT) if f is not None else None
    except (docker.errors.DockerException, tarfile.TarError, OSError, KeyError):
        return None


def exec_lines(c: docker.DockerClient, container: str, argv: list[str], env: dict[str, str]) -> tuple[Iterable[str], Callable[[], int]]:
    """A command run in the container, through its node's API: its output's lines, and then its exit status."""
    exec_id = c.api.exec_create(container, argv, environment=env, stdout=True, stderr=True)["Id"]
    stream = c.api.exec_start(exec_id, stream=True)
    return shipping.lines(stream), lambda: c.api.exec_inspect(exec_id).get("ExitCode") or 0
