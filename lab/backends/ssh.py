"""SSH backend: the hosts are existing machines (VMs, cloud instances) named in an inventory file.

Nothing is created but a folder of the lab's own on each machine (~/.tcplab/<lab>/) holding the
uploaded programs, captures, logs and the record of every program started (see lab/agent.py); a
firewall chain named after the lab (TL_<lab>) and, for on-path drops, an nftables table of its own.
An exercise's sysctls are set on the machine after its old values are saved in that folder.
Teardown and `invoke down` undo exactly those, from the inventory alone if need be.

Every command is one argv, quoted with shlex.join for the remote shell, so no value from a topology,
an inventory or `--set` is ever parsed as shell. Files travel by SFTP.
"""
from __future__ import annotations

import json
import shlex
import signal
import socket
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

import paramiko

from .. import sshconn, ui
from ..errors import LabError
from ..inventory import Inventory
from ..labstate import LabState
from ..naming import iptables_chain, nft_table
from ..topology import Topology
from .base import Backend, CommandError, Process

# sudo's secure_path, so iptables and tcpdump in /usr/sbin are found also without sudo (root logins).
REMOTE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAB_ROOT = ".tcplab"  # in the SSH user's home
AGENT_FILES = ("agent.py", "procs.py", "sysinfo.py", "tracefs.py")
UNAVAILABLE = 3  # the agent's exit status when a machine cannot trace (no tracefs, no tracepoint)
# What every machine needs (command -> Debian package); steps add theirs (nft for on-path drops).
TOOLS = {"python3": "python3", "tcpdump": "tcpdump", "iptables": "iptables", "ip": "iproute2"}
PROGRESS_BYTES = 1 << 20  # files above this show a progress bar on the way back
SFTP_TIMEOUT = 60.0
T = TypeVar("T")


def command_line(argv: Sequence[str], sudo: bool) -> str:
    """The remote shell's command line for one argv: every word quoted, nothing expanded."""
    prefix = ["sudo", "-n", "--"] if sudo else []
    return shlex.join([*prefix, "env", f"PATH={REMOTE_PATH}", *map(str, argv)])


class SshProcess(Process):
    """A program the agent started; its exit status appears in <name>.status when it ends."""

    def __init__(self, backend: "SshBackend", name: str, host: str, pid: int, stdout: str, stderr: str):
        super().__init__(name, host, pid, stdout, stderr)
        self.backend = backend
        self._status: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self._status is None:
            text = self.backend.read_file(self.host, self.backend.work_path(self.host, f"{self.name}.status"))
            if text.strip():
                self._status = int(text)
        return self._status

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            b = self.backend
            b.run(self.host, b.agent(self.host, "signal", b.dirs[self.host], self.name, signal.Signals(sig).name))


class SshBackend(Backend):
    name = "ssh"
    local = False  # nothing is made on this machine: no root, no local tools

    def __init__(self, lab: str, inventory: Inventory, accept_new_host_keys: bool = False):
        super().__init__(lab)
        self.inventory = inventory
        self.accept_new = accept_new_host_keys
        self.roles = list(inventory.machines)  # narrowed to the exercise's hosts by prepare()
        self.clients: dict[str, paramiko.SSHClient] = {}
        self._sftp: dict[str, paramiko.SFTPClient] = {}
        self.dirs: dict[str, str] = {}
        self.interfaces: dict[str, str] = {}
        self.scripts: dict[str, set[Path]] = {}
        self._facts: dict[str, dict] = {}

    # --- set-up ------------------------------------------------------------------------------------

    def addresses(self) -> dict[str, str]:
        return self.inventory.addresses()

    def prepare(self, ex) -> None:
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
        # A delay or a loss needs the bridge's ports, which machines of one's own do not describe; an
        # impairment of nothing (latency=0) applies nothing anywhere, so it may stay in the timeline.
        impairs = list(ex.topology.impairments) + [step.args for step in ex.steps if step.kind == "impair"]
        if any(float(i.get("delay_ms", 0)) or float(i.get("loss", 0)) or float(i.get("rate_mbit", 0)) for i in impairs):
            names = [f"{n}={v:g}" for n, v in ex.values.items() if n in ("latency", "delay", "delay_ms", "loss") and isinstance(v, (int, float))]
            hint = f" (here {', '.join(names)}: set it to 0 for a run without)" if names else ""
            raise LabError(f"{ex.file}: impairments (a delay or loss) run on the netns and docker backends, not over SSH{hint}")
        for host in ex.sysctls:
            if host in missing:
                raise LabError(f"{ex.file}: sysctls are set on {host}, and {where} has no {host} machine: add one under machines.{host}")

    def check_environment(self) -> None:
        """Connects to every machine at once and checks each; all problems are reported together."""
        ui.step("checking " + ", ".join(str(self.inventory.machines[r]) for r in self.roles))
        with ThreadPoolExecutor(max_workers=len(self.roles)) as pool:
            problems = [p for p in pool.map(self._check_machine, self.roles) if p]
        if problems:
            raise LabError("the machines are not ready:\n  " + "\n  ".join(problems))

    def _check_machine(self, role: str) -> Optional[str]:
        m = self.inventory.machines[role]
        try:
            self._connect(role)
        except LabError as e:
            return str(e)
        try:
            uid = self._shell(role, "id -u", timeout=10).stdout.strip()
            if m.sudo:
                r = self._shell(role, "sudo -n true", timeout=10)
                if r.returncode != 0:
                    err = r.stderr.strip()
                    if "password" in err:
                        return (f"{m}: sudo needs a password: let {m.user} run sudo without one (a sudoers line "
                                f"`{m.user} ALL=(ALL) NOPASSWD: ALL`), or log in as root with `sudo: false`")
                    if r.returncode == 127 or "not found" in err:
                        return f"{m}: sudo is not installed: install it (`apt-get install -y sudo`), or log in as root with `sudo: false`"
                    return f"{m}: `sudo -n true` failed: {err or f'exit status {r.returncode}'}"
            elif uid != "0":
                return f"{m}: {m.user} is not root and `sudo` is off: tcpdump and iptables need root; set `sudo: true` in the inventory"
            tools = {**TOOLS, **self.tools}
            check = "for t; do command -v \"$t\" >/dev/null 2>&1 || echo \"$t\"; done"
            missing = self.run(role, ["sh", "-c", check, "sh", *tools], timeout=15).stdout.split()
            if missing:
                pkgs = " ".join(sorted({tools[t] for t in missing if t in tools}))
                return (f"{m}: missing {', '.join(missing)}: install with `sudo apt-get install -y {pkgs}` "
                        f"(Debian/Ubuntu; `sudo dnf install -y {pkgs.replace('iproute2', 'iproute')}` on Fedora/RHEL)")
            if self._shell(role, "python3 -c 'import sys; sys.exit(sys.version_info < (3, 7))'", timeout=15).returncode != 0:
                return f"{m}: python3 is older than 3.7, which the lab's programs need: install a newer python3"
            problem = self._find_interface(role)
            if problem:
                return problem
            self._lab_dir(role)
        except LabError as e:
            return str(e)
        return None

    def _find_interface(self, role: str) -> Optional[str]:
        m = self.inventory.machines[role]
        out = self.run(role, ["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
        # "2: eth1    inet 10.0.2.1/24 brd 10.0.2.255 scope global eth1\..."
        found = {}
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 4 and words[2] == "inet":
                found[words[3].split("/")[0]] = words[1].split("@")[0]
        links = self.run(role, ["ip", "-o", "link", "show"], timeout=10).stdout
        names = {l.split(":")[1].strip().split("@")[0] for l in links.splitlines() if l.count(":") >= 2}
        if m.interface:
            if m.interface not in names:
                return f"{m}: no interface {m.interface} (it has {', '.join(sorted(names))}): fix `interface` in the inventory"
            self.interfaces[role] = m.interface
        elif m.address:
            if m.address not in found:
                return (f"{m}: {m.address} is on none of its interfaces (it has {', '.join(sorted(found)) or 'none'}): "
                        f"set `address` to one of them, or name the data-plane `interface`")
            self.interfaces[role] = found[m.address]
        return None

    def create(self, topology: Topology, state: LabState) -> None:
        state.inventory, state.machines = str(self.inventory.file), []
        state.save()
        for role in self.roles:
            m = self.inventory.machines[role]
            folder = self.dirs[role]
            self._sftp_op(role, "create", str(Path(folder).parent), lambda sftp: self._mkdir_quietly(sftp, str(Path(folder).parent), 0o755))
            # Recorded first, so `down` finds it after a SIGKILL; the mkdir is the claim, which fails if
            # the folder is there (another run's, perhaps from another machine), and then it is not ours.
            state.add_machine(role)
            try:
                self.sftp(role).mkdir(folder, 0o700)
            except (OSError, paramiko.SSHException) as e:
                state.drop_machine(role)
                if self._exists(role, folder):
                    raise LabError(
                        f"{m} already holds lab {self.lab} ({folder}), from another run or another machine: "
                        f"`invoke down --lab {self.lab} --inventory {self.inventory.file}` removes it, or choose another --lab"
                    ) from None
                raise LabError(f"{m}: cannot create {folder}: {e}") from None
            self._upload_agent(role)
            for script in sorted(self.scripts.get(role, ())):
                target = f"{folder}/programs/{script.parent.name}"
                self._mkdirs(role, target)
                # The script's neighbours too, so a program may import a module beside it.
                for path in sorted(script.parent.glob("*.py")):
                    self._put(role, path, f"{target}/{path.name}")
            if self.sysctls.get(role):
                self._set_sysctls(role, self.sysctls[role])
            kernel = self.facts(role)["kernel"]
            ui.step(f"{m}: ready in {folder}, {kernel['release']}, data plane {m.address or '-'} on {self.interfaces.get(role, '-')}")

    def _set_sysctls(self, role: str, values: dict[str, str]) -> None:
        # The machine's own values are written down first, so teardown and `down` put them back.
        old = json.dumps(self.read_sysctls(role, list(values)))
        path = f"{self.dirs[role]}/sysctls.json"

        def write(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(path, "w") as f:
                f.write(old)

        self._sftp_op(role, "write", path, write)
        for name, value in values.items():
            self.write_sysctl(role, name, value)

    def _upload_agent(self, role: str) -> None:
        folder = f"{self.dirs[role]}/agent"
        self._mkdirs(role, folder)
        here = Path(__file__).resolve().parent.parent
        for name in AGENT_FILES:
            self._put(role, here / name, f"{folder}/{name}")

    # --- teardown ----------------------------------------------------------------------------------

    def destroy(self, state: LabState) -> list[str]:
        """Stops the lab's programs, removes its chain, table, sysctl changes and folder on each machine.
        A run's state names the machines it touched; with none (`down --inventory` alone), every machine."""
        roles = list(self.inventory.machines) if state.machines is None else state.machines
        removed, unreachable = [], []
        for role in roles:
            if role not in self.inventory.machines:
                unreachable.append(f"{role}: the lab used it, and {self.inventory.file} no longer names it: put it back")
                continue
            try:
                self._lab_dir(role)
                removed += self._clean(role)
            except LabError as e:
                unreachable.append(str(e))
        self.close()
        if unreachable:
            done = f"removed {', '.join(removed)}; " if removed else ""
            raise LabError(f"{done}could not clean up every machine:\n  " + "\n  ".join(unreachable)
                           + f"\nfix that (or wait for them to answer), then run `invoke down --lab {self.lab} --inventory {self.inventory.file}` again")
        return removed

    def _clean(self, role: str) -> list[str]:
        removed = []
        folder = self.dirs[role]
        if self._exists(role, folder):
            self._upload_agent(role)  # afresh: the run may have been killed before it was complete
            stopped = self._json(role, self.run(role, self.agent(role, "stop-all", folder), timeout=30).stdout, "the agent's answer")
            removed += [f"process {name} on {role}" for name in stopped]
            removed += [f"{what} on {role}" for what in
                        self._json(role, self.run(role, self.agent(role, "trace-remove", folder), timeout=30).stdout, "the agent's answer")]
            saved = self.read_file(role, f"{folder}/sysctls.json")
            for name, value in (self._json(role, saved, "sysctls.json") if saved else {}).items():
                if value is not None:
                    self.write_sysctl(role, name, value, check=False)
                    removed.append(f"sysctl {name} on {role} (back to {value})")
        chain = iptables_chain(self.lab)
        if self.run(role, ["iptables", "-w", "-n", "-L", chain], check=False).returncode == 0:
            for builtin in ("INPUT", "OUTPUT"):
                # A jump inserted twice (two firewall steps) is deleted twice.
                for _ in range(32):
                    if self.run(role, ["iptables", "-w", "-D", builtin, "-j", chain], check=False).returncode != 0:
                        break
            self.run(role, ["iptables", "-w", "-F", chain])
            self.run(role, ["iptables", "-w", "-X", chain])
            removed.append(f"iptables chain {chain} on {role}")
        table = nft_table(self.lab)
        if self.run(role, ["nft", "list", "table", "bridge", table], check=False).returncode == 0:
            self.run(role, ["nft", "delete", "table", "bridge", table])
            removed.append(f"nftables table {table} on {role}")
        if self._exists(role, folder):
            self.run(role, ["rm", "-rf", "--one-file-system", "--", folder])
            removed.append(f"folder {folder} on {role}")
            try:
                self.sftp(role).rmdir(str(Path(folder).parent))
            except (OSError, paramiko.SSHException):
                pass  # another lab's folder is still there
        return removed

    def close(self) -> None:
        for role in list(self.clients):
            self._forget(role)

    # --- running -----------------------------------------------------------------------------------

    def run(self, host: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        r = self._shell(host, command_line(argv, self.inventory.machines[host].sudo), timeout, list(argv))
        if check and r.returncode != 0:
            raise CommandError(host, argv, r.returncode, r.stderr)
        return r

    def _shell(self, host: str, line: str, timeout: float, argv: Optional[list] = None) -> subprocess.CompletedProcess:
        m = self.inventory.machines[host]
        what = " ".join(argv) if argv else line
        channel = None
        try:
            _, stdout, stderr = self._connect(host).exec_command(line, timeout=timeout)
            channel = stdout.channel
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = channel.recv_exit_status()
        except socket.timeout:
            raise LabError(f"{m}: `{what}` did not finish within {timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            self._forget(host)
            raise LabError(f"{m}: lost the SSH connection while running `{what}`: {e or type(e).__name__}") from None
        finally:
            if channel is not None:
                channel.close()
        return subprocess.CompletedProcess(argv or line, code, out, err)

    def spawn(self, host: str, name: str, argv: Sequence[str], state: LabState) -> Process:
        # The agent records the program on the machine before it reports back: see lab/agent.py.
        r = self.run(host, self.agent(host, "spawn", self.dirs[host], name, *argv))
        try:
            pid = int(r.stdout.split()[0])
        except (IndexError, ValueError):
            raise LabError(f"{self.inventory.machines[host]}: {name} did not start: {r.stderr.strip() or r.stdout.strip()}") from None
        return SshProcess(self, name, host, pid, self.work_path(host, f"{name}.log"), self.work_path(host, f"{name}.err"))

    def agent(self, host: str, *args: str) -> list[str]:
        return ["python3", f"{self.dirs[host]}/agent/agent.py", *args]

    def python(self, host: str, script: Path) -> list[str]:
        return ["python3", "-u", f"{self.dirs[host]}/programs/{script.parent.name}/{script.name}"]

    def work_path(self, host: str, filename: str) -> str:
        return f"{self.dirs[host]}/{filename}"

    def host_names(self, topology: Topology) -> list[str]:
        return list(self.roles)

    def capture_targets(self, host: str, interface: str) -> list[tuple[str, str]]:
        """A capture runs on the machine's data-plane interface, whatever the topology calls it; one meant
        for a missing observer runs on source and dest instead."""
        if host in self.roles:
            return [(host, self.interfaces[host])]
        return [(r, self.interfaces[r]) for r in ("source", "dest")]

    def read_file(self, host: str, path: str, offset: int = 0) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            try:
                with sftp.open(path, "rb") as f:
                    f.seek(offset)
                    return f.read()
            except FileNotFoundError:
                return b""

        return self._sftp_op(host, "read", path, read)

    def fetch(self, host: str, path: str, local: Path) -> None:
        def get(sftp: paramiko.SFTPClient) -> None:
            try:
                size = sftp.stat(path).st_size or 0
            except FileNotFoundError:
                return
            if size < PROGRESS_BYTES:
                sftp.get(path, str(local))
                return
            with ui.transfer(f"{host}:{Path(path).name}", size) as advance:
                sftp.get(path, str(local), callback=lambda done, total: advance(done))

        self._sftp_op(host, "fetch", path, get)

    def facts(self, host: str) -> dict:
        if host not in self._facts:
            self._facts[host] = self._json(host, self.run(host, self.agent(host, "facts"), timeout=30).stdout, "the agent's facts")
        return self._facts[host]

    def describe(self) -> dict:
        machines = {}
        for role in self.roles:
            m = self.inventory.machines[role]
            machines[role] = {"ssh": f"{m.user}@{m.hostname}:{m.port}", "sudo": m.sudo, "address": m.address,
                              "interface": self.interfaces.get(role), "kernel": self.facts(role)["kernel"],
                              "tools": self.facts(role)["tools"]}
        return {"machines": machines, "inventory": str(self.inventory.file)}

    def state_tracer(self, state: LabState) -> "SshTracer":
        return SshTracer(self)

    def keep_hint(self) -> str:
        return f"its files are in ~/{LAB_ROOT}/{self.lab}/ on each machine"

    # --- connections -------------------------------------------------------------------------------

    def _connect(self, role: str) -> paramiko.SSHClient:
        client = self.clients.get(role)
        if client is None or not (client.get_transport() and client.get_transport().is_active()):
            self._forget(role)
            client = sshconn.connect(self.inventory.machines[role], self.inventory, self.accept_new, note=ui.warn)
            self.clients[role] = client
        return client

    def sftp(self, role: str) -> paramiko.SFTPClient:
        if role not in self._sftp or role not in self.clients:
            try:
                sftp = self._connect(role).open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise LabError(f"{self.inventory.machines[role]}: no SFTP ({e or type(e).__name__}): enable sshd's sftp Subsystem") from None
            # A machine that stops answering must not hang the run (or its teardown, which ignores Ctrl-C).
            sftp.get_channel().settimeout(SFTP_TIMEOUT)
            self._sftp[role] = sftp
        return self._sftp[role]

    def _sftp_op(self, role: str, what: str, path: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        """One SFTP operation; any failure becomes one line naming the machine and the file."""
        try:
            return op(self.sftp(role))
        except (OSError, paramiko.SSHException, EOFError) as e:
            if not isinstance(e, PermissionError):
                self._forget(role)
            raise LabError(f"{self.inventory.machines[role]}: cannot {what} {path}: {e or type(e).__name__}") from None

    def _forget(self, role: str) -> None:
        client = self.clients.pop(role, None)
        self._sftp.pop(role, None)
        if client is not None:
            client.close()

    def _lab_dir(self, role: str) -> str:
        """The lab's folder on the machine: ~/.tcplab/<lab> of the SSH user."""
        if role not in self.dirs:
            home = self._sftp_op(role, "resolve", "~", lambda sftp: sftp.normalize("."))
            self.dirs[role] = f"{home.rstrip('/')}/{LAB_ROOT}/{self.lab}"
        return self.dirs[role]

    def _json(self, role: str, text: str | bytes, what: str):
        try:
            return json.loads(text or "null")
        except ValueError:
            raise LabError(f"{self.inventory.machines[role]}: {what} is not JSON: {str(text)[:200]!r}") from None

    def _put(self, role: str, local: Path, remote: str) -> None:
        self._sftp_op(role, "upload", remote, lambda sftp: sftp.put(str(local), remote))

    def _exists(self, role: str, path: str) -> bool:
        def is_dir(sftp: paramiko.SFTPClient) -> bool:
            try:
                return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
            except FileNotFoundError:
                return False

        return self._sftp_op(role, "look at", path, is_dir)

    def _mkdirs(self, role: str, folder: str) -> None:
        path = base = self.dirs[role]
        for part in folder[len(base):].strip("/").split("/"):
            path = f"{path}/{part}"
            if not self._exists(role, path):
                self._sftp_op(role, "create", path, lambda sftp, p=path: sftp.mkdir(p, 0o700))

    @staticmethod
    def _mkdir_quietly(sftp: paramiko.SFTPClient, path: str, mode: int) -> None:
        try:
            sftp.mkdir(path, mode)
        except OSError:
            pass  # there already (another lab's); a real problem shows at the next step


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


class SshTracer:
    """State changes traced on each machine with a TCP endpoint (source and dest), by the agent, in an
    instance named after the lab and the machine: machines may share a kernel (the test's stand-ins do).
    A machine without tracefs or root is reported as unavailable, and the run goes on without its trace."""

    def __init__(self, backend: SshBackend):
        self.backend = backend
        self.traced: dict[str, list] = {}  # role -> its clock readings
        self.info: dict = {}

    def start(self, port: int) -> dict:
        from ..statetrace import instance_name

        b = self.backend
        self.info = {"port": int(port), "traces": [], "unavailable": {}}
        for role in (r for r in ("source", "dest") if r in b.roles):
            name = instance_name(b.lab, role)
            r = b.run(role, b.agent(role, "trace-start", b.dirs[role], name, str(int(port))), check=False)
            if r.returncode == UNAVAILABLE:
                why = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
                self.info["unavailable"][role] = why
                ui.warn(f"{b.inventory.machines[role]}: {why}; the checks that read its transitions will fail")
                continue
            self.traced[role] = [self._clock(role, r, "start")]
            self.info["traces"].append({"file": f"states-{role}.trace", "host": role, "clock": self.traced[role]})
            ui.step(f"{b.inventory.machines[role]}: trace TCP state changes of port {port} in tracefs instance {name}")
        return self.info

    def stop(self, folder: Path) -> list[Path]:
        b, written = self.backend, []
        for role, clock in list(self.traced.items()):
            del self.traced[role]
            try:
                clock.append(self._clock(role, b.run(role, b.agent(role, "trace-stop", b.dirs[role]), check=False), "stop"))
                out = folder / f"states-{role}.trace"
                b.fetch(role, b.work_path(role, "states.trace"), out)
            except LabError as e:
                # The other machine's trace is still worth having; teardown removes this one's instance.
                self.info["traces"] = [t for t in self.info["traces"] if t["host"] != role]
                self.info["unavailable"][role] = str(e)
                ui.warn(str(e))
                continue
            written.append(out)
        return written

    def _clock(self, role: str, r: subprocess.CompletedProcess, what: str) -> list:
        answer = self.backend._json(role, r.stdout, "the agent's answer") if r.returncode == 0 else None
        if not isinstance(answer, dict) or not isinstance(answer.get("clock"), list):
            why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            raise LabError(f"{self.backend.inventory.machines[role]}: the state trace did not {what}: {why}")
        return answer["clock"]
