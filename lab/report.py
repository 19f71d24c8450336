"""report.json: the list of checks with name, passed, expected, observed, detail, and the overall verdict."""
from __future__ import annotations

import json
from pathlib import Path

from . import checks, ui
from .results import write_json


def check_folder(folder: Path) -> bool:
    """Runs the checks recorded in a results folder, writes report.json, prints the table; True if all pass."""
    results = [r.to_dict() for r in checks.run(folder)]
    manifest = json.loads((folder / "manifest.json").read_text())
    timeline_ok = not manifest.get("timeline_error")
    passed = bool(results) and all(r["passed"] for r in results) and timeline_ok
    pictures = _draw(folder) if manifest.get("plots") else []
    write_json(folder / "report.json", {"exercise": manifest.get("exercise"), "passed": passed, "checks": results, "plots": pictures})
    title = f"{manifest.get('exercise')} on {manifest.get('backend')}: " + ", ".join(
        f"{k}={v}" for k, v in (manifest.get("parameters") or {}).items()
    )
    ui.verdict_table(title, results)
    for r in results:
        if r.get("table"):
            ui.detail_table(r["name"], r["table"])
    if not timeline_ok:
        ui.error(f"the timeline did not complete: {manifest['timeline_error']}")
    if not results:
        ui.error("this results folder lists no checks, so nothing was verified")
    for p in pictures:
        ui.step(f"picture: {folder / p}" if p.endswith((".png", ".svg")) else f"picture {p}")
    ui.console.print("[bold green]PASSED[/bold green]" if passed else "[bold red]FAILED[/bold red]",
                     f"{sum(r['passed'] for r in results)}/{len(results)} checks")
    return passed


def _draw(folder: Path) -> list[str]:
    from . import plots
    from .checks.context import Context

    return plots.draw(folder, Context(folder))
