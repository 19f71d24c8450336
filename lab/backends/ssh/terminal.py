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
    previous = signal.signal(signal.SIGWINCH, lambda *_: _resize(channel))
    try:
        tty.setraw(fd)
        tty.setcbreak(fd)
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
                channel.send(data)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        signal.signal(signal.SIGWINCH, previous)


def _resize(channel: paramiko.Channel) -> None:
    size = shutil.get_terminal_size()
    try:
        channel.resize_pty(width=size.columns, height=size.lines)
    except paramiko.SSHException:
        pass


def _stream(channel: paramiko.Channel, forward_stdin: bool) -> None:
    if not forward_stdin:
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
            select.select([channel], [], [], 0.1)
