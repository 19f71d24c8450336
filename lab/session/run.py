"""An exercise run (`invoke up`, and the lab server's automated labs): every input checked, then the
lab brought up, the exercise run, its folder judged, the lab torn down; once per value of a sweep
(`--set latency=0,10,20`), then the runs compared. Ctrl-C, SIGTERM and SIGHUP end a run the same
way, with the teardown. The lab's stages (starting, running, finishing) go to ui.stage."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import backends, ui
from ..backends import labstate
from ..backends.base import Backend
from ..backends.labstate import LabState
from ..backends.preflight import require_root, require_tools
from ..errors import LabError, TimelineError
from ..naming import check_lab_name
from ..report import comparison, verdict
from ..results import folder as results
from ..results import record, sweepfile
from ..run.lifecycle import clear_leftovers, interrupted, signals_interrupt, teardown
from ..run.timeline import Run
from ..spec import exercise as exercise_mod
from ..spec import sweep as sweep_mod
from ..spec.exercise import Exercise
from . import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, catalog  # noqa: F401  (catalog: the names exercises use)


@dataclass
class Outcome:
    """How a run ended: its exit status, its results folder (None before one was made), and, for a lab
    left up with keep, how to look at it."""

    code: int
    folder: Optional[Path] = None
    kept: str = ""


def up(name: str, lab: str, backend_name: str, sets: Sequence[str], results_dir: Optional[str], keep: bool,
       inventory: Optional[str] = None, accept_new_host_keys: bool = False) -> Outcome:
    check_lab_name(lab)
    ui.reset_clock()
    ui.stage("starting")

    def new_backend() -> Backend:
        return backends.get(backend_name, lab, inventory, accept_new_host_keys)

    # All input is checked before anything is built.
    backend = new_backend()
    plan = sweep_mod.plan(name, sets, lab, backend.addresses())
    if plan is not None and keep:
        raise LabError(f"--keep leaves one lab up, and --set {plan.parameter}=... asks for {len(plan.values)} runs: "
                       f"run the value you want to look at alone, with --keep")
    ex = plan.exercises[0] if plan else exercise_mod.load(name, sets, lab, addresses=backend.addresses())
    others = []
    for other in (plan.exercises[1:] if plan else []):
        # What a backend cannot give is refused for every value before the first run.
        others.append(new_backend())
        others[-1].prepare(other)
    backend.prepare(ex)
    for b in others:
        backend.needs_also(b)  # what the machines must have (netem for a later value's delay) is checked now too
    if backend.local:
        require_root(f"up {name}")
        require_tools({**backend.required_tools, **backend.tools})
    backend.check_environment()
    with labstate.exclusive(lab):
        clear_leftovers(lab)
        folder = results.create(Path(results_dir) if results_dir else results.default_folder(lab, ex.name))
        if plan is not None:
            return Outcome(_sweep(plan, lab, backend, folder, new_backend), folder)
        outcome = one_run(ex, lab, backend, folder, keep)
    if outcome == INTERRUPTED:
        interrupted(lab, folder)  # which says where the partial results are
        return Outcome(EXIT_INTERRUPTED)
    ui.stage("finishing")
    passed = verdict.check_folder(folder)
    return Outcome(EXIT_OK if passed else EXIT_FAILED, folder, backend.keep_hint() if keep else "")


def _sweep(plan: sweep_mod.Sweep, lab: str, backend: Backend, folder: Path, new_backend: Callable[[], Backend]) -> int:
    """The runs of a sweep, one after another, each a lab of its own brought up and torn down; then
    the comparison. A failed check does not stop the sweep; an interruption or an environment error does."""

    def starter(i: int) -> Callable[[], tuple[Backend, Exercise]]:
        def start() -> tuple[Backend, Exercise]:
            if not i:
                return backend, plan.exercises[0]
            # A backend per run: each starts from what prepare() and check_environment() give it.
            b = new_backend()
            try:
                b.prepare(plan.exercises[i])
                b.check_environment()
            except BaseException:
                b.close()
                raise
            return b, plan.exercises[i]
        return start

    runs = [SeriesRun(f"{plan.parameter}={sweep_mod.shown(v)}", "", plan.folder(i), starter(i)) for i, v in enumerate(plan.values)]
    # The machine is at fault when a run cannot start (every value was checked before): the runs after it would meet the same.
    return series(lab, folder, plan.parameter, runs, lambda finished: sweepfile.write(folder, plan, finished), stop_on_error=True)


@dataclass
class SeriesRun:
    """One run of a sweep or of `up --kernels`: what it is called, more to show in its heading, its
    folder's name, and how to get its backend (prepared and checked) and its exercise."""

    label: str
    detail: str
    folder: str
    start: Callable[[], tuple[Backend, Exercise]]


def series(lab: str, folder: Path, parameter: str, runs: list[SeriesRun], progress: Callable[[list[int]], None],
           stop_on_error: bool) -> int:
    """Runs that differ in one thing, one after another into sub-folders of `folder`, then compared.
    A failed check does not stop the series; an interruption does, and so does a run that cannot start
    when stop_on_error. `progress` records the runs finished so far (sweep.json)."""
    finished: list[int] = []
    outcome = DONE
    progress(finished)
    for i, r in enumerate(runs):
        ui.rule(f"run {i + 1} of {len(runs)}: {r.label}{r.detail}")
        sub = folder / r.folder
        try:
            backend, ex = r.start()
            clear_leftovers(lab)  # a run whose teardown failed must not stand in the next one's way
            outcome = one_run(ex, lab, backend, results.create(sub), False)
            if outcome != INTERRUPTED:
                verdict.check_folder(sub)
                finished.append(i)
                progress(finished)
        except LabError as e:
            ui.error(f"{r.label}: {e}")
            if stop_on_error:
                break
            continue
        except KeyboardInterrupt:  # between runs, or while checking one: nothing is up
            outcome = INTERRUPTED
        if outcome == INTERRUPTED:
            interrupted(lab, sub)
            break
    ui.rule(f"comparison: {parameter}")
    try:
        passed = comparison.compare(folder, sweepfile.read(folder))
    except KeyboardInterrupt:
        ui.error("interrupted while comparing: `invoke check` on the folder compares the runs again")
        return EXIT_INTERRUPTED
    if len(finished) < len(runs):
        return EXIT_INTERRUPTED if outcome == INTERRUPTED else EXIT_BAD_INPUT
    return EXIT_OK if passed else EXIT_FAILED


DONE, INTERRUPTED = "done", "interrupted"  # how one run ended


def one_run(ex: Exercise, lab: str, backend: Backend, folder: Path, keep: bool) -> str:
    """One run into `folder` (made by the caller, removed if it stays empty); DONE or INTERRUPTED."""
    try:
        return _run_lab(ex, lab, backend, folder, keep)
    finally:
        results.remove_if_empty(folder)
        backend.close()


def _run_lab(ex: Exercise, lab: str, backend: Backend, folder: Path, keep: bool) -> str:
    """Builds the lab, runs the timeline, writes the manifest; tears down unless kept."""
    ui.step(f"{ex.name}: {ex.title}")
    ui.step("parameters: " + ", ".join(f"{k}={v}" for k, v in ex.values.items()))
    state = LabState.owned(lab, backend.name, ex.name)
    manifest: dict = {}
    run: Optional[Run] = None
    error: Optional[str] = None
    built = stopped = False
    try:
        with signals_interrupt():
            try:
                ui.step(f"bring up lab {lab} on {backend.name}: {', '.join(backend.host_names(ex.topology))}")
                backend.create(ex.topology, state)
                built = True
                manifest = record.start(ex, lab, backend, folder)
                ui.stage("running")
                run = Run(ex, backend, state, folder)
                try:
                    run.execute()
                except TimelineError as e:
                    error = str(e)
                    ui.error(error)
                finally:
                    run.finish()
            except KeyboardInterrupt:
                stopped = True
    finally:
        if manifest:
            record.finish(folder, manifest, run.summary() if run else {}, "interrupted" if stopped else error)
        if keep and built and not stopped:
            state.kept, state.owner_pid = True, 0
            state.save()
        else:
            teardown(backend, state)
    return INTERRUPTED if stopped else DONE


