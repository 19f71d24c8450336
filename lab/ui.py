"""What the user sees while tcplab works: progress lines with the elapsed time, warnings and errors,
a spinner on long waits, a progress bar for files on their way (the verdict: lab/report/tables.py).

Progress goes to a sink the caller chooses: the terminal for the commands (the default), a lab's event
stream for the lab server's workers (lab/serve/worker.py sets one). Tables and verdicts print to the
console whatever the sink; a worker's console is its log."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Optional

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
_start = time.monotonic()


class Sink:
    """Where progress goes; this one, the default, prints to the terminal. A subclass may send the
    same to elsewhere (and still call these to keep a log)."""

    def step(self, text: str, elapsed: float) -> None:
        console.print(f"[dim]{elapsed:7.2f}s[/dim] {escape(text)}")

    def warn(self, text: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {escape(text)}")

    def error(self, text: str) -> None:
        console.print(f"[bold red]error:[/bold red] {escape(text)}")

    def rule(self, text: str) -> None:
        """A heading between parts of the work (a sweep's runs)."""
        console.rule(escape(text))

    def relay(self, line: str) -> None:
        """A progress line another process printed (a hands-on lab's keeper), shown as it is."""
        console.print(escape(line), soft_wrap=True)

    def stage(self, name: str) -> None:
        """Where a lab is in its life (starting, running, finishing): a terminal shows it by the steps alone."""


_sink = Sink()


def set_sink(sink: Optional[Sink]) -> None:
    """Progress from now on goes to `sink` (None: the terminal again)."""
    global _sink
    _sink = sink or Sink()


def reset_clock() -> None:
    global _start
    _start = time.monotonic()


def step(text: str) -> None:
    _sink.step(text, time.monotonic() - _start)


def warn(text: str) -> None:
    _sink.warn(text)


def error(text: str) -> None:
    _sink.error(text)


def relay(line: str) -> None:
    _sink.relay(line)


def rule(text: str) -> None:
    _sink.rule(text)


def stage(name: str) -> None:
    _sink.stage(name)


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
def transfer(what: str, total: int, verb: str = "fetch") -> Iterator:
    """A progress bar for a file on its way (or being read); yields a function that takes the bytes done so far."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    step(f"{verb} {what} ({total / 1e6:.1f} MB)")
    with Progress(TextColumn(escape(what)), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda done: bar.update(task, completed=done)
