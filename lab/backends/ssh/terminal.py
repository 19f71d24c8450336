"""A command on an SSH machine tied to this terminal: with a pty there for an interactive shell (this
terminal in raw mode, keys and output passed both ways, the window size followed), or without one
for a single command line whose output streams here. paramiko gives the channel; the loop is the
one its own demo (demos/interactive.py) uses."""
from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import sys
import termios
import tty
from typing import Optional

import paramiko

CHUNK = 32768


def run(transport: paramiko.Transport, command: str, interactive: bool) -> int:
    """Runs `command` (a remote shell line); returns its exit status."""
    channel = transport.open_session()
    is_tty = interactive and sys.stdin.isatty()
    if is_tty:
        size = shutil.get_terminal_size()
        channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
    channel.exec_command(command)
    try:
        if is_tty:
            _interactive(channel)
        else:
            _stream(channel, forward_stdin=interactive)
        return channel.recv_exit_status()
    finally:
        channel.close()


def _interactive(channel: paramiko.Channel) -> None:
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    previous = {signal.SIGWINCH: signal.signal(signal.SIGWINCH, lambda *_: _resize(channel))}
    # A SIGTERM or SIGHUP ends the session through the `finally`, which gives the terminal back as it was.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, lambda *_, s=sig: sys.exit(128 + s))
    try:
        tty.setraw(fd)
        channel.settimeout(0.0)
        while True:
            ready, _, _ = select.select([channel, fd], [], [])
            if channel in ready:
                try:
                    data = channel.recv(CHUNK)
                except socket.timeout:
                    continue
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in ready:
                data = os.read(fd, CHUNK)
                if not data:
                    break
                channel.sendall(data)  # a paste is many keys at once: every one of them goes
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _resize(channel: paramiko.Channel) -> None:
    size = shutil.get_terminal_size()
    try:
        channel.resize_pty(width=size.columns, height=size.lines)
    except paramiko.SSHException:
        pass


def _stream(channel: paramiko.Channel, forward_stdin: bool) -> None:
    """Output to this terminal as it comes; with forward_stdin, this process's input (a script piped in) to the command."""
    stdin = sys.stdin.fileno() if forward_stdin else None
    if stdin is None:
        channel.shutdown_write()
    while True:
        got: Optional[bytes] = None
        if channel.recv_ready():
            got = channel.recv(CHUNK)
            os.write(sys.stdout.fileno(), got)
        if channel.recv_stderr_ready():
            got = channel.recv_stderr(CHUNK)
            os.write(sys.stderr.fileno(), got)
        if got is None:
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            ready, _, _ = select.select([channel] + ([stdin] if stdin is not None else []), [], [], 0.1)
            if stdin is not None and stdin in ready:
                data = os.read(stdin, CHUNK)
                if data:
                    channel.sendall(data)
                else:
                    channel.shutdown_write()  # end of input: the command sees it too
                    stdin = None
