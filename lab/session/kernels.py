"""`invoke up EXERCISE --kernels host,bookworm,trixie`: the same exercise with the same parameters on
this machine's kernel (namespaces) and on VMs running each Debian release's kernel (lab/vms/), side
by side as a sweep's runs are: a folder per kernel, then the comparison (table, comparison.json and
comparison.png) of each figure against the kernel model.

A VM set of the kernel that is up with enough VMs (`invoke vms up --kernel trixie`; the one named
after the kernel first) is used and left up; otherwise one named after the kernel (trixie, or trixie2
where a set called trixie is up with too few VMs) is booted for the runs and removed after them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .. import backends, ui
from ..backends import labstate
from ..backends.base import Backend
from ..backends.preflight import require_root, require_tools
from ..errors import LabError
from ..results import folder as results
from ..results import sweepfile
from ..run.lifecycle import signals_interrupt
from ..spec import exercise as exercise_mod
from ..spec import sweep as sweep_mod
from ..spec.exercise import Exercise
from ..vms import boot, recipe, teardown, vmset
from . import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from .run import Outcome, SeriesRun, series

HOST = "host"
PARAMETER_HELP = "the kernel the exercise ran on: this machine's (host), or a Debian release's in VMs"


def parse(kernels: str) -> list[str]:
    names = [k.strip() for k in kernels.split(",") if k.strip()]
    known = (HOST, *recipe.RECIPES)
    for k in names:
        if k not in known:
            raise LabError(f"--kernels {kernels}: {k!r} is not a kernel here; choose from {', '.join(known)} (host: this machine's)")
    if len(set(names)) != len(names):
        raise LabError(f"--kernels {kernels}: a kernel is listed twice")
    if len(names) < 2:
        raise LabError(f"--kernels {kernels}: list two or more to compare, such as --kernels host,bookworm")
    return names


def vms_needed(ex: Exercise) -> int:
    """3 when something runs on the observer (a drop on its bridge), else 2: a capture meant for the
    observer runs on source and dest instead over SSH."""
    hosts = {p.host for p in ex.programs.values()} | {str(s.args.get("host")) for s in ex.steps if s.kind != "capture"}
    return 3 if "observer" in hosts else 2


def run(name: str, lab: str, kernels_arg: str, sets: Sequence[str], results_dir: Optional[str]) -> Outcome:
    kernels = parse(kernels_arg)
    if sweep_mod.plan(name, sets, lab, {}) is not None:  # a string parameter's commas are one value, not a sweep
        raise LabError("--kernels runs one set of parameters on each kernel; a sweep (--set name=a,b) is one kernel's: run them apart")
    require_root(f"up {name} --kernels {kernels_arg}")
    ex = exercise_mod.load(name, sets, lab)  # every value checked before any VM boots
    count = vms_needed(ex)
    sets_up: dict[str, vmset.SetRecord] = {}
    booted: list[vmset.SetRecord] = []
    outcome = Outcome(EXIT_BAD_INPUT)
    try:
        with signals_interrupt():
            for k in kernels:
                if k == HOST:
                    continue
                found = _usable_set(k, count)
                if found is not None:
                    ui.step(f"using VM set {found.name} ({found.count} Debian {k} VMs, kernel {found.kernel_release}), which stays up")
                    sets_up[k] = found
                else:
                    sets_up[k] = boot.up(_free_name(k), count, k)
                    booted.append(sets_up[k])
            outcome = _runs(ex, name, lab, kernels, sets, sets_up, results_dir)
    except KeyboardInterrupt:
        ui.error("interrupted")
        outcome = Outcome(EXIT_INTERRUPTED, outcome.folder)
    finally:
        for record in booted:
            ui.step(f"removing VM set {record.name}, booted for these runs")
            teardown.down(record, quiet=True)
    return outcome


def _usable_set(kernel: str, count: int) -> Optional[vmset.SetRecord]:
    """An up set of the kernel with enough VMs: the one named after it first, then any other."""
    for name in [kernel] + [n for n in vmset.names() if n != kernel]:
        record = vmset.load(name)
        if record is not None and record.state == "up" and record.kernel == kernel and record.count >= count and teardown.alive(record):
            return record
    return None


def _free_name(kernel: str) -> str:
    """The kernel's name for a set booted for these runs, or, where a set of that name is up but will
    not do (too few VMs), the kernel's name with the first number free."""
    def taken(n: str) -> bool:
        record = vmset.load(n)  # a set left over from a killed `vms up` is not taken: booting removes it
        return record is None or (record.state == "up" and teardown.alive(record)) or teardown.being_booted(record)

    taken_names = {n for n in vmset.names() if taken(n)}
    return next(n for n in [kernel] + [f"{kernel}{i}" for i in range(2, 100)] if n not in taken_names)


def _backend(kernel: str, lab: str, sets_up: dict[str, vmset.SetRecord]) -> Backend:
    if kernel == HOST:
        return backends.get("netns", lab)
    return backends.get("ssh", lab, str(sets_up[kernel].path("inventory.yml")))


def _runs(ex: Exercise, name: str, lab: str, kernels: list[str], sets: Sequence[str], sets_up: dict[str, vmset.SetRecord],
          results_dir: Optional[str]) -> Outcome:
    plans: list[tuple[str, Backend, Exercise]] = []
    try:
        for k in kernels:
            backend = _backend(k, lab, sets_up)
            plans.append((k, backend, exercise_mod.load(name, sets, lab, addresses=backend.addresses())))
            backend.prepare(plans[-1][2])
        for k, backend, _ in plans:  # every machine checked before the first run
            if backend.local:
                require_tools({**backend.required_tools, **backend.tools})
            backend.check_environment()
        folder = results.create(Path(results_dir) if results_dir else results.default_folder(lab, f"{ex.name}-kernels"))
        runs = [SeriesRun(f"kernel {k}", f" ({sets_up[k].kernel_release}, VM set {sets_up[k].name})" if k in sets_up else "",
                          f"kernel-{k}", lambda b=backend, e=ex_k: (b, e)) for k, backend, ex_k in plans]

        def progress(finished: list[int]) -> None:
            sweepfile.write_runs(folder, ex.name, ex.title, "kernel", PARAMETER_HELP,
                                 [{"value": k, "folder": f"kernel-{k}", "done": i in finished} for i, (k, _, _) in enumerate(plans)])

        with labstate.exclusive(lab):
            # A kernel whose run cannot start says nothing of the others, which run on other machines.
            return Outcome(series(lab, folder, "kernel", runs, progress, stop_on_error=False), folder)
    finally:
        for _, backend, _ in plans:  # those that never ran too (closing twice is harmless)
            backend.close()
