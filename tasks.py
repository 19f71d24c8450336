"""tcplab's commands. `invoke --list` shows them; `invoke --help TASK` shows each one's options.

They live in lab/tasks.py, which the `tcplab` program (the image's entry point) also serves;
`test` is the repository's own.
"""
from __future__ import annotations

import sys

from invoke import Exit, task

from lab.tasks import *  # noqa: F401,F403 (every command, collected by invoke from this module)


@task(help={"pytest_args": "extra arguments for pytest, for example '-k unit -x'"})
def test(c, pytest_args=""):
    """Run the whole test suite: unit tests and real end-to-end labs (needs root)."""
    result = c.run(f"{sys.executable} -m pytest {pytest_args}", pty=False, warn=True)
    if result.exited:
        raise Exit(code=result.exited)
