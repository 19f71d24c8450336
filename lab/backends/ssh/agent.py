"""The lab's agent on an SSH machine (lab/onhost/agent.py), as the backend calls it: uploaded into the
lab's folder with the modules it imports, then started once per connection as `agent.py serve`, which
answers every command (spawn, signal, stop-all, facts, trace-start, trace-stop, trace-remove) over that
one channel, under sudo where the inventory says so. Why not one `python3 agent.py COMMAND` a command: a
slow machine (an emulated VM here) takes half a second to start Python and its imports, a dozen times a
run. Where serving fails, the command runs on its own, as before, and that run's error is the one told."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import weakref
from pathlib import Path
from typing import Optional

import paramiko

from ... import errors
from ...errors import CommandError, LabError
from ...onhost import handson, pathrtt, procs, sysinfo, tracefs
from ..base import Process
from .session import Session

# The agent and what it imports, uploaded side by side (errors.py: tracefs raises its TraceError), and the
# hands-on helper. The
# agent itself is not imported here: it is a program of the machine's, whose imports are flat.
FILES = [Path(procs.__file__).with_name("agent.py")] + [Path(m.__file__) for m in (procs, sysinfo, tracefs, errors, handson, pathrtt)]
UNAVAILABLE = 3  # the agent's exit status when a machine cannot trace (no tracefs, no tracepoint)


_uploaded: "weakref.WeakSet[Session]" = weakref.WeakSet()  # sessions whose machine has the agent, from this process
_servers: "weakref.WeakKeyDictionary[Session, _Server]" = weakref.WeakKeyDictionary()
_starting: "weakref.WeakKeyDictionary[Session, threading.Lock]" = weakref.WeakKeyDictionary()  # one start a machine
_servers_lock = threading.Lock()  # the two dictionaries only: never held over the network


def upload(s: Session) -> None:
    folder = f"{s.lab_dir}/agent"
    s.mkdirs(folder)
    for path in FILES:
        s.put(path, f"{folder}/{path.name}")
    _uploaded.add(s)


def call(s: Session, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["python3", f"{s.lab_dir}/agent/agent.py", *args]
    server = _server(s, argv[:2], timeout)
    if server is not None:
        r = server.ask(list(args), argv, timeout)
        if r is not None:
            if check and r.returncode != 0:
                raise CommandError(s.role, argv, r.returncode, r.stderr)
            return r
        with _servers_lock:
            if _servers.get(s) is server:  # not one another thread started meanwhile
                del _servers[s]
    return s.run(argv, timeout=timeout, check=check)


class _Server:
    """`agent.py serve` on one machine, over one channel of the session's connection; one command at a
    time (a lock: a run's other threads may ask too)."""

    def __init__(self, channel: paramiko.Channel, machine: str):
        self.channel, self.machine, self.lock = channel, machine, threading.Lock()
        self.answers = channel.makefile("rb")

    def alive(self) -> bool:
        return not (self.channel.closed or self.channel.exit_status_ready())

    def ask(self, args: list[str], argv: list[str], timeout: float) -> Optional[subprocess.CompletedProcess]:
        """The command's answer; None where the server did not answer (the caller runs it on its own)."""
        with self.lock:
            try:
                self.channel.settimeout(timeout)
                self.channel.sendall((json.dumps({"args": args}) + "\n").encode())
                line = self.answers.readline()
                answer = json.loads(line)
                return subprocess.CompletedProcess(argv, int(answer["code"]), answer["out"], answer["err"])
            except socket.timeout:
                self.channel.close()  # an answer that comes later must not be taken for the next command's
                raise LabError(f"{self.machine}: `{' '.join(argv)}` did not finish within {timeout:g} s") from None
            except (paramiko.SSHException, OSError, EOFError, ValueError, KeyError, TypeError):
                self.channel.close()
                return None
            except BaseException:
                self.channel.close()  # Ctrl-C mid-command: what the channel holds next is unknown
                raise


def _server(s: Session, python: list[str], timeout: float) -> Optional[_Server]:
    if s not in _uploaded:
        return None  # the agent may not be there yet: the command on its own says so if it is not
    with _servers_lock:
        server = _servers.get(s)
        if server is not None and server.alive():
            return server
        starting = _starting.setdefault(s, threading.Lock())
    with starting:
        with _servers_lock:
            server = _servers.get(s)
        if server is not None and server.alive():
            return server  # another thread started it while this one waited
        try:
            server = _Server(s.channel([*python, "serve"], timeout), str(s.machine))
        except LabError:
            return None
        with _servers_lock:
            _servers[s] = server
        return server


def answer(s: Session, *args: str, timeout: float = 30) -> object:
    """A command whose answer is JSON, read back."""
    return s.json(call(s, *args, timeout=timeout).stdout, "the agent's answer")


def spawn(s: Session, name: str, argv: list[str]) -> "AgentProcess":
    """Starts a program; the agent records it on the machine before it answers."""
    r = call(s, "spawn", s.lab_dir, name, *argv)
    try:
        pid = int(r.stdout.split()[0])
    except (IndexError, ValueError):
        raise LabError(f"{s.machine}: {name} did not start: {r.stderr.strip() or r.stdout.strip()}") from None
    return AgentProcess(s, name, pid)


class AgentProcess(Process):
    """A program the agent started; its exit status appears in <name>.status when it ends."""

    def __init__(self, session: Session, name: str, pid: int):
        folder = session.lab_dir
        super().__init__(name, session.role, pid, f"{folder}/{name}.log", f"{folder}/{name}.err")
        self.session = session
        self._status: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self._status is None:
            text = self.session.read_file(f"{self.session.lab_dir}/{self.name}.status")
            if text.strip():
                self._status = int(text)
        return self._status

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            call(self.session, "signal", self.session.lab_dir, self.name, signal.Signals(sig).name)
