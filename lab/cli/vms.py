"""`invoke vms up|down|status`: sets of real Debian VMs under QEMU for `--backend ssh` (lab/vms/)."""
from __future__ import annotations

from .. import ui
from ..backends.preflight import require_root
from ..errors import LabError
from ..run.lifecycle import signals_interrupt
from ..vms import boot, teardown, vmset
from . import EXIT_INTERRUPTED, EXIT_OK

ACTIONS = ("up", "down", "status")


DEFAULT_NAME = "vms"


def vms(action: str, name: str | None, count: int, kernel: str, accel: str, every: bool = False) -> int:
    if action not in ACTIONS:
        raise LabError(f"`invoke vms {action}`: say up, down or status (invoke vms up --name vms --count 2 --kernel bookworm)")
    if action == "status":
        return status()
    require_root(f"vms {action}")
    if every and action != "down":
        raise LabError("--all is for `invoke vms down`")
    if action == "down":
        if every and name:
            raise LabError("--name and --all: give one (--all removes every set)")
        return down(None if every else name or DEFAULT_NAME)
    ui.reset_clock()
    try:
        with signals_interrupt():
            record = boot.up(name or DEFAULT_NAME, count, kernel, accel)
    except KeyboardInterrupt:
        ui.error("interrupted: what it had made is removed")
        return EXIT_INTERRUPTED
    inventory = record.path("inventory.yml")
    ui.console.print(f"VM set {record.name} up in {record.boot_seconds:.0f} s: {record.count} Debian {record.kernel} VMs, "
                     f"kernel {record.kernel_release}, {record.accel.upper()}")
    for role in record.roles:
        vm = record.vms[role]
        plane = f"data {vm.address} on {vm.interface}" if vm.address else f"bridges the others on {vm.interface}"
        ui.console.print(f"  {role:<9} ssh root@127.0.0.1 port {vm.port}, {plane}")
    # Whole lines, however narrow the terminal: they are meant to be copied.
    for line in (f"inventory: {inventory}", f"  invoke up exercise2 --backend ssh --inventory {inventory}",
                 f"  ssh -F {record.path('ssh_config')} source", f"  invoke vms down --name {record.name}"):
        ui.console.print(line, soft_wrap=True)
    return EXIT_OK


def down(name: str | None) -> int:
    """The set `name`, or every set (None)."""
    names = [vmset.check_name(name)] if name else vmset.names()
    if not names:
        ui.console.print("no VM sets on this machine")
    busy = []
    for n in names:
        with vmset.records_locked():
            record = vmset.load(n)
            if record is None:
                ui.console.print(f"VM set {n}: nothing to remove")
                continue
            if teardown.being_booted(record):
                busy.append(f"VM set {n} is being booted by `vms up` (PID {record.owner_pid}): Ctrl-C it (it removes what it made), "
                            f"or wait and run `invoke vms down --name {n}` again")
                continue
            removed = teardown.down(record, quiet=True)
        ui.console.print(f"VM set {n}: removed {', '.join(removed) or 'nothing'}")
    if busy:
        raise LabError("; ".join(busy))
    return EXIT_OK


def status() -> int:
    names = vmset.names()
    if not names:
        ui.console.print("no VM sets on this machine (`invoke vms up` boots one)")
        return EXIT_OK
    for n in names:
        record = vmset.load(n)
        if record is None:
            continue
        running = teardown.alive(record)
        if teardown.being_booted(record):
            state = f"booting (by `vms up`, PID {record.owner_pid})"
        else:
            state = record.state if running else ("stopped (left over: `invoke vms down --name " + n + "` removes it)")
        ui.console.print(f"{n}: {record.count} Debian {record.kernel} VMs, kernel {record.kernel_release or '?'}, "
                         f"{(record.accel or '?').upper()}, {state}")
        if running and record.state == "up":
            for role in record.roles:
                vm = record.vms[role]
                ui.console.print(f"  {role:<9} root@127.0.0.1 port {vm.port}, " + (f"data {vm.address}" if vm.address else f"bridges on {vm.interface}"))
            ui.console.print(f"  inventory: {record.path('inventory.yml')}")
    return EXIT_OK
