"""SSH backend: the hosts are existing machines (VMs, cloud instances) named in an inventory file.

Nothing is created but a folder of the lab's own on each machine (~/.tcplab/<lab>/) holding the
uploaded programs, captures, logs and the record of every program started (see lab/onhost/agent.py);
a firewall chain named after the lab (TL_<lab>) and, for on-path drops, an nftables table of its own.
An exercise's sysctls are set on the machine after its old values are saved in that folder.
Teardown and `invoke down` undo exactly those, from the inventory alone if need be.

Each machine is a Session (lab/backends/ssh/session.py): its connection, commands and files.
"""
from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import paramiko

from ... import ui
from ...errors import LabError
from ...naming import HANDSON_BASELINE, handson_mark, iptables_chain, nft_table
from ...spec.exercise import Exercise
from ...spec.inventory import Inventory
from ...spec.topology import Topology
from .. import base
from ..labstate import LabState
from . import agent, mirror, preflight
from .session import LAB_ROOT, Session
from .tracer import SshTracer


class SshBackend(base.Backend):
    name = "ssh"
    local = False  # nothing is made on this machine: no root, no local tools
    impairs_at = "egress"

    def __init__(self, lab: str, inventory: Inventory, accept_new_host_keys: bool = False):
        super().__init__(lab)
        self.inventory = inventory
        self.sessions = {role: Session(m, inventory, accept_new_host_keys, lab) for role, m in inventory.machines.items()}
        self.roles = list(inventory.machines)  # narrowed to the exercise's hosts by prepare()
        self.interfaces_found: dict[str, str] = {}  # role -> its data-plane interface, once checked
        self.scripts: dict[str, set[Path]] = {}
        self._facts: dict[str, dict] = {}
        self.impairing: list[str] = []  # hosts whose sending is delayed (netem on their own egress)
        self.mirrors: dict[str, str] = {}  # role -> the interface its captures use (lab/backends/ssh/mirror.py)

    # --- set-up ------------------------------------------------------------------------------------

    def addresses(self) -> dict[str, str]:
        return self.inventory.addresses()

    def prepare(self, ex: Exercise) -> None:
        super().prepare(ex)
        nodes = ex.topology.nodes
        self.roles = [r for r in self.inventory.machines if r in nodes]
        missing = [n for n in nodes if n not in self.inventory.machines]
        where = f"the inventory {self.inventory.file}"
        for prog in ex.programs.values():
            if prog.host not in self.inventory.machines:
                raise LabError(f"{ex.file}: program {prog.name} runs on {prog.host}, and {where} has no {prog.host} machine: add one under machines.{prog.host}")
            self.scripts.setdefault(prog.host, set()).add(prog.script)
        for step in ex.steps:
            host = step.args.get("host")
            if host in missing and not (step.kind == "capture" and host not in ("source", "dest")):
                raise LabError(f"{ex.file}: {step.where} ({step.kind}) needs {_a(host)} machine, and {where} has none: add one under machines.{host}")
        # A delay or a loss is applied as each host sends (netem on its own data-plane interface, to
        # the peer's address only); an impairment of nothing (latency=0) applies nothing anywhere.
        self.impairing = sorted({one.src for one in ex.impairments if not one.nothing})
        for host in self.impairing:
            if host not in self.inventory.machines:
                raise LabError(f"{ex.file}: a delay or loss is applied as {host} sends, and {where} has no {host} machine: add one under machines.{host}")
        if self.impairing:
            self.tools.setdefault("tc", "iproute2")
        for host in ex.sysctls:
            if host in missing:
                raise LabError(f"{ex.file}: sysctls are set on {host}, and {where} has no {host} machine: add one under machines.{host}")

    def needs_also(self, other: base.Backend) -> None:
        super().needs_also(other)
        if isinstance(other, SshBackend):
            self.impairing = sorted(set(self.impairing) | set(other.impairing))

    def check_environment(self) -> None:
        """Connects to every machine at once and checks each; all problems are reported together."""
        ui.step("checking " + ", ".join(str(self.sessions[r]) for r in self.roles))
        with ThreadPoolExecutor(max_workers=len(self.roles)) as pool:
            found = list(pool.map(lambda role: preflight.check(self.sessions[role], self.tools), self.roles))
        problems = [problem for problem, _ in found if problem]
        if not problems:
            # Detected on each sending machine before anything is made, never assumed.
            problems = [f"{self.sessions[h].machine}: its kernel has no netem (sch_netem), which the exercise's delay or loss needs: "
                        f"`modprobe sch_netem` there, or install the kernel's extra modules (linux-modules-extra-$(uname -r) on Ubuntu)"
                        for h in self.impairing if h in self.sessions and not self.has_netem(h)]
        if problems:
            raise LabError("the machines are not ready:\n  " + "\n  ".join(problems))
        self.interfaces_found.update({role: iface for role, (_, iface) in zip(self.roles, found) if iface})

    def create(self, topology: Topology, state: LabState) -> None:
        state.inventory, state.machines = str(self.inventory.file), []
        state.save()
        for role in self.roles:
            s = self.sessions[role]
            folder = s.lab_dir
            s.mkdir_quietly(str(Path(folder).parent), 0o755)
            # Recorded first, so `down` finds it after a SIGKILL; the mkdir is the claim, which fails if
            # the folder is there (another run's, perhaps from another machine), and then it is not ours.
            state.add_machine(role)
            try:
                s.sftp().mkdir(folder, 0o700)
            except (OSError, paramiko.SSHException) as e:
                state.drop_machine(role)
                if s.is_dir(folder):
                    raise LabError(
                        f"{s.machine} already holds lab {self.lab} ({folder}), from another run or another machine: "
                        f"`invoke down --lab {self.lab} --inventory {self.inventory.file}` removes it, or choose another --lab"
                    ) from None
                raise LabError(f"{s.machine}: cannot create {folder}: {e}") from None
        # Then every machine furnished at once: each is a round trip per file and command, which on a slow
        # machine (an emulated VM: a tenth of a second or more each) adds up machine by machine.
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=len(self.roles))
        try:
            futures = [pool.submit(self._furnish, role, cancel) for role in self.roles]
            kernels = [f.result() for f in futures]
        finally:
            # On an error or Ctrl-C the others stop at their next step, and all have stopped before the
            # teardown reads what they recorded: a second Ctrl-C does not cut the wait short.
            cancel.set()
            while True:
                try:
                    pool.shutdown(wait=True)
                    break
                except KeyboardInterrupt:
                    continue
        for role, kernel in zip(self.roles, kernels):
            s = self.sessions[role]
            ui.step(f"{s.machine}: ready in {s.lab_dir}, {kernel['release']}, data plane {s.machine.address or '-'} on {self.interfaces_found.get(role, '-')}")

    def _furnish(self, role: str, cancel: threading.Event) -> dict:
        """The agent, the programs, the sysctls and the mirror on one machine of the lab; its kernel."""
        s = self.sessions[role]

        def step() -> None:
            if cancel.is_set():
                raise LabError(f"{s.machine}: not furnished: another machine failed, or the run was interrupted")

        step()
        agent.upload(s)
        for script in sorted(self.scripts.get(role, ())):
            step()
            target = f"{s.lab_dir}/programs/{script.parent.name}"
            s.mkdirs(target)
            # The script's neighbours too, so a program may import a module beside it.
            for path in sorted(script.parent.glob("*.py")):
                s.put(path, f"{target}/{path.name}")
        if self.sysctls.get(role):
            step()
            self._set_sysctls(role, self.sysctls[role])
        if role in self.impairing:
            step()
            self.mirrors[role] = mirror.create(s, self.lab, self.interfaces_found[role])
        return self.facts(role)["kernel"]

    def _set_sysctls(self, role: str, values: dict[str, str]) -> None:
        # The machine's own values are written down first, so teardown and `down` put them back.
        s = self.sessions[role]
        s.write_file(f"{s.lab_dir}/sysctls.json", json.dumps(self.read_sysctls(role, list(values))))
        for name, value in values.items():
            self.write_sysctl(role, name, value)

    def egress_netem(self, host: str, dev: str, peer: str, netem: list[str]) -> list[list[str]]:
        # Written down before it is made, so teardown and `down` remove it even after a SIGKILL.
        s = self.sessions[host]
        record = f"{s.lab_dir}/qdiscs.json"
        devs = s.json(s.read_file(record), "qdiscs.json") if s.read_file(record) else []
        if dev not in devs:
            s.write_file(record, json.dumps(devs + [dev]))
        return super().egress_netem(host, dev, peer, netem)

    # --- teardown ----------------------------------------------------------------------------------

    def destroy(self, state: LabState) -> list[str]:
        """Stops the lab's programs, removes its chain, table, sysctl changes and folder on each machine.
        A run's state names the machines it touched; with none (`down --inventory` alone), every machine."""
        roles = list(self.inventory.machines) if state.machines is None else state.machines

        def clean(role: str) -> tuple[list[str], Optional[str]]:
            if role not in self.inventory.machines:
                return [], f"{role}: the lab used it, and {self.inventory.file} no longer names it: put it back"
            try:
                return self._clean(self.sessions[role]), None
            except LabError as e:
                return [], str(e)

        removed: list[str] = []
        unreachable: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(roles))) as pool:  # every machine at once, as create furnishes them
            for gone, problem in pool.map(clean, roles):
                removed += gone
                unreachable += [problem] if problem else []
        self.close()
        if unreachable:
            done = f"removed {', '.join(removed)}; " if removed else ""
            raise LabError(f"{done}could not clean up every machine:\n  " + "\n  ".join(unreachable)
                           + f"\nfix that (or wait for them to answer), then run `invoke down --lab {self.lab} --inventory {self.inventory.file}` again")
        return removed

    def _clean(self, s: Session) -> list[str]:
        role, removed = s.role, []
        folder = s.lab_dir
        if s.is_dir(folder):
            agent.upload(s)  # afresh: the run may have been killed before it was complete
            if s.read_file(f"{folder}/{HANDSON_BASELINE}"):
                # A person worked here (hands-on mode): their processes, rules, tables and sysctls go first;
                # if that fails, the rest of the teardown still runs, and says so.
                r = s.run(self.onhost(role, "handson.py") + ["undo", f"{folder}/{HANDSON_BASELINE}", handson_mark(self.lab, role)],
                          timeout=60, check=False)
                try:
                    removed += [f"{what} on {role}" for what in (json.loads(r.stdout) or {}).get("undone") or []]
                except (ValueError, AttributeError):
                    ui.warn(f"{s.machine}: undoing the person's changes failed: {(r.stderr.strip().splitlines() or ['no answer'])[-1]}")
            removed += [f"process {name} on {role}" for name in agent.answer(s, "stop-all", folder)]
            removed += [f"{what} on {role}" for what in agent.answer(s, "trace-remove", folder)]
            removed += [f"{what} on {role}" for what in mirror.remove(s)]
            qdiscs = s.read_file(f"{folder}/qdiscs.json")
            for dev in (s.json(qdiscs, "qdiscs.json") if qdiscs else []):
                if self.egress_clear(role, dev):
                    removed.append(f"netem on {role} {dev}")
            saved = s.read_file(f"{folder}/sysctls.json")
            for name, value in (s.json(saved, "sysctls.json") if saved else {}).items():
                if value is not None:
                    self.write_sysctl(role, name, value, check=False)
                    removed.append(f"sysctl {name} on {role} (back to {value})")
        chain = iptables_chain(self.lab)
        if s.run(["iptables", "-w", "-n", "-L", chain], check=False).returncode == 0:
            for builtin in ("INPUT", "OUTPUT"):
                # A jump inserted twice (two firewall steps) is deleted twice.
                for _ in range(32):
                    if s.run(["iptables", "-w", "-D", builtin, "-j", chain], check=False).returncode != 0:
                        break
            s.run(["iptables", "-w", "-F", chain])
            s.run(["iptables", "-w", "-X", chain])
            removed.append(f"iptables chain {chain} on {role}")
        table = nft_table(self.lab)
        if s.run(["nft", "list", "table", "bridge", table], check=False).returncode == 0:
            s.run(["nft", "delete", "table", "bridge", table])
            removed.append(f"nftables table {table} on {role}")
        if s.is_dir(folder):
            s.run(["rm", "-rf", "--one-file-system", "--", folder])
            removed.append(f"folder {folder} on {role}")
            try:
                s.sftp().rmdir(str(Path(folder).parent))
            except (OSError, paramiko.SSHException):
                pass  # another lab's folder is still there
        return removed

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()

    # --- running -----------------------------------------------------------------------------------

    def run(self, host: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return self.sessions[host].run(argv, timeout, check)

    def spawn(self, host: str, name: str, argv: Sequence[str], state: LabState) -> base.Process:
        return agent.spawn(self.sessions[host], name, list(argv))

    def python(self, host: str, script: Path) -> list[str]:
        return ["python3", "-u", f"{self.sessions[host].lab_dir}/programs/{script.parent.name}/{script.name}"]

    def onhost(self, host: str, name: str) -> list[str]:
        return ["python3", f"{self.sessions[host].lab_dir}/agent/{name}"]  # uploaded with the agent

    def install(self, host: str, files: dict[str, bytes]) -> None:
        s = self.sessions[host]
        for folder in (self.student_dir(host), self.events_dir(host)):
            s.mkdirs(folder)  # the SSH user's; programs under sudo write here as root, and SFTP reads it back
        for name, data in files.items():
            s.write_bytes(f"{self.student_dir(host)}/{name}", data, 0o755 if data.startswith(b"#!") else 0o644)

    def shell(self, host: str, cwd: str, env: dict[str, str], line: Optional[str] = None) -> int:
        command = ["bash", "-c", line] if line is not None else ["bash", "--noprofile", "--norc", "-i"]
        variables = [f"{k}={v}" for k, v in env.items()]
        # The working folder travels as an argument, never through the shell's parser.
        argv = ["env", *variables, "sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", cwd, *command]
        return self.sessions[host].attached(argv, interactive=line is None)

    def interfaces(self, topology: Topology) -> dict[str, str]:
        return {**super().interfaces(topology), **self.interfaces_found}

    def work_path(self, host: str, filename: str) -> str:
        return f"{self.sessions[host].lab_dir}/{filename}"

    def host_names(self, topology: Topology) -> list[str]:
        return list(self.roles)

    def capture_targets(self, host: str, interface: str) -> list[tuple[str, str]]:
        """A capture runs on the machine's data-plane interface, whatever the topology calls it; one meant
        for a missing observer runs on source and dest instead. Where a delay sits on the machine's
        egress, the capture is taken from the mirror of the interface, before the delay."""
        if host in self.roles:
            return [(host, self.mirrors.get(host) or self.interfaces_found[host])]
        return [(r, self.mirrors.get(r) or self.interfaces_found[r]) for r in ("source", "dest")]

    def read_file(self, host: str, path: str, offset: int = 0) -> bytes:
        return self.sessions[host].read_file(path, offset)

    def fetch(self, host: str, path: str, local: Path) -> None:
        self.sessions[host].fetch(path, local)

    def facts(self, host: str) -> dict:
        if host not in self._facts:
            self._facts[host] = agent.answer(self.sessions[host], "facts")
        return self._facts[host]

    def describe(self) -> dict:
        machines = {}
        for role in self.roles:
            m = self.inventory.machines[role]
            machines[role] = {"ssh": f"{m.user}@{m.hostname}:{m.port}", "sudo": m.sudo, "address": m.address,
                              "interface": self.interfaces_found.get(role), "kernel": self.facts(role)["kernel"],
                              "tools": self.facts(role)["tools"]}
        return {"machines": machines, "inventory": str(self.inventory.file)}

    def state_tracer(self, state: LabState) -> SshTracer:
        return SshTracer(self.lab, {role: self.sessions[role] for role in self.roles})

    def keep_hint(self) -> str:
        return f"its files are in ~/{LAB_ROOT}/{self.lab}/ on each machine"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word
