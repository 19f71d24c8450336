"""tcplab's one exception hierarchy: every error it raises on purpose is a LabError.

The command line turns a LabError into one line and exit status 2. The subclasses say what kind of
problem it is, for the code that handles some of them differently (a timeline that stops, a check
whose inputs are missing). Standard library only, Python 3.7 or later: lab/onhost/tracefs.py raises
TraceError on machines the SSH backend reaches, where this file is uploaded beside it.
"""
from __future__ import annotations

from typing import Optional, Sequence


class LabError(Exception):
    """Bad input or an environment problem: shown as one line, never as a traceback."""


class ConfigError(LabError):
    """A problem in a topology, exercise or inventory file, located by file and field."""

    def __init__(self, file: object, field: Optional[str], message: str):
        self.file = str(file)
        self.field = field
        self.message = message
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {message}")


class CommandError(LabError):
    """A command run on a lab host failed; the message names the host, the command and its last error line."""

    def __init__(self, host: str, argv: Sequence[str], returncode: int, stderr: str):
        self.returncode = returncode
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
        super().__init__(f"on {host}: `{' '.join(argv)}` failed: {detail}")


class HostKeyError(LabError):
    """An SSH machine's host key is unknown (and not accepted) or changed."""


class TimelineError(LabError):
    """A step did not happen as the exercise expects; the run stops, results are still collected and checked."""


class TraceError(LabError):
    """State tracing is unavailable or failed; the message says why, in one line."""


class MissingInput(LabError):
    """The results folder lacks what a check, plot or measure needs (a capture, a log, an event):
    that function fails with this as its reason, and the others still run."""
