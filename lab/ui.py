"""What the user sees: progress lines with elapsed time, a spinner on long waits, the verdict table."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
def transfer(what: str, total: int) -> Iterator:
    """A progress bar for a file on its way; yields a function that takes the bytes done so far."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    step(f"fetch {what} ({total / 1e6:.1f} MB)")
    with Progress(TextColumn(escape(what)), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda done: bar.update(task, completed=done)


def verdict_table(title: str, rows: list[dict]) -> None:
    table = Table(title=escape(title), show_lines=True, expand=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("expected")
    table.add_column("observed")
    for r in rows:
        mark = "[green]PASS[/green]" if r["passed"] else "[bold red]FAIL[/bold red]"
        observed = escape(r["observed"]) + (f"\n[red]{escape(r['detail'])}[/red]" if r.get("detail") and not r["passed"] else "")
        if r.get("detail") and r["passed"]:
            observed += f"\n[dim]{escape(r['detail'])}[/dim]"
        table.add_row(escape(r["name"]), mark, escape(r["expected"]), observed)
    console.print(table)


def detail_table(name: str, table: dict) -> None:
    """A check's own table (a side's timeline), under the verdicts."""
    t = Table(title=escape(f"{name}: {table.get('title', '')}"), title_justify="left", expand=False)
    for i, column in enumerate(table.get("columns") or []):
        t.add_column(escape(str(column)), justify="right" if i == 0 else "left", no_wrap=i < 4)
    for row in table.get("rows") or []:
        t.add_row(*(escape(str(cell)) for cell in row))
    console.print(t)
