"""Docker backend: each host is a container of the lab's own, wired like the namespace backend.

Containers start with no Docker networking (`--network none`); their network namespaces are linked
under /run/netns, as containerlab does, and the same wiring code builds the observer's bridge and the
veths. So the observer sees every frame exactly as on namespaces, no Docker network or iptables rule
is involved, and two labs reuse the same addresses without meeting. Docker's own networks would put
the bridge in the root namespace, where Docker's FORWARD policy drops bridged frames on many machines.

Programs run with `docker exec`, so they have the container's capabilities only (NET_ADMIN and
NET_RAW, never --privileged). The exercises folder is mounted read-only and the lab's work folder
read-write, both at the same paths as on this machine, so edits need no rebuild and logs are local.

Every call to the Docker API goes through `api()`, which turns the SDK's errors into one line. Labs
run side by side: lists of containers come from the API's list call alone (the SDK's high-level
list inspects each container after listing it, and fails when another lab removes one meanwhile).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Optional, Sequence

import docker
import docker.errors
import requests

from ... import ui
from ...errors import CommandError, LabError
from ...naming import netns_name, netns_prefix
from ...onhost import procs
from ...spec.exercise import EXERCISE_DIR
from ...spec.topology import Topology
from .. import wiring
from ..base import ONHOST_DIR, Backend, LocalFiles, Process
from ..labstate import LabState
from . import images

NETNS_DIR = Path("/run/netns")
LAB_LABEL, NODE_LABEL = "tcplab.lab", "tcplab.node"
PIDS_LIMIT = 512  # processes in one host container
MEM_LIMIT = "1g"  # memory of one host container
API_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def client() -> docker.DockerClient:
    """A Docker client, or one line saying what is missing and how to fix it."""
    try:
        c = docker.from_env(timeout=30)
        c.ping()
        return c
    except API_ERRORS:
        if shutil.which("dockerd") is None:
            raise LabError("Docker is not installed: `sudo apt-get install -y docker.io` (./bootstrap does it), or use --backend netns") from None
        raise LabError("Docker is not running: start it with `sudo systemctl start docker` (./bootstrap starts it), or use --backend netns") from None


@contextlib.contextmanager
def api(what: str) -> Iterator[None]:
    """A Docker API call whose failure is one line naming what was being done."""
    try:
        yield
    except docker.errors.APIError as e:
        raise LabError(f"Docker: {what}: {e.explanation or e}") from None
    except API_ERRORS as e:
        raise LabError(f"Docker: {what}: {e}") from None


def lab_containers(c: docker.DockerClient, lab: Optional[str] = None) -> list[dict]:
    """The containers of one lab (or of every lab), as the API lists them: {Id, Names, Labels, ...}."""
    with api("list the lab's containers"):
        return c.api.containers(all=True, filters={"label": f"{LAB_LABEL}={lab}" if lab else LAB_LABEL})


def container_name(entry: dict) -> str:
    return (entry.get("Names") or ["/?"])[0].lstrip("/")


class DockerProcess(Process):
    def __init__(self, calls: docker.APIClient, exec_id: str, pid: int, name: str, host: str, stdout: str, stderr: str):
        super().__init__(name, host, pid, stdout, stderr)
        self.calls, self.exec_id = calls, exec_id
        self.start = procs.start_time(pid)
        self._status: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self._status is None:
            try:
                info = self.calls.exec_inspect(self.exec_id)
            except docker.errors.NotFound:
                self._status = -9  # its container was removed: the program is gone with it
                return self._status
            except API_ERRORS as e:
                raise LabError(f"Docker: look at {self.name} on {self.host}: {e}") from None
            if not info["Running"]:
                self._status = info["ExitCode"]
        return self._status

    def signal(self, sig: int) -> None:
        # The container's processes are visible from this machine's PID namespace: signal directly.
        if self.poll() is None and procs.same_process(self.pid, self.start):
            os.kill(self.pid, sig)


class DockerBackend(LocalFiles, Backend):
    name = "docker"
    required_tools = {"ip": "iproute2", "ethtool": "ethtool"}  # the wiring runs from this machine

    def __init__(self, lab: str, image: Optional[str] = None):
        super().__init__(lab)
        self._client = None
        self.image = image  # default: the host image, built if need be
        self.run_options: dict = {}  # extra `containers.run` arguments (the SSH tests' stand-in VMs)

    @property
    def client(self):
        if self._client is None:
            self._client = client()
        return self._client

    def check_environment(self) -> None:
        self.client  # noqa: B018  (connects, or says how to fix it)

    def container(self, host: str) -> str:
        return netns_name(self.lab, host)

    def create(self, topology: Topology, state: LabState) -> None:
        image = self.image or images.ensure(self.client)
        names = {node: self.container(node) for node in topology.nodes}
        taken = {container_name(c) for c in lab_containers(self.client)}
        for name in names.values():
            if name in taken or (NETNS_DIR / name).exists():
                raise LabError(f"container or namespace {name} already exists: `invoke down --lab {self.lab}` removes it, or choose another --lab")
        for name in names.values():
            state.add_container(name)
        ui.step(f"starting {len(names)} containers from {image}")
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            started = list(pool.map(lambda item: self._start(image, *item), names.items()))
        for node, container in zip(names, started):
            with api(f"look at container {names[node]}"):
                container.reload()
            pid = container.attrs["State"]["Pid"]
            state.add_namespace(names[node])
            NETNS_DIR.mkdir(parents=True, exist_ok=True)
            os.symlink(f"/proc/{pid}/ns/net", NETNS_DIR / names[node])
        wiring.wire(topology, self.container, self.lab)

    def _start(self, image: str, node: str, name: str):
        mounts = {str(EXERCISE_DIR): {"bind": str(EXERCISE_DIR), "mode": "ro"},
                  str(ONHOST_DIR): {"bind": str(ONHOST_DIR), "mode": "ro"}}  # the lab's own host-side programs
        for extra in self.share:
            mounts[str(extra)] = {"bind": str(extra), "mode": "ro"}
        work = self.work_dir(node)
        mounts[str(work)] = {"bind": str(work), "mode": "rw"}
        with api(f"start container {name} from {image}"):
            return self.client.containers.run(
                image, ["sleep", "infinity"], name=name, hostname=node, detach=True, init=True,
                network_mode="none", volumes=mounts,
                # /proc/sys is read-only inside a container: sysctls are given at creation, as Docker allows.
                sysctls=self.sysctls.get(node) or None,
                labels={LAB_LABEL: self.lab, NODE_LABEL: node},
                # Bounds for a host whose shell a person has (the lab server's students): a fork bomb or a runaway
                # program stops at its own container, not at the machine every other lab runs on.
                **{"cap_add": ["NET_ADMIN", "NET_RAW"], "pids_limit": PIDS_LIMIT, "mem_limit": MEM_LIMIT, **self.run_options},
            )

    def destroy(self, state: LabState) -> list[str]:
        removed = []
        try:
            found = lab_containers(self.client, self.lab)
        except LabError:
            found = []  # no Docker: nothing of this lab can be running in it
        with ThreadPoolExecutor(max_workers=max(1, len(found))) as pool:
            gone = list(pool.map(self._remove, found))
        removed += [f"container {container_name(c)}" for c, ok in zip(found, gone) if ok]
        links = state.namespaces if state.namespaces is not None else [p.name for p in NETNS_DIR.glob(netns_prefix(self.lab) + "*")]
        for name in links:
            link = NETNS_DIR / name
            if link.is_symlink():  # only the links this backend made; a real namespace is not ours to remove here
                link.unlink()
                removed.append(f"namespace link {name}")
        return removed

    def _remove(self, entry: dict) -> bool:
        try:
            self.client.api.remove_container(entry["Id"], force=True)
        except docker.errors.NotFound:
            return False  # removed meanwhile (a `down` racing this one)
        except API_ERRORS as e:
            raise LabError(f"Docker: remove container {container_name(entry)}: {e}") from None
        return True

    def _get(self, host: str):
        try:
            return self.client.containers.get(self.container(host))
        except docker.errors.NotFound:
            raise LabError(f"container {self.container(host)} is gone: was it removed while the lab ran?") from None
        except API_ERRORS as e:
            raise LabError(f"Docker: look at container {self.container(host)}: {e}") from None

    def run(self, host: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        # coreutils' timeout inside the container: the Docker API's exec has none of its own.
        container = self._get(host)
        with api(f"run `{' '.join(argv)}` on {host}"):
            code, (out, err) = container.exec_run(["timeout", str(max(1, int(timeout))), *argv], demux=True)
        out, err = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
        if code == 124:
            raise LabError(f"on {host}: `{' '.join(argv)}` did not finish within {timeout:g} s")
        if check and code != 0:
            raise CommandError(host, argv, code, err)
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def spawn(self, host: str, name: str, argv: Sequence[str], state: LabState) -> Process:
        out, err = self.work_path(host, f"{name}.log"), self.work_path(host, f"{name}.err")
        calls = self.client.api
        # The program's arguments travel as positional parameters, never through the shell's parser.
        cmd = ["sh", "-c", 'exec "$@" >"$TCPLAB_OUT" 2>"$TCPLAB_ERR"', "sh", *argv]
        deadline = time.monotonic() + 10
        pid = 0
        with api(f"start {name} on {host}"):
            exec_id = calls.exec_create(self.container(host), cmd, environment={"TCPLAB_OUT": out, "TCPLAB_ERR": err})["Id"]
            calls.exec_start(exec_id, detach=True)
            while not pid and time.monotonic() < deadline:
                pid = calls.exec_inspect(exec_id).get("Pid") or 0
                if not pid:
                    time.sleep(0.01)
        if not pid:
            raise LabError(f"on {host}: {name} did not start")
        state.add_process(pid, procs.start_time(pid), host, name)
        return DockerProcess(calls, exec_id, pid, name, host, out, err)

    def python(self, host: str, script: Path) -> list[str]:
        return ["python3", "-u", str(script)]

    def onhost(self, host: str, name: str) -> list[str]:
        return ["python3", str(ONHOST_DIR / name)]  # lab/onhost is mounted at the same path

    def shell(self, host: str, cwd: str, env: dict[str, str], line: Optional[str] = None) -> int:
        # The docker CLI, not the SDK: it gives the container's shell this terminal, resizing and all.
        if shutil.which("docker") is None:
            raise LabError("the docker command is missing, which a shell in a container needs: `sudo apt-get install -y docker.io`")
        tty = line is None and sys.stdin.isatty()
        command = ["bash", "-c", line] if line is not None else ["bash", "--noprofile", "--norc", "-i"]
        return subprocess.call(self._exec_argv(host, cwd, env, command, tty))

    def shell_argv(self, host: str, cwd: str, env: dict[str, str]) -> tuple[list[str], Optional[str], dict[str, str]]:
        return self._exec_argv(host, cwd, env, ["bash", "--noprofile", "--norc", "-i"], tty=True), None, {}

    def _exec_argv(self, host: str, cwd: str, env: dict[str, str], command: list[str], tty: bool) -> list[str]:
        variables = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        return ["docker", "exec", "-i", *(["-t"] if tty else []), "-w", cwd, *variables, self.container(host), *command]


def lab_names() -> list[str]:
    """Labs with containers in Docker, for `status` and `down --all`; none when Docker is absent."""
    try:
        return sorted({(c.get("Labels") or {}).get(LAB_LABEL, "") for c in lab_containers(client())} - {""})
    except LabError:
        return []



