"""The backend interface: how hosts are created, reached, and removed.

A backend turns a topology into hosts (network namespaces, containers, machines over SSH), runs
commands and programs on them, moves files back, and undoes everything from the lab's state alone.
The timeline and the checks never know which backend they run on.
"""
from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Optional, Protocol, Sequence

from ..errors import LabError
from ..naming import netem_probe_interface, netns_prefix, state_dir
from ..onhost import sysinfo
from ..spec.exercise import EXERCISE_DIR, Exercise, required_tools
from ..spec.topology import Topology
from .labstate import LabState
from .localtrace import StateTrace


ONHOST_DIR = Path(sysinfo.__file__).resolve().parent  # lab/onhost: the programs that run on hosts
READ_AT_MOST = 64 << 20  # bytes one read of a host file returns (a growing capture is read on from where it ended)


class StateTracer(Protocol):
    """What traces TCP state changes for the trace_states step (lab/backends/localtrace.py, or the SSH agent's)."""

    def start(self, port: int) -> dict:
        """Starts tracing; returns the manifest's state_trace."""

    def stop(self, folder: Path) -> list[Path]:
        """Stops tracing; returns the trace files written into the results folder."""


class Process(ABC):
    """A program started on a host; its stdout and stderr go to files on that host."""

    def __init__(self, name: str, host: str, pid: int, stdout: str, stderr: str):
        self.name, self.host, self.pid, self.stdout, self.stderr = name, host, pid, stdout, stderr

    @abstractmethod
    def poll(self) -> Optional[int]:
        """The exit status, or None while it runs."""

    @abstractmethod
    def signal(self, sig: int) -> None:
        ...


class Backend(ABC):
    name: ClassVar[str]
    # Commands that must exist where the backend runs (checked before anything is created).
    required_tools: ClassVar[dict[str, str]] = {}
    # Hosts made on this machine: `up` needs root here, and the exercise's tools here.
    local: ClassVar[bool] = True
    # Where a delay or loss is applied (lab/run/impairments.py): "bridge", on the observer's bridge
    # ports, or "egress", on the sending host's own data-plane interface (machines of one's own,
    # whose bridge, if any, the inventory does not describe).
    impairs_at: ClassVar[str] = "bridge"

    def __init__(self, lab: str):
        self.lab = lab
        # Folders the hosts must see at the same path (the exercise's own, when it lives outside exercises/).
        self.share: list[Path] = []
        # Per-host sysctls the exercise needs, applied when the hosts are created.
        self.sysctls: dict[str, dict[str, str]] = {}
        # Commands the exercise's steps need on the hosts (command -> Debian package).
        self.tools: dict[str, str] = {}

    def addresses(self) -> dict[str, str]:
        """Host addresses that replace the topology's (the SSH backend's machines have their own)."""
        return {}

    def prepare(self, ex: Exercise) -> None:
        """Takes what the exercise needs from its hosts; raises LabError if this backend cannot give it."""
        self.share += [d for d in ex.dirs if d.parent != EXERCISE_DIR and d not in self.share]
        self.sysctls = ex.sysctls
        self.tools = required_tools(ex)

    def needs_also(self, other: "Backend") -> None:
        """Takes on what another run's exercise needs (a sweep's later values), so check_environment
        checks it before the first run."""
        self.tools = {**other.tools, **self.tools}

    @abstractmethod
    def check_environment(self) -> None:
        """Raises LabError, in one line with the fix, if this backend cannot run here."""

    @abstractmethod
    def create(self, topology: Topology, state: LabState) -> None:
        """Creates every host and link; records each resource in `state` before making it."""

    @abstractmethod
    def destroy(self, state: LabState) -> list[str]:
        """Removes everything `state` records, and anything else named after the lab; idempotent."""

    @abstractmethod
    def run(self, host: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Runs a short command on a host and returns its output (text)."""

    @abstractmethod
    def spawn(self, host: str, name: str, argv: Sequence[str], state: LabState) -> Process:
        """Starts a long-running program; stdout and stderr go to `<name>.log` and `<name>.err` in the host's work dir."""

    @abstractmethod
    def work_path(self, host: str, filename: str) -> str:
        """Where on the host a file of this lab lives (captures, logs)."""

    @abstractmethod
    def read_file(self, host: str, path: str, offset: int = 0) -> bytes:
        """The bytes of a host file from `offset` on; empty if it does not exist yet."""

    @abstractmethod
    def fetch(self, host: str, path: str, local: Path) -> None:
        """Copies a host file to the local results folder."""

    @abstractmethod
    def python(self, host: str, script: Path) -> list[str]:
        """The argv that runs an exercise's Python script on the host."""

    def host_names(self, topology: Topology) -> list[str]:
        """The hosts this backend gives the exercise."""
        return list(topology.nodes)

    # --- hands-on mode: a person at a shell on the hosts ---------------------------------------------

    def student_dir(self, host: str) -> str:
        """The folder on the host where the person works: the exercise's programs, and their captures."""
        return self.work_path(host, "work")

    def events_dir(self, host: str) -> str:
        """Where programs started from the person's shell write their JSON events (TCPLAB_EVENTS)."""
        return self.work_path(host, "events")

    @abstractmethod
    def install(self, host: str, files: dict[str, bytes]) -> None:
        """Writes files into the host's student folder (making it and the events folder), scripts executable."""

    @abstractmethod
    def onhost(self, host: str, name: str) -> list[str]:
        """The argv that runs one of lab/onhost's programs on the host (`handson.py`, say)."""

    @abstractmethod
    def shell(self, host: str, cwd: str, env: dict[str, str], line: Optional[str] = None) -> int:
        """An interactive root shell on the host in `cwd` with `env` added (or, with `line`, that one
        command line run there), on this terminal; returns its exit status."""

    def shell_argv(self, host: str, cwd: str, env: dict[str, str]) -> Optional[tuple[list[str], Optional[str], dict[str, str]]]:
        """What `shell` runs for an interactive shell, as (argv, the folder to run it in here, the
        environment to add), for a terminal that is not this process's own (the lab server's ptys);
        None where the shell is not a local command (over SSH, it is a channel of ours)."""
        return None

    def interfaces(self, topology: Topology) -> dict[str, str]:
        """Each host's data-plane interface: the topology's first with an address (a machine's own over SSH)."""
        return {n.name: next((i.name for i in n.interfaces.values() if i.ipv4), next(iter(n.interfaces), ""))
                for n in topology.nodes.values()}

    def capture_targets(self, host: str, interface: str) -> list[tuple[str, str]]:
        """Where a capture the exercise asks for on host:interface runs, as (host, interface) pairs."""
        return [(host, interface)]

    def facts(self, host: str) -> dict:
        """The kernel (with HZ, which the timer checks need) and tool versions of a host."""
        return {"kernel": sysinfo.kernel(), "tools": sysinfo.tool_versions()}

    def state_tracer(self, state: LabState) -> StateTracer:
        """What traces TCP state changes for the trace_states step. Here, the kernel this machine's hosts share."""
        return StateTrace(self.lab, state)

    def describe(self) -> dict:
        """Extra manifest fields that say where the hosts were."""
        return {}

    def keep_hint(self) -> str:
        """How to look around a lab left up with --keep."""
        return f"`ip netns exec {netns_prefix(self.lab)}source bash` to look around"

    def close(self) -> None:
        """Releases connections; the lab stays as it is."""

    # Firewall: one chain of the lab's own per host, jumped to from INPUT and OUTPUT, so that removing
    # the chain removes every rule the lab added and nothing else.
    def firewall_drop(self, host: str, chain: str, protocol: str, port: int) -> list[list[str]]:
        """Drops every packet to or from `port` on the host, in both directions. Returns the commands run."""
        commands = self._ensure_chain(host, chain)
        p = str(port)
        drops = [["iptables", "-w", "-A", chain, "-p", protocol, side, p, "-j", "DROP"] for side in ("--dport", "--sport")]
        for argv in drops:
            self.run(host, argv)
        return commands + drops

    def forget_connections(self, host: str, chain: str, port: int) -> tuple[list[list[str]], int]:
        """Destroys the host's established TCP sockets of `port` (local side) without a packet leaving:
        the RST that tcp_abort sends is dropped on the way out. Returns the commands run and how many
        sockets were destroyed."""
        self._ensure_chain(host, chain)
        drop = ["-p", "tcp", "--sport", str(port), "-j", "DROP"]
        listed = ["ss", "-H", "-tn", "state", "established", f"( sport = :{port} )"]
        commands = [["iptables", "-w", "-I", chain, *drop], ["ss", "-K", "-tn", "state", "established", f"( sport = :{port} )"],
                    ["iptables", "-w", "-D", chain, *drop]]
        insert, kill, undo = (shlex.join(c) for c in commands)
        # One shell on the host: the sockets go within one command (a container's exec takes a tenth of a
        # second, and the peer's keepalive may be due soon), and the drop is lifted whatever `ss -K` did.
        mark = "--tcplab-forget--"
        script = (f"{shlex.join(listed)}; echo {mark}; {insert} || exit 3; {kill} >/dev/null; rc=$?; {undo} || rc=4; "
                  f"echo {mark}; {shlex.join(listed)}; exit $rc")
        r = self.run(host, ["sh", "-c", script], check=False)
        parts = r.stdout.split(mark)
        if r.returncode != 0 or len(parts) != 3:
            detail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit status {r.returncode}"
            raise LabError(f"on {host}: forgetting the connections of port {port} (`{insert}; {kill}; {undo}`) failed: {detail}")
        before, after = (p.strip().splitlines() for p in (parts[0], parts[2]))
        if after:
            raise LabError(f"`ss -K` left {len(after)} connection(s) of port {port} on {host}: its kernel cannot destroy sockets "
                           "(CONFIG_INET_DIAG_DESTROY), or the host lacks CAP_NET_ADMIN in its network namespace; use a kernel "
                           "with it, and a host that may manage its own network")
        return commands, len(before)

    def _ensure_chain(self, host: str, chain: str) -> list[list[str]]:
        """The lab's own iptables chain on the host, hooked into INPUT and OUTPUT (made if missing)."""
        commands = []
        if self.run(host, ["iptables", "-w", "-n", "-L", chain], check=False).returncode != 0:
            commands.append(["iptables", "-w", "-N", chain])
            commands.append(["iptables", "-w", "-I", "INPUT", "-j", chain])
            commands.append(["iptables", "-w", "-I", "OUTPUT", "-j", chain])
        for argv in commands:
            self.run(host, argv)
        return commands

    # On-path loss: a bridge-family nftables table of the lab's own on the host that holds the bridge,
    # so frames are dropped between two other hosts, and each end's own capture shows what it saw.
    def bridge_drop(self, host: str, table: str, src: str, dst: str, port: int, window: str) -> list[list[str]]:
        """Drops TCP frames from src to dst with `port` on either side, crossing the host's bridges.
        window: 'open' drops only segments advertising a non-zero window, 'closed' only zero ones, 'any' all."""
        match = {"open": ["tcp", "window", "!=", "0"], "closed": ["tcp", "window", "0"], "any": []}[window]
        commands = bridge_forward_chain(table)
        for side in ("sport", "dport"):
            commands.append(["nft", "add", "rule", "bridge", table, "forward", "ip", "saddr", src, "ip", "daddr", dst,
                             "tcp", side, str(port), *match, "drop"])
        for argv in commands:
            self.run(host, argv)
        return commands

    def bridge_restore(self, host: str, table: str) -> list[list[str]]:
        argv = ["nft", "delete", "table", "bridge", table]
        self.run(host, argv, check=False)  # already gone is fine
        return [argv]

    # Egress impairments: a prio qdisc of the lab's own (handle EGRESS_HANDLE) at the root of the
    # sending host's interface, whose fourth band, reached only by the peer's address, holds netem.
    # Other traffic (SSH, say) is not delayed; deleting the root puts the kernel's default back.
    def has_netem(self, host: str) -> bool:
        """Whether the host's kernel has netem: detected, never assumed, by trying it on a dummy interface
        of the lab's own (not lo, whose qdisc may be someone else's, or another lab's probe)."""
        dev = netem_probe_interface(self.lab)
        made = self.run(host, ["ip", "link", "add", dev, "type", "dummy"], check=False).returncode == 0
        if not made:  # no dummy driver: lo then, only if its root qdisc is the default one
            if self.run(host, ["tc", "qdisc", "show", "dev", "lo", "root"], check=False).stdout.split()[1:2] not in (["noqueue"], []):
                return False
            dev = "lo"
        try:
            return self.run(host, ["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "0ms"], check=False).returncode == 0
        finally:
            if made:
                self.run(host, ["ip", "link", "del", dev], check=False)
            else:
                self.run(host, ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)

    def egress_netem(self, host: str, dev: str, peer: str, netem: list[str]) -> list[list[str]]:
        h = EGRESS_HANDLE
        shown = self.run(host, ["tc", "qdisc", "show", "dev", dev, "root"], check=False).stdout.split()
        kind = shown[1] if len(shown) > 1 else ""
        if kind not in DEFAULT_QDISCS and shown[2:3] != [f"{h}:"]:
            raise LabError(f"on {host}: {dev} has a root qdisc of its own ({' '.join(shown[:3])}), which a delay or loss would replace: "
                           f"remove it (`tc qdisc del dev {dev} root`) or run without the impairment")
        commands = [
            ["tc", "qdisc", "replace", "dev", dev, "root", "handle", f"{h}:", "prio", "bands", "4",
             "priomap", "1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1"],
            ["tc", "qdisc", "replace", "dev", dev, "parent", f"{h}:4", "handle", f"{EGRESS_NETEM_HANDLE}:", "netem", *netem],
            ["tc", "filter", "replace", "dev", dev, "parent", f"{h}:", "protocol", "ip", "prio", "1", "handle", "800::1", "u32",
             "match", "ip", "dst", f"{peer}/32", "flowid", f"{h}:4"],
        ]
        for argv in commands:
            self.run(host, argv)
        return commands

    def egress_clear(self, host: str, dev: str) -> bool:
        """Removes the lab's egress qdisc from `dev` if it is there; whether it was."""
        shown = self.run(host, ["tc", "qdisc", "show", "dev", dev, "root"], check=False).stdout
        if f"qdisc prio {EGRESS_HANDLE}:" not in shown:
            return False
        self.run(host, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        return True

    def write_sysctl(self, host: str, name: str, value: str, check: bool = True) -> None:
        self.run(host, ["sysctl", "-q", "-w", f"{name}={value}"], check=check)

    def read_sysctls(self, host: str, names: Sequence[str]) -> dict[str, Optional[str]]:
        """Per-namespace sysctls as the host sees them (TCP's are per network namespace)."""
        # One command for them all (each is a process on the host, a docker exec on containers):
        # grep -H prints "path:value" for each file that exists and only complains about the others.
        paths = {"/proc/sys/" + name.replace(".", "/"): name for name in names}
        r = self.run(host, ["grep", "-H", ".", *paths], check=False)
        out: dict[str, Optional[str]] = dict.fromkeys(names)
        for line in r.stdout.splitlines():
            path, _, value = line.partition(":")
            if path in paths:
                out[paths[path]] = value.strip()
        return out


# The root qdisc's handle for egress impairments: one a machine's own set-up is unlikely to use.
EGRESS_HANDLE, EGRESS_NETEM_HANDLE = "7c1a", "7c1b"
# A root qdisc the kernel or a distribution puts there by itself, which an egress impairment may replace.
DEFAULT_QDISCS = ("noqueue", "pfifo_fast", "fq_codel", "mq", "fq", "pfifo", "")


def bridge_forward_chain(table: str) -> list[list[str]]:
    """The nft commands that make a bridge-family table of the lab's own with a chain on the forward hook."""
    return [
        ["nft", "add", "table", "bridge", table],
        ["nft", "add", "chain", "bridge", table, "forward", "{", "type", "filter", "hook", "forward", "priority", "0", ";", "}"],
    ]


class LocalFiles:
    """Work files on this machine, at the same path the hosts see (netns shares the filesystem;
    Docker bind-mounts the folder), so reading and fetching them are local file operations."""

    lab: str

    def work_dir(self, host: str) -> Path:
        d = state_dir(self.lab) / "hosts" / host
        d.mkdir(parents=True, exist_ok=True)
        return d

    def work_path(self, host: str, filename: str) -> str:
        return str(self.work_dir(host) / filename)

    def read_file(self, host: str, path: str, offset: int = 0) -> bytes:
        fd = self._open(path)
        if fd is None:
            return b""
        with os.fdopen(fd, "rb") as f:
            f.seek(offset)
            return f.read(READ_AT_MOST)

    def fetch(self, host: str, path: str, local: Path) -> None:
        fd = self._open(path)
        if fd is not None:
            with os.fdopen(fd, "rb") as f, open(local, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)

    def _open(self, path: str) -> Optional[int]:
        """A host's file opened for reading: only a regular file, and below the lab's folder no symlink
        is followed on the way. A person at a host's shell is root there, and in a container its folder
        is theirs to change: a link planted there must not reach this machine's own files."""
        root = state_dir(self.lab)
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            parts = ()
        if not parts:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        else:
            try:
                fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
                for i, part in enumerate(parts):
                    flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if i < len(parts) - 1 else os.O_NONBLOCK)
                    try:
                        fd_next = os.open(part, flags, dir_fd=fd)
                    finally:
                        os.close(fd)
                    fd = fd_next
            except FileNotFoundError:
                return None
            except OSError as e:
                raise LabError(f"on {path}: {e.strerror} (a link or something else than a file where the lab keeps a file)") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LabError(f"{path}: not a regular file")
        return fd

    def install(self, host: str, files: dict[str, bytes]) -> None:
        folder = Path(self.student_dir(host))
        for d in (folder, Path(self.events_dir(host))):
            # Root's alone: a script's folder comes first on Python's path, so nobody else may put a module there.
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
        for name, data in files.items():
            path = folder / name
            path.write_bytes(data)
            path.chmod(0o755 if data.startswith(b"#!") else 0o644)
