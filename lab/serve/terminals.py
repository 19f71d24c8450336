"""Browser terminals: one shell per host of a hands-on lab, the shell `invoke shell HOST` gives (the
backend's own command, or `python -m lab.session.terminal LAB HOST` over SSH), on a pty of the
server's, shared by everyone watching it.

The student's websocket writes to it and sizes it; the instructor's only reads. The last SCROLLBACK
bytes are kept, so a websocket that dropped and came back re-attaches to the same shell with its
screen. A shell lives until its lab ends (or it exits: the next connection opens a new one)."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
from typing import Callable

from ..errors import LabError
from ..onhost import procs
from ..session import handson, swarmrun
from ..spec import exercise as exercise_mod

SCROLLBACK = 64 * 1024
WINCH_AGAIN = (0.5, 1.5, 3.0, 6.0)  # s after a shell starts: its size announced again (see Terminal._winch)
REPO = exercise_mod.EXERCISE_DIR.parent


class Terminal:
    def __init__(self, lab: str, host: str, on_input: Callable[[], None]):
        self.lab, self.host = lab, host
        self.master, slave = os.openpty()
        self._set_size(self.master, 30, 100)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        on_swarm = swarmrun.shell_argv(lab, host)
        try:
            direct = (on_swarm, None, {}) if on_swarm else handson.shell_argv(host, lab)
        except LabError:
            direct = None  # the python wrapper says why, in the terminal
        # The backend's own command where it has one (no Python to start first: the shell is there at once).
        argv, cwd, added = direct or ([sys.executable, "-m", "lab.session.terminal", lab, host], str(REPO), {})
        env.update(added)
        env["TERM"] = "xterm-256color"
        # setsid --ctty: a session of its own whose controlling terminal is the pty (Ctrl-C and job control work),
        # without a preexec_fn, which is not safe in a process with threads (the server's).
        self.proc = subprocess.Popen(["setsid", "--ctty", *argv], cwd=cwd or str(REPO), stdin=slave, stdout=slave, stderr=slave,
                                     env=env, close_fds=True)
        os.close(slave)
        self.start = procs.start_time(self.proc.pid)
        os.set_blocking(self.master, False)
        self.buffer = bytearray()
        self.listeners: set[asyncio.Queue] = set()
        self.on_input = on_input
        self.closed = False
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._readable)
        for delay in WINCH_AGAIN:
            loop.call_later(delay, self._winch)

    @staticmethod
    def _set_size(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the shell ended
            self.close()
            return
        self.buffer += data
        del self.buffer[:-SCROLLBACK]
        for q in list(self.listeners):
            if q.qsize() < 1000:  # a watcher that cannot keep up loses output rather than the server its memory
                q.put_nowait(data)

    def attach(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        if self.buffer:
            q.put_nowait(bytes(self.buffer))
        if self.closed:
            q.put_nowait(None)
        self.listeners.add(q)
        return q

    def detach(self, q: asyncio.Queue) -> None:
        self.listeners.discard(q)

    def write(self, data: str) -> None:
        if self.closed or not data:
            return
        self.on_input()
        raw = data.encode()
        try:
            while raw:
                n = os.write(self.master, raw[:4096])
                raw = raw[n:]
        except (BlockingIOError, OSError):
            pass  # a shell that reads nothing loses keystrokes beyond the pty's buffer, not the server's time

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed and 2 <= cols <= 1000 and 2 <= rows <= 500:
            self._set_size(self.master, rows, cols)  # the kernel sends the shell SIGWINCH

    def _winch(self) -> None:
        """The size again, to the shell's side: a resize made while `docker exec` was starting (after it read
        the size, before it listens for SIGWINCH) is otherwise lost, and the shell wraps lines at a width the
        browser's terminal does not have. Harmless otherwise: the same size changes nothing further on."""
        if not self.closed and procs.same_process(self.proc.pid, self.start):
            try:
                os.killpg(self.proc.pid, signal.SIGWINCH)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        os.close(self.master)
        # A hang-up to the shell's session (ours: we made it), then SIGKILL a second later to the shell we started
        # if it is still there; the event loop does not wait for it.
        if procs.same_process(self.proc.pid, self.start):
            try:
                os.killpg(self.proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
            loop.call_later(1.0, self._reap)
        for q in list(self.listeners):
            q.put_nowait(None)

    def _reap(self) -> None:
        if self.proc.poll() is None and procs.same_process(self.proc.pid, self.start):
            self.proc.kill()
            self.proc.poll()


class Terminals:
    """Every open shell, by lab and host."""

    def __init__(self, on_input: Callable[[str], None]):
        self._open: dict[tuple[str, str], Terminal] = {}
        self._on_input = on_input

    def get(self, lab_id: str, lab: str, host: str) -> Terminal:
        t = self._open.get((lab_id, host))
        if t is None or t.closed:
            t = Terminal(lab, host, lambda: self._on_input(lab_id))
            self._open[(lab_id, host)] = t
        return t

    def close_lab(self, lab_id: str) -> None:
        for key in [k for k in self._open if k[0] == lab_id]:
            self._open.pop(key).close()

    def close_all(self) -> None:
        for t in self._open.values():
            t.close()
        self._open.clear()
