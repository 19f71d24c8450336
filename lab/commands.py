"""The commands behind `invoke up/check/down/status/list`. Each returns the exit status to use."""
from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional, Sequence

from . import backends, comparison, labstate, procs, report, results, statetrace, sysinfo, ui
from . import exercise as exercise_mod
from . import sweep as sweep_mod
from .errors import LabError
from .labstate import LabState
from .naming import PREFIX, check_lab_name
from .preflight import require_root, require_tools
from .backends.netns import list_netns
from .timeline import Run, TimelineError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def up(name: str, lab: str, backend_name: str, sets: Sequence[str], results_dir: Optional[str], keep: bool,
       inventory: Optional[str] = None, accept_new_host_keys: bool = False) -> int:
    check_lab_name(lab)
    ui.reset_clock()
    # All input is checked before anything is built.
    backend = backends.get(backend_name, lab, inventory, accept_new_host_keys)
    plan = sweep_mod.plan(name, sets, lab, backend.addresses())
    if plan is not None and keep:
        raise LabError(f"--keep leaves one lab up, and --set {plan.parameter}=... asks for {len(plan.values)} runs: "
                       f"run the value you want to look at alone, with --keep")
    ex = plan.exercises[0] if plan else exercise_mod.load(name, sets, lab, addresses=backend.addresses())
    for other in (plan.exercises[1:] if plan else []):
        # What a backend cannot give (a delay over SSH) is refused for every value before the first run.
        backends.get(backend_name, lab, inventory, accept_new_host_keys).prepare(other)
    backend.prepare(ex)
    if backend.local:
        require_root(f"up {name}")
        require_tools({**backend.required_tools, **backend.tools})
    backend.check_environment()
    with labstate.exclusive(lab):
        _clear_leftovers(lab)
        folder = results.create(Path(results_dir) if results_dir else results.default_folder(lab, ex.name))
        if plan is not None:
            return _up_sweep(plan, lab, backend, folder, lambda: backends.get(backend_name, lab, inventory, accept_new_host_keys))
        outcome = _one_run(ex, lab, backend, folder, keep)
    if outcome == "interrupted":
        return _interrupted(lab, folder)
    passed = report.check_folder(folder)
    if keep:
        ui.console.print(f"lab {lab} is still up (--keep): {backend.keep_hint()}; `invoke down --lab {lab}` removes it")
    ui.console.print(f"results: {folder}")
    return EXIT_OK if passed else EXIT_FAILED


def _one_run(ex, lab: str, backend, folder: Path, keep: bool) -> str:
    """One run into `folder` (made by the caller, removed if it stays empty); 'done' or 'interrupted'."""
    try:
        return _run_lab(ex, lab, backend, folder, keep)
    finally:
        _remove_if_empty(folder)
        backend.close()


def _up_sweep(plan: sweep_mod.Sweep, lab: str, backend, folder: Path, new_backend) -> int:
    """The runs of a sweep, one after another, each a lab of its own brought up and torn down; then
    the comparison. A failed check does not stop the sweep; an interruption or an environment error does."""
    finished: list[int] = []
    outcome = "done"
    sweep_mod.write(folder, plan, finished)
    for i, ex in enumerate(plan.exercises):
        ui.console.rule(f"run {i + 1} of {len(plan.values)}: {plan.parameter}={sweep_mod.shown(plan.values[i])}")
        sub = folder / plan.folder(i)
        try:
            if i:
                # A backend per run: each starts from what prepare() and check_environment() give it.
                backend = new_backend()
                try:
                    backend.prepare(ex)
                    backend.check_environment()
                except BaseException:
                    backend.close()
                    raise
            _clear_leftovers(lab)  # a run whose teardown failed must not stand in the next one's way
            outcome = _one_run(ex, lab, backend, results.create(sub), False)
            if outcome != "interrupted":
                report.check_folder(sub)
                finished.append(i)
                sweep_mod.write(folder, plan, finished)
        except LabError as e:
            # The machine is at fault (every value was checked before): the runs after it would meet the same.
            ui.error(f"{plan.parameter}={sweep_mod.shown(plan.values[i])}: {e}")
            break
        except KeyboardInterrupt:  # between runs, or while checking one: nothing is up
            outcome = "interrupted"
        if outcome == "interrupted":
            _interrupted(lab, sub)
            break
    ui.console.rule(f"comparison: {plan.parameter}")
    try:
        passed = comparison.compare(folder, sweep_mod.read(folder))
    except KeyboardInterrupt:
        ui.error("interrupted while comparing: `invoke check` on the folder compares the runs again")
        return EXIT_INTERRUPTED
    ui.console.print(f"results: {folder}")
    if len(finished) < len(plan.values):
        return EXIT_INTERRUPTED if outcome == "interrupted" else EXIT_BAD_INPUT
    return EXIT_OK if passed else EXIT_FAILED


def _interrupted(lab: str, folder: Path) -> int:
    ui.error(f"interrupted: lab {lab} torn down")
    if folder.exists():
        ui.console.print(f"partial results: {folder}")
    return EXIT_INTERRUPTED


def _run_lab(ex, lab: str, backend, folder: Path, keep: bool) -> str:
    """Builds the lab, runs the timeline, writes the manifest; tears down unless kept. Returns 'done' or 'interrupted'."""
    ui.step(f"{ex.name}: {ex.title}")
    ui.step("parameters: " + ", ".join(f"{k}={v}" for k, v in ex.values.items()))
    state = LabState.owned(lab, backend.name, ex.name)
    manifest: dict = {}
    run: Optional[Run] = None
    built = interrupted = False
    try:
        with _signals_interrupt():
            try:
                ui.step(f"bring up lab {lab} on {backend.name}: {', '.join(backend.host_names(ex.topology))}")
                backend.create(ex.topology, state)
                built = True
                manifest = _manifest(ex, lab, backend, folder)
                run = Run(ex, backend, state, folder)
                try:
                    run.execute()
                except TimelineError as e:
                    manifest["timeline_error"] = str(e)
                    ui.error(str(e))
                finally:
                    run.finish()
            except KeyboardInterrupt:
                interrupted = True
    finally:
        if manifest:
            manifest.update(run.summary() if run else {})
            manifest["finished"] = _now()
            if interrupted:
                manifest["timeline_error"] = "interrupted"
            results.write_json(folder / "manifest.json", manifest)
        if keep and built and not interrupted:
            state.kept, state.owner_pid = True, 0
            state.save()
        else:
            _teardown(backend, state)
    return "interrupted" if interrupted else "done"


def check(folder: str) -> int:
    path = Path(folder)
    if not path.is_dir():
        raise LabError(f"{folder}: no such results folder")
    sweep = sweep_mod.read(path)
    if sweep is not None:
        for run in sweep["runs"]:
            if (path / run["folder"] / "manifest.json").exists():
                ui.console.rule(f"{sweep['parameter']}={sweep_mod.shown(run.get('value'))}")
                report.check_folder(path / run["folder"])
        ui.console.rule(f"comparison: {sweep['parameter']}")
        passed = comparison.compare(path, sweep)
        ui.console.print(f"results: {path}")
        return EXIT_OK if passed else EXIT_FAILED
    passed = report.check_folder(path)
    ui.console.print(f"results: {path}")
    return EXIT_OK if passed else EXIT_FAILED


def down(lab: Optional[str], all_labs: bool, inventory: Optional[str] = None) -> int:
    if all_labs:
        if inventory:
            raise LabError("--all and --inventory do not mix: `invoke down --lab X --inventory FILE` removes lab X from those machines")
        names = sorted(set(labstate.labs()) | set(_stray_labs()) | set(_docker_labs()))
    else:
        names = [check_lab_name(lab or "tcplab")]
    if not names:
        ui.console.print("no labs to remove")
    docker_labs = set(_docker_labs()) if names else set()
    for name in names:
        state = labstate.load(name) or LabState(name, "ssh" if inventory else "docker" if name in docker_labs else "netns")
        if inventory and state.backend != "ssh":
            raise LabError(f"lab {name} runs on {state.backend}, not on SSH machines: drop --inventory")
        if state.backend == "ssh":
            inventory_file = inventory or state.inventory
            if not inventory_file:
                raise LabError(f"lab {name} ran over SSH and its inventory is not recorded: `invoke down --lab {name} --inventory FILE`")
        else:
            inventory_file = None
            require_root("down")
        if state.owner_alive() and state.owner_pid != os.getpid():
            # `up` is still running: let it tear its own lab down, then sweep what is left.
            ui.step(f"lab {name}: stopping its `up` (pid {state.owner_pid})")
            procs.stop(state.owner_pid, state.owner_start, grace=15)
            state = labstate.load(name) or state
        removed = backends.get(state.backend, name, inventory_file).destroy(state) + statetrace.remove(state)
        state.remove()
        labstate.drop_lock(name)
        ui.console.print(f"lab {name}: " + (f"removed {', '.join(removed)}" if removed else "nothing left to remove"))
    return EXIT_OK


def status() -> int:
    docker_labs = set(_docker_labs())
    names = sorted(set(labstate.labs()) | set(_stray_labs()) | docker_labs)
    if not names:
        ui.console.print("no labs on this machine")
    for name in names:
        state = labstate.load(name)
        if state is None:
            what = "containers" if name in docker_labs else "namespaces"
            ui.console.print(f"{name}: leftover {what} without a state file; `invoke down --lab {name}` removes them")
            continue
        if state.owner_alive():
            how = f"running `up {state.exercise}` (pid {state.owner_pid})"
        elif state.kept:
            how = f"kept up after {state.exercise} (--keep)"
        else:
            how = "left over from an interrupted run"
        if state.backend == "ssh":
            where = f"machines: {', '.join(state.machines or []) or 'none yet'} (inventory {state.inventory})"
        else:
            present = [ns for ns in list_netns() if ns in state.namespaces]
            things = "containers" if state.backend == "docker" else "namespaces"
            where = f"{things}: {', '.join(present) or 'none'}"
        ui.console.print(f"{name}: {state.backend}, {how}, since {state.created}; {where}")
    return EXIT_OK


def list_exercises() -> int:
    for name in exercise_mod.known():
        ex = exercise_mod.load(name)
        ui.console.print(f"[bold]{name}[/bold]: {ex.title}")
        for p in ex.parameters.values():
            ui.console.print(f"    {p.name}={p.default}  {p.help}")
    return EXIT_OK


# --- helpers ---------------------------------------------------------------------------------------


def _manifest(ex, lab: str, backend, folder: Path) -> dict:
    hosts = [h for h in ("source", "dest") if h in ex.topology.nodes] or list(ex.topology.nodes)
    # The timer checks read HZ; the client's host (source) is the one whose timers they measure.
    facts = backend.facts(hosts[0])
    manifest = {
        "tcplab": "0.1.0",
        "exercise": ex.name,
        "title": ex.title,
        "lab": lab,
        "backend": backend.name,
        "parameters": ex.values,
        "addresses": {n.name: n.ip for n in ex.topology.nodes.values() if n.ip},
        "topology": ex.topology.to_dict(),
        "kernel": facts["kernel"],
        "sysctls": {h: backend.read_sysctls(h, sorted(set(sysinfo.TCP_SYSCTLS) | set(ex.sysctls.get(h, {})))) for h in hosts},
        "sysctls_set": ex.sysctls,
        "tools": facts["tools"],
        "started": _now(),
        "checks": ex.checks,
        "plots": ex.plots,
        "measures": ex.measures,
        **backend.describe(),
    }
    results.write_json(folder / "manifest.json", manifest)
    return manifest


def _clear_leftovers(lab: str) -> None:
    old = labstate.load(lab)
    if old is None:
        return
    if old.owner_alive():
        raise LabError(f"lab {lab} is in use by `up` (pid {old.owner_pid}); choose another --lab or wait for it")
    if old.kept:
        raise LabError(f"lab {lab} is still up from an earlier `up --keep`: run `invoke down --lab {lab}` first, or choose another --lab")
    ui.warn(f"lab {lab} has leftovers from an interrupted run; removing them")
    backends.get(old.backend, lab, old.inventory or None).destroy(old)
    statetrace.remove(old)
    old.remove()


def _teardown(backend, state: LabState) -> None:
    # A second Ctrl-C or SIGTERM must not cut the teardown short and leave half a lab behind.
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stoppers}
    try:
        ui.step(f"tear down lab {state.lab}")
        backend.destroy(state)
        statetrace.remove(state)
        state.remove()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end `up` the way Ctrl-C does: teardown, then a non-zero exit."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stray_labs() -> list[str]:
    """Labs whose namespaces exist without a state file (the state folder is on tmpfs; namespaces may outlive it)."""
    out = set()
    for ns in list_netns():
        parts = ns.split("-")
        if len(parts) == 3 and parts[0] == PREFIX:
            out.add(parts[1])
    return sorted(out)


def _docker_labs() -> list[str]:
    """Labs with containers in Docker; none, quietly, where Docker is absent."""
    from .backends.docker import lab_names

    return lab_names()


def images(rebuild: bool, image: str = "host") -> int:
    from . import images as images_mod
    from .backends.docker import client

    builders = {"host": images_mod.ensure, "ssh-vm": images_mod.ensure_ssh_vm}
    if image not in builders:
        raise LabError(f"--image {image!r}: images: {', '.join(builders)}")
    require_root("images")
    ui.reset_clock()
    tag = builders[image](client(), rebuild=rebuild)
    ui.console.print(f"image: {tag}")
    return EXIT_OK


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")



