"""The embedded default backend: each host is a Linux network namespace on this machine.

Needs only root, iproute2, iptables, tcpdump and ethtool (to turn off offloads that merge packets in captures). Hosts share this machine's filesystem, so a host's
work files live in the lab's state folder and "fetching" them is a copy.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import CommandError, LabError
from ..naming import netns_name, netns_prefix
from ..onhost import procs
from ..spec.topology import Topology
from . import wiring
from .base import ONHOST_DIR, Backend, LocalFiles, Process
from .labstate import LabState


class LocalProcess(Process):
    def __init__(self, popen: subprocess.Popen, name: str, host: str, stdout: str, stderr: str):
        super().__init__(name, host, popen.pid, stdout, stderr)
        self.popen = popen

    def poll(self) -> Optional[int]:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)


class NetnsBackend(LocalFiles, Backend):
    name = "netns"
    required_tools = {"ip": "iproute2", "iptables": "iptables", "tcpdump": "tcpdump", "ethtool": "ethtool", "sysctl": "procps"}

    def check_environment(self) -> None:
        if not Path("/proc/self/ns/net").exists():
            raise LabError("this kernel has no network namespaces (/proc/self/ns/net is missing); use --backend docker or ssh")

    def netns(self, host: str) -> str:
        return netns_name(self.lab, host)

    def create(self, topology: Topology, state: LabState) -> None:
        existing = set(list_netns())
        names = [self.netns(node) for node in topology.nodes]
        for ns in names:
            if ns in existing:
                raise LabError(
                    f"network namespace {ns} already exists but lab {self.lab} did not make it this time: "
                    f"`invoke down --lab {self.lab}` removes it, or choose another --lab"
                )
        for ns in names:
            state.add_namespace(ns)  # each recorded before any is made
        wiring.run(["ip", "-batch", "-"], stdin="".join(f"netns add {ns}\n" for ns in names))
        wiring.wire(topology, self.netns, self.lab)
        for host, values in self.sysctls.items():
            for name, value in values.items():
                self.write_sysctl(host, name, value)

    def destroy(self, state: LabState) -> list[str]:
        removed = []
        for p in state.processes:
            if procs.stop(p["pid"], p.get("start"), grace=2.0):
                removed.append(f"process {p['name']} ({p['pid']})")
        # Only what the state recorded (written before each namespace was made): a namespace that merely
        # shares the naming scheme was not made by this lab. With no record at all (state lost), `down
        # --lab X` falls back to the lab's name prefix, since the user named the lab.
        present = list_netns()
        if state.namespaces is not None:
            ours = [n for n in present if n in state.namespaces]
        else:
            ours = [n for n in present if n.startswith(netns_prefix(self.lab))]
        for ns in ours:
            # Whatever still runs inside a lab namespace was started there by the lab.
            r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in (int(x) for x in r.stdout.split()):
                procs.stop(pid, procs.start_time(pid), grace=1.0)
            _ip("netns", "del", ns, check=False)
            removed.append(f"namespace {ns}")
        return removed

    def run(self, host: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        full = ["ip", "netns", "exec", self.netns(host), *argv]
        try:
            r = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"on {host}: `{' '.join(argv)}` did not finish within {timeout:g} s") from None
        if check and r.returncode != 0:
            raise CommandError(host, argv, r.returncode, r.stderr)
        return r

    def spawn(self, host: str, name: str, argv: Sequence[str], state: LabState) -> Process:
        out, err = self.work_path(host, f"{name}.log"), self.work_path(host, f"{name}.err")
        with open(out, "wb") as fo, open(err, "wb") as fe:
            # A session of its own: Ctrl-C at the terminal reaches the orchestrator, which stops
            # programs in order, rather than every program at once.
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.netns(host), *argv],
                stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, start_new_session=True,
            )
        # `ip netns exec` execs the program in place, so this PID is the program's own.
        state.add_process(popen.pid, procs.start_time(popen.pid), host, name)
        return LocalProcess(popen, name, host, out, err)

    def python(self, host: str, script: Path) -> list[str]:
        # The same interpreter as the orchestrator: it is on this filesystem, and -u keeps events unbuffered.
        return [sys.executable, "-u", str(script)]

    def onhost(self, host: str, name: str) -> list[str]:
        return [sys.executable, str(ONHOST_DIR / name)]

    def shell(self, host: str, cwd: str, env: dict[str, str], line: Optional[str] = None) -> int:
        if line is not None:
            argv, env = ["ip", "netns", "exec", self.netns(host), "bash", "-c", line], self._shell_env(env)
        else:
            argv, _, env = self.shell_argv(host, cwd, env)
        return subprocess.call(argv, cwd=cwd, env={**os.environ, **env})

    def shell_argv(self, host: str, cwd: str, env: dict[str, str]) -> tuple[list[str], Optional[str], dict[str, str]]:
        return ["ip", "netns", "exec", self.netns(host), "bash", "--noprofile", "--norc", "-i"], cwd, self._shell_env(env)

    @staticmethod
    def _shell_env(env: dict[str, str]) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin", **env}


def list_netns() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _ip(*args: str, check: bool = True) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
