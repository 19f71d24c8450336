"""One inventory machine reached over SSH: its connection, commands, files, and the lab's folder there.

Every command is one argv, quoted with shlex.join for the remote shell, so no value from a topology,
an inventory or `--set` is ever parsed as shell. Files travel by SFTP. Every failure becomes one
line naming the machine; a connection that broke is made again at the next call.
"""
from __future__ import annotations

import json
import shlex
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import paramiko

from ... import ui
from ...errors import CommandError, LabError
from ...spec.inventory import Inventory, Machine
from . import connect, terminal

# sudo's secure_path, so iptables and tcpdump in /usr/sbin are found also without sudo (root logins).
REMOTE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAB_ROOT = ".tcplab"  # in the SSH user's home
PROGRESS_BYTES = 1 << 20  # files above this show a progress bar on the way back
SFTP_TIMEOUT = 60.0
T = TypeVar("T")


def command_line(argv: Sequence[str], sudo: bool) -> str:
    """The remote shell's command line for one argv: every word quoted, nothing expanded."""
    prefix = ["sudo", "-n", "--"] if sudo else []
    return shlex.join([*prefix, "env", f"PATH={REMOTE_PATH}", *map(str, argv)])


class Session:
    def __init__(self, machine: Machine, inventory: Inventory, accept_new: bool, lab: str):
        self.machine, self.inventory, self.accept_new, self.lab = machine, inventory, accept_new, lab
        self.role = machine.role
        self._client: Optional[paramiko.SSHClient] = None
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._dir: Optional[str] = None

    def __str__(self) -> str:
        return str(self.machine)

    # --- the connection ----------------------------------------------------------------------------

    def connect(self) -> paramiko.SSHClient:
        client = self._client
        if client is None or not (client.get_transport() and client.get_transport().is_active()):
            self.close()
            self._client = connect.connect(self.machine, self.inventory, self.accept_new, note=ui.warn)
        return self._client

    def close(self) -> None:
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            client.close()

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or self._client is None:
            try:
                sftp = self.connect().open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise LabError(f"{self.machine}: no SFTP ({e or type(e).__name__}): enable sshd's sftp Subsystem") from None
            # A machine that stops answering must not hang the run (or its teardown, which ignores Ctrl-C).
            sftp.get_channel().settimeout(SFTP_TIMEOUT)
            self._sftp = sftp
        return self._sftp

    # --- commands ----------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """One argv, as root where the inventory says sudo."""
        r = self.shell(command_line(argv, self.machine.sudo), timeout, list(argv))
        if check and r.returncode != 0:
            raise CommandError(self.role, argv, r.returncode, r.stderr)
        return r

    def shell(self, line: str, timeout: float, argv: Optional[list] = None) -> subprocess.CompletedProcess:
        """One command line for the login shell, as the SSH user."""
        what = " ".join(argv) if argv else line
        channel = None
        try:
            _, stdout, stderr = self.connect().exec_command(line, timeout=timeout)
            channel = stdout.channel
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = channel.recv_exit_status()
        except socket.timeout:
            raise LabError(f"{self.machine}: `{what}` did not finish within {timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise LabError(f"{self.machine}: lost the SSH connection while running `{what}`: {e or type(e).__name__}") from None
        finally:
            if channel is not None:
                channel.close()
        return subprocess.CompletedProcess(argv or line, code, out, err)

    def channel(self, argv: Sequence[str], timeout: float) -> paramiko.Channel:
        """One argv left running (as root where the inventory says sudo), its stdin and stdout open for the
        caller to talk to it; closed with the connection."""
        try:
            channel = self.connect().get_transport().open_session(timeout=timeout)
            channel.exec_command(command_line(argv, self.machine.sudo))
            return channel
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise LabError(f"{self.machine}: lost the SSH connection while starting `{' '.join(argv)}`: {e or type(e).__name__}") from None

    def attached(self, argv: Sequence[str], interactive: bool) -> int:
        """One argv run on this terminal (lab/backends/ssh/terminal.py), as root where the inventory says
        sudo; with `interactive`, in a pty. Returns its exit status."""
        try:
            return terminal.run(self.connect().get_transport(), command_line(argv, self.machine.sudo), interactive)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise LabError(f"{self.machine}: lost the SSH connection: {e or type(e).__name__}") from None

    def json(self, text: str | bytes, what: str) -> Any:
        try:
            return json.loads(text or "null")
        except ValueError:
            raise LabError(f"{self.machine}: {what} is not JSON: {str(text)[:200]!r}") from None

    # --- files -------------------------------------------------------------------------------------

    def sftp_op(self, what: str, path: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        """One SFTP operation; any failure becomes one line naming the machine and the file."""
        try:
            return op(self.sftp())
        except (OSError, paramiko.SSHException, EOFError) as e:
            if not isinstance(e, PermissionError):
                self.close()
            raise LabError(f"{self.machine}: cannot {what} {path}: {e or type(e).__name__}") from None

    @property
    def lab_dir(self) -> str:
        """The lab's folder on the machine: ~/.tcplab/<lab> of the SSH user."""
        if self._dir is None:
            home = self.sftp_op("resolve", "~", lambda sftp: sftp.normalize("."))
            self._dir = f"{home.rstrip('/')}/{LAB_ROOT}/{self.lab}"
        return self._dir

    def read_file(self, path: str, offset: int = 0) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            try:
                with sftp.open(path, "rb") as f:
                    f.seek(offset)
                    return f.read()
            except FileNotFoundError:
                return b""

        return self.sftp_op("read", path, read)

    def write_file(self, path: str, text: str) -> None:
        def write(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(path, "w") as f:
                f.write(text)

        self.sftp_op("write", path, write)

    def fetch(self, path: str, local: Path) -> None:
        def get(sftp: paramiko.SFTPClient) -> None:
            try:
                size = sftp.stat(path).st_size or 0
            except FileNotFoundError:
                return
            if size < PROGRESS_BYTES:
                sftp.get(path, str(local))
                return
            with ui.transfer(f"{self.role}:{Path(path).name}", size) as advance:
                sftp.get(path, str(local), callback=lambda done, total: advance(done))

        self.sftp_op("fetch", path, get)

    def put(self, local: Path, remote: str) -> None:
        self.sftp_op("upload", remote, lambda sftp: sftp.put(str(local), remote))

    def is_dir(self, path: str) -> bool:
        def look(sftp: paramiko.SFTPClient) -> bool:
            try:
                return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
            except FileNotFoundError:
                return False

        return self.sftp_op("look at", path, look)

    def mkdirs(self, folder: str) -> None:
        """Makes `folder` and what is missing of the path to it, below the lab's folder."""
        path = base = self.lab_dir
        for part in folder[len(base):].strip("/").split("/"):
            path = f"{path}/{part}"
            if not self.is_dir(path):
                self.sftp_op("create", path, lambda sftp, p=path: sftp.mkdir(p, 0o700))

    def write_bytes(self, path: str, data: bytes, mode: int) -> None:
        def write(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(path, "wb") as f:
                f.write(data)
            sftp.chmod(path, mode)

        self.sftp_op("write", path, write)

    def mkdir_quietly(self, path: str, mode: int) -> None:
        def make(sftp: paramiko.SFTPClient) -> None:
            try:
                sftp.mkdir(path, mode)
            except OSError:
                pass  # there already (another lab's); a real problem shows at the next step

        self.sftp_op("create", path, make)
