"""The Swarm that the local Docker daemon (DOCKER_HOST, or /var/run/docker.sock) belongs to, as
tcplab uses it: its nodes, each node's own Docker API, and the tcplab image on every node.

How the image reaches the nodes: loaded into each node's daemon through that node's own API
(`docker save` here, `docker load` there), not through a registry on the Swarm. Why: a registry that
every node can pull from without trusting it per node needs Swarm's routing mesh (IPVS and iptables
on every node; this build machine's kernel has no IPVS), or else each node's daemon must be told to
trust it (an `insecure-registries` entry or a certificate on every node), which is the same per-node
set-up as naming the node's API; and tcplab needs each node's own API anyway, for hands-on terminals
(a manager cannot `exec` into a container on another node). A node's API is given by its label
`tcplab.docker` (`docker node update --label-add tcplab.docker=ssh://root@node2 node2`; the sandbox of
lab/swarm/sandbox.py sets it); the manager's own node needs none. A node with the image gets the
label `tcplab.image=<tag>`, and labs are constrained to such nodes, so Swarm's scheduler never places
a lab where its image is missing.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import docker
import docker.errors

from .. import ui
from ..backends.docker import images
from ..errors import LabError

API_LABEL = "tcplab.docker"
IMAGE_LABEL = "tcplab.image"


@dataclass
class Node:
    id: str
    hostname: str
    state: str  # ready, down, unknown
    availability: str  # active, pause, drain
    role: str
    api: Optional[str]  # the node's own Docker API, from its label
    image: Optional[str]  # the tcplab image it holds, from its label

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


def manager() -> docker.DockerClient:
    """The local daemon, refused in one line unless it is a manager of an active Swarm."""
    try:
        client = docker.from_env(timeout=120)
        info = client.info()
    except docker.errors.DockerException as e:
        raise LabError(f"--engine swarm: no Docker daemon answers ({str(e).splitlines()[0][:160]}): start one, "
                       "or set DOCKER_HOST to a Swarm manager's") from None
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise LabError("--engine swarm: this Docker daemon is not part of a Swarm: `docker swarm init` (and `docker swarm join` "
                       "on the other machines), or `invoke swarm up` for a Swarm on this machine alone")
    if not swarm.get("ControlAvailable"):
        raise LabError("--engine swarm: this Docker daemon is a Swarm worker; labs are placed from a manager: run tcplab "
                       "on a manager node, or set DOCKER_HOST to a manager's")
    return client


def local_node_id(client: docker.DockerClient) -> str:
    return client.info()["Swarm"]["NodeID"]


def nodes(client: docker.DockerClient) -> list[Node]:
    out = []
    for n in client.nodes.list():
        a = n.attrs
        labels = (a.get("Spec") or {}).get("Labels") or {}
        out.append(Node(n.id, a["Description"]["Hostname"], a["Status"]["State"], a["Spec"].get("Availability", "active"),
                        a["Spec"].get("Role", "worker"), labels.get(API_LABEL), labels.get(IMAGE_LABEL)))
    return out


def node_client(client: docker.DockerClient, node: Node) -> Optional[docker.DockerClient]:
    """The node's own daemon: through its label, or the local one for the manager's own node."""
    if node.api:
        return docker.DockerClient(base_url=node.api, timeout=300)
    return client if node.id == local_node_id(client) else None


def image_everywhere(client: docker.DockerClient, tag: str, source: Optional[docker.DockerClient] = None) -> list[Node]:
    """Loads the image `tag` (from `source`, the local daemon by default) on every usable node
    that lacks it, all nodes at once, and labels each node that has it; the nodes labs can go to."""
    source = source or client
    usable = [node for node in nodes(client) if node.usable]
    # One thread a node: a load is the node's daemon unpacking layers, so a class's ten nodes take
    # about as long as one.
    with ThreadPoolExecutor(max_workers=max(1, min(len(usable), LOADS_AT_ONCE))) as pool:
        ready = [node for node, ok in zip(usable, pool.map(lambda n: _load(client, source, n, tag), usable)) if ok]
    if not ready:
        raise LabError("--engine swarm: no node of the Swarm can run labs (none ready and active with the tcplab image); "
                       "`docker node ls` shows them")
    return ready


LOADS_AT_ONCE = 8


def _load(client: docker.DockerClient, source: docker.DockerClient, node: Node, tag: str) -> bool:
    """The image on one node, and the node labelled with it; False (with a warning) where it cannot be."""
    try:
        c = node_client(client, node)
        if c is None:
            ui.warn(f"node {node.hostname} has no {API_LABEL} label naming its Docker API, so the tcplab image cannot be "
                    f"loaded there and no lab goes to it: `docker node update --label-add {API_LABEL}=ssh://root@{node.hostname} {node.id[:12]}`")
            return False
        if not images.exists(c, tag):
            ui.step(f"loading {tag} on node {node.hostname} (a few seconds per 100 MB)")
            c.images.load(source.images.get(tag).save(chunk_size=1 << 20, named=True))  # named: the tag goes along
            images.drop_older(c, tag.partition(":")[0], tag)
    except docker.errors.DockerException as e:
        ui.warn(f"node {node.hostname}: its Docker API ({node.api or 'the local daemon'}) does not take {tag} "
                f"({str(e).splitlines()[0][:160]}); no lab goes to it")
        return False
    if node.image != tag:
        _label(client, node.id, tag)
    return True


def _label(client: docker.DockerClient, node_id: str, tag: str) -> None:
    for _ in range(5):  # the node's spec version moves under concurrent updates: read again and retry
        node = client.nodes.get(node_id)
        spec = dict(node.attrs["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), IMAGE_LABEL: tag}
        try:
            node.update(spec)
            return
        except docker.errors.APIError as e:
            if "update out of sequence" not in str(e):
                raise
