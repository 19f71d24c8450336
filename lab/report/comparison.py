"""The comparison of a sweep's runs: each run's verdict and figures (from its exercise's measures),
set against the round trip, as comparison.json, a table and comparison.png in the sweep's folder.
Runs on several kernels (`up --kernels`) are compared the same way, the kernel in the parameter's
place, each figure beside the kernel model's, and the figures that differ between kernels named.
Reads only the run folders, so `invoke check` on a sweep folder makes it again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from rich.markup import escape
from rich.table import Table

from .. import ui
from ..analysis.kernel_model import changes_between
from ..results.folder import write_json
from ..spec.sweep import shown
from . import measures
from .measures import COUNT, MODEL, NOT_MS, REFERENCES, RTT_CONFIGURED, RTT_MEASURED
from .plots import pyplot

# Below this round trip a ratio to it says more about the clock than about TCP.
MIN_RTT_FOR_RATIO_MS = 1.0
# Two runs' durations "differ" beyond the timer slack of any level a keepalive or persist timer here
# lands on (a 256 ms slot up to 16 s) and beyond 5 %.
DIFFERENT_MS, DIFFERENT_SHARE = 300.0, 0.05


def compare(folder: Path, sweep: dict) -> bool:
    """Writes comparison.json and comparison.png, prints the table; True if every run ran and passed."""
    runs = [_run(folder, r) for r in sweep["runs"]]
    groups: dict[str, list[str]] = {}
    for r in runs:
        for group, figures in r["figures"].items():
            names = groups.setdefault(group, [])
            names += [n for n in figures if n not in names]
    passed = bool(runs) and all(r["passed"] for r in runs)
    picture = _draw(folder, sweep, runs, groups) if groups else None
    differences = _differences(runs, groups)
    changes = _kernel_changes(folder, sweep, runs)
    write_json(folder / "comparison.json", {"exercise": sweep.get("exercise"), "parameter": sweep["parameter"],
                                            "passed": passed, "groups": groups, "runs": runs, "plot": picture,
                                            "differences": differences, "kernel_changes": changes})
    _print(sweep, runs, groups)
    if not all(isinstance(r["value"], (int, float)) for r in runs):
        if differences:
            ui.console.print("[bold]where the runs differ[/bold]")
            for line in differences:
                ui.console.print(f"  {escape(line)}")
        if sweep["parameter"] == "kernel":
            _print_changes(changes)
    if picture:
        ui.step(f"picture: {folder / picture}" if picture.endswith(".png") else f"picture {picture}")
    done = sum(r["ran"] for r in runs)
    ui.console.print("[bold green]PASSED[/bold green]" if passed else "[bold red]FAILED[/bold red]",
                     f"{sum(r['passed'] for r in runs)}/{len(runs)} runs passed" + ("" if done == len(runs) else f" ({len(runs) - done} not run)"))
    return passed


def _run(folder: Path, spec: dict) -> dict[str, Any]:
    sub = folder / spec["folder"]
    out: dict[str, Any] = {"value": spec.get("value"), "folder": spec["folder"], "ran": False, "passed": False,
                           "checks": "", "failed": [], "figures": {}, "problems": []}
    report = sub / "report.json"
    if not report.exists():
        out["problems"].append(f"{spec['folder']}: not run (no report.json)")
        return out
    try:
        data = json.loads(report.read_text())
        checks = data.get("checks") or []
        out.update(ran=True, passed=bool(data.get("passed")), checks=f"{sum(bool(c['passed']) for c in checks)}/{len(checks)}",
                   failed=[str(c["name"]) for c in checks if not c["passed"]])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        out["problems"].append(f"{spec['folder']}/report.json is not a tcplab report ({type(e).__name__}: {e})")
        return out
    out["figures"], out["problems"] = measures.run(sub)
    try:
        out["kernel"] = json.loads((sub / "manifest.json").read_text()).get("kernel", {}).get("release")
    except (OSError, ValueError, AttributeError):
        out["kernel"] = None
    return out


def _kernel_changes(folder: Path, sweep: dict, runs: list[dict]) -> list[dict]:
    """Where Linux changed, between the kernels compared, in what the exercise's figures show."""
    if sweep["parameter"] != "kernel":
        return []
    topics: set[str] = set()
    for r in runs:
        try:
            listed = json.loads((folder / r["folder"] / "manifest.json").read_text()).get("measures") or []
        except (OSError, ValueError):
            continue
        for m in listed:
            topics |= measures.TOPICS.get(str(m.get("measure")), set())
    releases = [r["kernel"] for r in runs if r.get("kernel")]
    names = {r["kernel"]: shown(r["value"]) for r in runs if r.get("kernel")}
    return [{"since": ".".join(map(str, c.since)), "topic": c.topic, "before": c.before, "after": c.after, "commit": c.commit,
             "kernels_before": [names[k] for k in before], "kernels_after": [names[k] for k in after]}
            for c, before, after in changes_between(releases, topics)] + \
           [{"topic": t, "unchanged": True} for t in sorted(topics) if not any(c.topic == t for c, _, _ in changes_between(releases, {t}))]


def _print_changes(changes: list[dict]) -> None:
    for c in changes:
        if c.get("unchanged"):
            ui.console.print(f"[dim]Linux's {escape(c['topic'])} code is the same in these kernels: the model is one for all of them[/dim]")
        else:
            ui.console.print(f"[bold]Linux {escape(c['since'])} changed {escape(c['topic'])}[/bold] ({escape(c['commit'])}): "
                             f"{escape(', '.join(c['kernels_before']))}: {escape(c['before'])}; "
                             f"{escape(', '.join(c['kernels_after']))}: {escape(c['after'])}")


def _differences(runs: list[dict], groups: dict[str, list[str]]) -> list[str]:
    """Figures (not the model's) that differ between runs: any count, a duration beyond timer slack."""
    done = [r for r in runs if r["ran"]]
    out = []
    for names in groups.values():
        for name in names:
            if name.startswith(REFERENCES):
                continue
            values = [measures.flat(r["figures"]).get(name) for r in done]
            known = [v for v in values if v is not None]
            if len(known) < 2:
                continue
            lo, hi = min(known), max(known)
            if name.endswith(COUNT):
                differ = lo != hi  # one probe more is a difference of behaviour
            elif name.endswith(NOT_MS):
                differ = hi - lo > DIFFERENT_SHARE * hi
            else:
                differ = hi - lo > max(DIFFERENT_MS, DIFFERENT_SHARE * hi)
            if differ or (len(known) < len(values)):
                cells = ", ".join(f"{shown(r['value'])} {_cell(name, v)}" for r, v in zip(done, values))
                out.append(f"{name}: {cells}")
    return out


def _cell(name: str, v: Optional[float]) -> str:
    if v is None:
        return "-"
    if name.endswith(NOT_MS):
        return f"{v:.0f}"
    return f"{v:.{3 if v < 10 else 2 if v < 1000 else 0}f}"


def _ratio(ms: Optional[float], run: dict) -> Optional[float]:
    """A figure in round trips: against the measured RTT, where the configured one is long enough to mean something."""
    flat = measures.flat(run["figures"])
    configured, measured = flat.get(RTT_CONFIGURED), flat.get(RTT_MEASURED)
    if ms is None or not measured or (configured is not None and configured < MIN_RTT_FOR_RATIO_MS):
        return None
    return ms / measured


def _print(sweep: dict, runs: list[dict], groups: dict[str, list[str]]) -> None:
    p = sweep["parameter"]
    numeric = all(isinstance(r["value"], (int, float)) for r in runs)
    if numeric:
        title = f"{sweep.get('exercise')}: {p} swept ({sweep.get('help', '')}); ms (in round trips)"
    else:
        title = f"{sweep.get('exercise')}: by {p}; ms"
        if p == "kernel":
            ui.console.print("kernels: " + ", ".join(f"{shown(r['value'])} {r.get('kernel') or '?'}" for r in runs), soft_wrap=True)
    table = Table(title=escape(title), show_lines=False, expand=False)
    table.add_column("", style="bold", no_wrap=True)
    for r in runs:
        table.add_column(escape(f"{p}={shown(r['value'])}" if numeric else shown(r["value"])), justify="right")
    table.add_row("checks", *[("[green]PASS[/green] " if r["passed"] else "[bold red]FAIL[/bold red] " if r["ran"] else "[dim]not run[/dim]")
                              + r["checks"] for r in runs])
    for group, names in groups.items():
        table.add_row(f"[dim]{escape(group)}[/dim]", *[""] * len(runs))
        for name in names:
            cells = []
            for r in runs:
                ms = measures.flat(r["figures"]).get(name)
                ratio = _ratio(ms, r) if _in_round_trips(name) else None
                cells.append(_cell(name, ms) + (f" ({ratio:.2f})" if ratio is not None else ""))
            label = escape(f" {name}")
            table.add_row(f"[dim]{label}[/dim]" if name.startswith(REFERENCES) else label,
                          *[f"[dim]{c}[/dim]" if name.startswith(REFERENCES) else c for c in cells])
    ui.console.print(table)
    for r in runs:
        if r["failed"]:
            ui.error(f"{p}={shown(r['value'])}: failed {', '.join(r['failed'])} (see {r['folder']}/report.json)")
        for problem in r["problems"]:
            ui.warn(f"{p}={shown(r['value'])}: {problem}")


def _in_round_trips(name: str) -> bool:
    """Whether a figure is also shown in round trips: a time measured, not the RTT itself, a count or
    bytes, or the model's figure."""
    return name not in (RTT_CONFIGURED, RTT_MEASURED) and not name.endswith(NOT_MS) and not name.startswith(REFERENCES)


def _categories(ax, done: list[dict], numeric: bool) -> None:
    if not numeric:
        ax.set_xticks(range(len(done)))
        ax.set_xticklabels([shown(r["value"]) + (f"\n{r['kernel']}" if r.get("kernel") else "") for r in done], fontsize=8)


def _draw(folder: Path, sweep: dict, runs: list[dict], groups: dict[str, list[str]]) -> str:
    """One panel per group of figures, in ms against the swept value, with the configured RTT dashed;
    a last panel with every figure in round trips. A picture that cannot be drawn never hides the verdict."""
    try:
        plt = pyplot()
        p = sweep["parameter"]
        xlabel = f"{p}: {sweep['help']}" if sweep.get("help") else p
        done = [r for r in runs if r["ran"]]
        numeric = all(isinstance(r["value"], (int, float)) for r in done)
        # Kernels (or any values that are not numbers) stand side by side, in the order they ran.
        xs = [r["value"] for r in done] if numeric else list(range(len(done)))
        # The panel in round trips only where there is a round trip to count in.
        ratios = any(_ratio(measures.flat(r["figures"]).get(n), r) is not None for r in done for names in groups.values() for n in names
                     if _in_round_trips(n))
        if not numeric:
            xlabel = p
        panels = len(groups) + (1 if ratios else 0)
        cols = 2
        fig, axes = plt.subplots((panels + cols - 1) // cols, cols, figsize=(12, 4.2 * ((panels + cols - 1) // cols)), squeeze=False)
        flat_axes = list(axes.flat)
        for ax, (group, names) in zip(flat_axes, groups.items()):
            colours: dict[str, str] = {}
            for name in names:
                if name.endswith(NOT_MS):
                    continue  # a number (packets, bytes), not ms: in the table only
                ys = [measures.flat(r["figures"]).get(name) for r in done]
                style: dict = dict(ls="--", color="grey") if name == RTT_CONFIGURED else dict(marker="o")
                ref = next((r for r in REFERENCES if name.startswith(r)), None)
                if ref and name[len(ref):] in colours:
                    # The model's (dotted) or the textbook's (dashed) figure in its measured figure's colour:
                    # the gap between them shows.
                    style = dict(ls=":" if ref == MODEL else "--", marker="x" if ref == MODEL else "+", color=colours[name[len(ref):]])
                line, = ax.plot(xs, [float("nan") if y is None else y for y in ys], label=name, **style)
                colours[name] = line.get_color()
            ax.set_title(group, fontsize=10)
            _categories(ax, done, numeric)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("ms")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax = flat_axes[len(groups)] if ratios else None
        for names in (groups.values() if ax is not None else []):
            for name in names:
                if not _in_round_trips(name):
                    continue
                ys = [_ratio(measures.flat(r["figures"]).get(name), r) for r in done]
                if any(y is not None for y in ys):
                    ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=name)
        if ax is not None:
            ax.axhline(1.0, ls="--", color="grey", label="1 RTT")
            _categories(ax, done, numeric)
            ax.set_title(f"in round trips (measured RTT; runs with an RTT of {MIN_RTT_FOR_RATIO_MS:g} ms or more)", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("RTTs")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        for extra in flat_axes[panels:]:
            extra.set_visible(False)
        fig.suptitle(f"{sweep.get('exercise')}: {sweep.get('title', '')}, " + (f"{p} swept" if numeric else f"by {p}"))
        fig.tight_layout()
        fig.savefig(folder / "comparison.png", dpi=100)
        plt.close(fig)
        return "comparison.png"
    except Exception as e:  # noqa: BLE001
        return f"comparison.png not drawn: {type(e).__name__}: {e}"
