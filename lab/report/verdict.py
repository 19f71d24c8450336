"""The verdict on a results folder: its checks run, its pictures drawn, report.json written (each
check's name, passed, expected, observed, detail and hint, the overall verdict, the pictures), and
the verdict printed."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from .. import checks, ui
from ..analysis.context import Context
from ..results.folder import write_json
from ..spec import functions
from . import plots, statediagram  # noqa: F401  (importing registers the plots)
from . import annotate, tables


def check_folder(folder: Path) -> bool:
    """Runs the checks recorded in a results folder, writes report.json, prints the verdict; True if all pass."""
    ctx = Context(folder)  # one view for checks and plots: each capture is analysed once
    manifest = ctx.manifest
    results = [r.to_dict() for r in checks.judge(ctx)]
    timeline_ok = not manifest.get("timeline_error")
    passed = bool(results) and all(r["passed"] for r in results) and timeline_ok
    pictures = draw(ctx)
    try:
        annotated = annotate.annotate_folder(ctx, results)
    except Exception as e:  # noqa: BLE001  (the annotated copy is an extra: the verdict and report.json stand without it)
        annotated = []
        ui.warn(f"no annotated capture: {e}")
    write_json(folder / "report.json", {"exercise": manifest.get("exercise"), "passed": passed, "checks": results, "plots": pictures,
                                        "annotated": annotated})
    title = f"{manifest.get('exercise')} on {manifest.get('backend')}: " + ", ".join(
        f"{k}={v}" for k, v in (manifest.get("parameters") or {}).items()
    )
    tables.verdict(title, results)
    _hands_on(manifest)
    for r in results:
        if r.get("table"):
            tables.detail(r["name"], r["table"])
    if not timeline_ok:
        ui.error(f"the timeline did not complete: {manifest['timeline_error']}")
    if not results:
        ui.error("this results folder lists no checks, so nothing was verified")
    for p in pictures:
        ui.step(f"picture: {folder / p}" if p.endswith((".png", ".svg")) else f"picture {p}")
    for a in annotated:
        ui.step(f"annotated capture (open it in Wireshark: the verdicts are packet comments): {folder / a}")
    ui.console.print("[bold green]PASSED[/bold green]" if passed else "[bold red]FAILED[/bold red]",
                     f"{sum(r['passed'] for r in results)}/{len(results)} checks")
    return passed


def draw(ctx: Context) -> list[str]:
    """Draws the plots the manifest lists; returns the files made, and for a plot that could not be
    drawn, why (a picture never hides the verdict)."""
    made: list[str] = []
    for o in functions.run(ctx, "plot"):
        if o.ok:
            made += [p.name for p in o.value] if isinstance(o.value, list) else [Path(o.value).name]
        else:
            made.append(f"{o.name}.png not drawn: {o.problem}")
    return made


def _hands_on(manifest: dict) -> None:
    """A run done by hand: where the judged parameters come from (the lab's values for those it assigned,
    what the programs set for the rest), and what could not be known."""
    hands = manifest.get("hands_on")
    if not isinstance(hands, dict):
        return
    parameters = manifest.get("parameters") or {}
    observed, unknown = hands.get("observed") or {}, hands.get("unknown") or []
    assigned, typed = hands.get("assigned") or {}, hands.get("typed") or {}
    if assigned:
        # In the exercise's order, as the title line has them.
        ordered = [k for k in parameters if k in assigned] + [k for k in assigned if k not in parameters]
        otherwise = [f"{k}={typed[k]}" for k in ordered if k in typed and typed[k] != assigned[k]]
        ui.console.print("[dim]judged at your exercise's values: " + escape(", ".join(f"{k}={assigned[k]}" for k in ordered)
                         + (f" (the programs set {', '.join(otherwise)})" if otherwise else "")) + "[/dim]")
    if observed:
        ui.console.print("[dim]judged with what the programs set: " + escape(", ".join(f"{k}={parameters.get(k)} ({v})"
                                                                                    for k, v in observed.items())) + "[/dim]")
    if unknown:
        ui.warn(f"what the programs set for {', '.join(unknown)} could not be known (no log says): the packets are judged "
                f"against the exercise's values, " + ", ".join(f"{k}={parameters.get(k)}" for k in unknown))
