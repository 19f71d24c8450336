"""A Docker Swarm on this one machine, to try `--engine swarm` without more machines, and to test it.

N Docker daemons of tcplab's own: each in a network namespace and a UTS namespace of the sandbox's
(so each node has its own address and hostname), with its own data root, exec root, socket and
cgroup parent, and neither iptables rules nor a bridge of Docker's. The first is the Swarm's manager,
the others join it as workers over a bridge in the manager's namespace. The machine's own Docker
daemon, its state and its network are never touched.

Why `nsenter` and not `ip netns exec`: the latter remounts /sys, and dockerd then fails with
"Devices cgroup isn't mounted". Each node's Docker API is its socket, recorded as the node label
`tcplab.docker`, which is how tcplab reaches a node's own daemon (lab/swarm/cluster.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..backends.debian import unmount_under
from ..errors import LabError
from ..naming import STATE_ROOT
from ..onhost import procs
from ..ui import step

RUN_ROOT = STATE_ROOT / "swarm-sandbox"  # (a '-' no lab name has: never a lab's state folder)
DATA_ROOT = Path("/var/lib/tcplab/swarm-sandbox")
SUBNET = "10.250.0"
NODE_LABEL = "tcplab.docker"
START_TIMEOUT = 60.0


@dataclass
class Node:
    name: str  # n1, n2, ...: n1 is the manager
    netns: str
    hostname: str
    address: str
    socket: str
    pid: int = 0
    start: int = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def _run(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


def _docker(node: Node, *args: str, timeout: float = 60) -> str:
    try:
        r = subprocess.run(["docker", "-H", node.url, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"docker on sandbox node {node.hostname}: `{' '.join(args)}` took over {timeout:.0f} s") from None
    if r.returncode != 0:
        raise LabError(f"docker on sandbox node {node.hostname}: `{' '.join(args)}` failed: {r.stderr.strip()}")
    return r.stdout.strip()


def record_path(name: str) -> Path:
    return RUN_ROOT / name / "sandbox.json"


def load(name: str) -> list[Node]:
    try:
        return [Node(**n) for n in json.loads(record_path(name).read_text())["nodes"]]
    except FileNotFoundError:
        return []


def _save(name: str, nodes: list[Node]) -> None:
    path = record_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"nodes": [asdict(n) for n in nodes]}, indent=1))
    os.replace(tmp, path)


def names() -> list[str]:
    return sorted(p.name for p in RUN_ROOT.iterdir() if (p / "sandbox.json").exists()) if RUN_ROOT.exists() else []


def up(name: str, count: int) -> list[Node]:
    """Starts the sandbox's daemons and makes them one Swarm; recorded before anything is made, so `down` undoes a half-made one."""
    if not name.isalnum() or len(name) > 8 or not name.islower():
        raise LabError(f"--name {name!r}: up to 8 lower-case letters and digits")
    if not 1 <= count <= 9:
        raise LabError(f"--nodes {count}: 1 to 9")
    if load(name):
        raise LabError(f"sandbox {name} is up already: `invoke swarm down --name {name}` first")
    if shutil.which("dockerd") is None:
        raise LabError("dockerd is missing: `sudo apt-get install -y docker.io` or run ./bootstrap")
    nodes = [Node(f"n{i}", f"tcplabsw-{name}-n{i}", f"tcplab-{name}-n{i}", f"{SUBNET}.{i}",
                  str(RUN_ROOT / name / f"n{i}" / "docker.sock")) for i in range(1, count + 1)]
    _save(name, nodes)
    try:
        _network(nodes)
        for n in nodes:
            _start(name, n, lambda: _save(name, nodes))
        for n in nodes:
            _wait(n)
        _join(nodes)
    except BaseException:
        down(name)
        raise
    return nodes


def _network(nodes: list[Node]) -> None:
    step("network namespaces " + ", ".join(n.netns for n in nodes) + f", a bridge in {nodes[0].netns}")
    for n in nodes:
        _run("ip", "netns", "add", n.netns)
        _run("ip", "-n", n.netns, "link", "set", "lo", "up")
    manager = nodes[0].netns
    _run("ip", "-n", manager, "link", "add", "br0", "type", "bridge")
    _run("ip", "-n", manager, "addr", "add", f"{nodes[0].address}/24", "dev", "br0")
    _run("ip", "-n", manager, "link", "set", "br0", "up")
    for n in nodes[1:]:
        # Both ends made inside the namespaces: no name ever appears in the machine's own.
        _run("ip", "link", "add", "eth0", "netns", n.netns, "type", "veth", "peer", "name", f"to{n.name}", "netns", manager)
        _run("ip", "-n", manager, "link", "set", f"to{n.name}", "master", "br0", "up")
        _run("ip", "-n", n.netns, "addr", "add", f"{n.address}/24", "dev", "eth0")
        _run("ip", "-n", n.netns, "link", "set", "eth0", "up")


def _start(name: str, n: Node, saved: Callable[[], None]) -> None:
    run_dir = RUN_ROOT / name / n.name
    data = DATA_ROOT / name / n.name
    run_dir.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    step(f"dockerd for {n.hostname} in {n.netns} (data {data}, socket {n.socket})")
    argv = ["nsenter", f"--net=/run/netns/{n.netns}", "unshare", "--uts", "sh", "-c",
            'hostname "$0" && exec dockerd "$@"', n.hostname,
            "--data-root", str(data / "docker"), "--exec-root", str(run_dir / "exec"), "-H", n.url,
            "--pidfile", str(run_dir / "docker.pid"), "--iptables=false", "--ip6tables=false", "--bridge=none",
            # cgroupfs, so the parent is a plain cgroup (systemd's driver wants a slice) whose processes are the node's;
            # containerd namespaces of the node's own: where a system containerd runs, dockerd uses it rather than
            # starting its own, and the machine's daemon's containers live in its `moby` namespace.
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", cgroup_parent(name, n),
            "--containerd-namespace", cgroup_parent(name, n), "--containerd-plugins-namespace", f"{cgroup_parent(name, n)}-plugins"]
    with open(run_dir / "dockerd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        # Recorded at once (a Ctrl-C from here on leaves a daemon `down` finds); `sh` execs dockerd, so the PID is the daemon's.
        n.pid = proc.pid
        n.start = procs.start_time(proc.pid) or 0
        saved()


def _wait(n: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "-H", n.url, "version"], capture_output=True).returncode == 0:
            return
        if not procs.same_process(n.pid, n.start):
            break
        time.sleep(0.3)
    log = Path(n.socket).parent / "dockerd.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise LabError(f"dockerd for sandbox node {n.hostname} did not answer: {' '.join(tail) or 'no log'} (log: {log})")


def _join(nodes: list[Node]) -> None:
    manager = nodes[0]
    step(f"swarm init on {manager.hostname}, {len(nodes) - 1} worker(s) joining")
    _docker(manager, "swarm", "init", "--advertise-addr", manager.address, "--listen-addr", f"{manager.address}:2377")
    token = _docker(manager, "swarm", "join-token", "-q", "worker")
    for n in nodes[1:]:
        _docker(n, "swarm", "join", "--token", token, "--advertise-addr", n.address, "--listen-addr", f"{n.address}:2377",
                f"{manager.address}:2377")
    for n in nodes:
        node_id = _docker(n, "info", "--format", "{{.Swarm.NodeID}}")
        _docker(manager, "node", "update", "--label-add", f"{NODE_LABEL}={n.url}", node_id)


def stop_node(name: str, node: str) -> None:
    """Stops one node's daemon at once (SIGKILL), as a machine that goes away: its containers go with it."""
    for n in load(name):
        if n.name == node:
            _kill_daemon(name, n, signal.SIGKILL)
            return
    raise LabError(f"sandbox {name} has no node {node}")


def _kill_daemon(name: str, n: Node, sig: int) -> None:
    """Stops a node's daemon; then what a SIGKILLed dockerd leaves running: its containerd (whose PID
    file is in the daemon's exec root) and its containers' processes (in its cgroup parent). Only
    those: every PID is checked to be the sandbox's before it is signalled."""
    procs.stop(n.pid, n.start, sig, grace=20.0)
    for pid in _leftovers(name, n):
        procs.stop(pid, None, signal.SIGKILL, grace=2.0)


def _leftovers(name: str, n: Node) -> list[int]:
    # Its containerd and the shims name the node's run folder (containerd's config, the shims' socket):
    # found by that, a path of this sandbox's own, rather than by their PID files, since a shim whose
    # container had ended keeps running once its containerd is killed, its bundle (and PID file) gone.
    pids = naming_processes(RUN_ROOT / name / n.name)
    # The node's containers' processes: in its cgroup parent, under cgroup v1's pids controller or v2's one tree.
    for procs_file in [*Path("/sys/fs/cgroup/pids").glob(f"{cgroup_parent(name, n)}/**/cgroup.procs"),
                       *Path("/sys/fs/cgroup").glob(f"{cgroup_parent(name, n)}/**/cgroup.procs")]:
        try:
            pids += [int(line) for line in procs_file.read_text().split()]
        except (OSError, ValueError):
            pass
    return sorted(set(pids))


def naming_processes(path: Path) -> list[int]:
    """PIDs whose command line names `path` (a folder of the sandbox's own), read from /proc."""
    needle = str(path).encode() + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def cgroup_parent(name: str, n: Node) -> str:
    return f"tcplabsw-{name}-{n.name}"


def down(name: str) -> list[str]:
    """Stops the sandbox's daemons, removes their namespaces and folders. Safe to run twice."""
    removed = []
    nodes = load(name)
    for n in nodes:
        if n.pid:
            _kill_daemon(name, n, signal.SIGTERM)
            removed.append(f"dockerd {n.hostname}")
    for n in nodes:
        data = DATA_ROOT / name / n.name
        unmount_under(data)
        unmount_under(RUN_ROOT / name / n.name)
        if subprocess.run(["ip", "netns", "del", n.netns], capture_output=True).returncode == 0:
            removed.append(f"netns {n.netns}")
        made = [*Path("/sys/fs/cgroup").glob(f"*/{cgroup_parent(name, n)}/**/"), *Path("/sys/fs/cgroup").glob(f"{cgroup_parent(name, n)}/**/")]
        for cgroup in sorted(made, key=lambda p: -len(p.parts)):
            try:
                cgroup.rmdir()  # empty now: its processes were stopped above
            except OSError:
                pass
    shutil.rmtree(DATA_ROOT / name, ignore_errors=True)
    shutil.rmtree(RUN_ROOT / name, ignore_errors=True)
    for folder in (RUN_ROOT, DATA_ROOT):
        try:
            folder.rmdir()  # the last sandbox gone: nothing of them left
        except OSError:
            pass
    return removed


def running(n: Node) -> bool:
    return procs.same_process(n.pid, n.start)


OWN_DOCKER = "unix:///var/run/docker.sock"


def is_manager(docker_host: str) -> bool:
    """Whether DOCKER_HOST names a sandbox's manager."""
    return any(load(name)[0].url == docker_host for name in names() if load(name))


def own_daemon():
    """This machine's own Docker daemon (only read from: images are built and saved there)."""
    import docker

    try:
        client = docker.DockerClient(base_url=OWN_DOCKER, timeout=300)
        client.ping()
        return client
    except docker.errors.DockerException as e:
        raise LabError(f"a Swarm sandbox's image is built by this machine's own Docker daemon, which does not answer "
                       f"({str(e).splitlines()[0][:120]}): start it (./bootstrap does)") from None
