"""The verdict on screen: one row per check in a wide terminal, one block per check in a narrow one
(the expected and observed texts run to a few hundred characters, which four columns of an
80-column terminal would wrap word by word). report.json always holds the full text."""
from __future__ import annotations

import textwrap

from rich.markup import escape
from rich.table import Table

from .. import ui

WIDE = 120  # columns from which the four-column table reads well
LABEL = 9  # width of a block's field names


def verdict(title: str, rows: list[dict]) -> None:
    if ui.console.width >= WIDE:
        _table(title, rows)
    else:
        _blocks(title, rows)


def _mark(r: dict) -> str:
    return "[green]PASS[/green]" if r["passed"] else "[bold red]FAIL[/bold red]"


def _table(title: str, rows: list[dict]) -> None:
    table = Table(title=escape(title), show_lines=True, expand=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("expected")
    table.add_column("observed")
    for r in rows:
        observed = escape(r["observed"])
        if r.get("detail"):
            observed += f"\n[{'dim' if r['passed'] else 'red'}]{escape(r['detail'])}[/]"
        if r.get("hint") and not r["passed"]:
            observed += f"\n[yellow]hint: {escape(r['hint'])}[/yellow]"
        table.add_row(escape(r["name"]), _mark(r), escape(r["expected"]), observed)
    ui.console.print(table)


def _blocks(title: str, rows: list[dict]) -> None:
    # Wrapped by hand, not by a rich grid, so no line carries trailing padding into a copy and paste.
    width = max(40, ui.console.width - LABEL - 1)
    for line in textwrap.wrap(title, max(40, ui.console.width)):
        ui.console.print(f"[bold]{escape(line)}[/bold]", soft_wrap=True)
    for r in rows:
        ui.console.print(f"{_mark(r)} [bold]{escape(r['name'])}[/bold]")
        fields = [("expected", r["expected"], ""), ("observed", r["observed"], "")]
        if r.get("detail"):
            fields.append(("", r["detail"], "dim" if r["passed"] else "red"))
        if r.get("hint") and not r["passed"]:
            fields.append(("hint", r["hint"], "yellow"))
        for label, text, style in fields:
            lines = textwrap.wrap(text, width) or [""]
            for i, line in enumerate(lines):
                head = f"[dim]{label:<{LABEL}}[/dim]" if i == 0 else " " * LABEL
                body = f"[{style}]{escape(line)}[/{style}]" if style else escape(line)
                ui.console.print(f"{head} {body}", soft_wrap=True)


def detail(name: str, table: dict) -> None:
    """A check's own table (a side's timeline), under the verdicts."""
    t = Table(title=escape(f"{name}: {table.get('title', '')}"), title_justify="left", expand=False)
    for i, column in enumerate(table.get("columns") or []):
        t.add_column(escape(str(column)), justify="right" if i == 0 else "left", no_wrap=i < 4)
    for row in table.get("rows") or []:
        t.add_row(*(escape(str(cell)) for cell in row))
    ui.console.print(t)
