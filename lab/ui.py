"""What the user sees while tcplab works: progress lines with the elapsed time, warnings and errors,
a spinner on long waits, a progress bar for files on their way (the verdict: lab/report/tables.py)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
_start = time.monotonic()


def reset_clock() -> None:
    global _start
    _start = time.monotonic()


def step(text: str) -> None:
    console.print(f"[dim]{time.monotonic() - _start:7.2f}s[/dim] {escape(text)}")


def warn(text: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(text)}")


def error(text: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(text)}")


@contextmanager
def waiting(text: str) -> Iterator[None]:
    """A spinner while something slow happens (a terminal only; logs get the step line alone)."""
    step(text)
    with console.status(escape(text), spinner="dots"):
        yield


@contextmanager
def activity(text: str) -> Iterator:
    """A spinner for a long step whose detail changes (debootstrap's package, a VM's boot stage);
    yields a function taking the detail. Details marked `milestone` also print as step lines, so a
    log (no terminal) shows the stages."""
    step(text)
    with console.status(escape(text), spinner="dots") as status:
        def update(detail: str, milestone: bool = False) -> None:
            status.update(escape(f"{text}: {detail}"))
            if milestone:
                step(f"  {detail}")
        yield update


@contextmanager
def transfer(what: str, total: int) -> Iterator:
    """A progress bar for a file on its way; yields a function that takes the bytes done so far."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    step(f"fetch {what} ({total / 1e6:.1f} MB)")
    with Progress(TextColumn(escape(what)), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda done: bar.update(task, completed=done)
