"""KVM or TCG: which QEMU accelerator can boot Debian's kernels here, and why.

KVM needs /dev/kvm and the CPU's virtualization extensions (vmx, svm). Some hosts answer on
/dev/kvm without them: PVM (the kvm_pvm module, found on nested cloud machines such as this
project's build machines) runs only guest kernels built for PVM, and Debian's are not, so a VM
there would hang silently after the firmware. TCG (QEMU's own emulation) boots any kernel, slower.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabError

ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class Accel:
    name: str  # kvm or tcg
    why: str

    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def _kvm_problem(kvm: str = "/dev/kvm", pvm: str = "/sys/module/kvm_pvm", flags: set[str] | None = None) -> str | None:
    """Why KVM cannot boot Debian's kernels here, or None (the paths and CPU flags are this machine's
    unless given)."""
    if not os.path.exists(kvm):
        return "no /dev/kvm"
    try:
        os.close(os.open(kvm, os.O_RDWR))
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    if not (_cpu_flags() if flags is None else flags) & {"vmx", "svm"}:
        if Path(pvm).exists():
            return "/dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels, and Debian's are not"
        return "the CPU shows no vmx or svm"
    return None


def choose(wanted: str = "auto") -> Accel:
    if wanted not in ACCELS:
        raise LabError(f"--accel {wanted!r}: choose one of {', '.join(ACCELS)}")
    problem = _kvm_problem()
    if wanted == "tcg":
        return Accel("tcg", "asked for (--accel tcg)")
    if wanted == "kvm":
        if problem:
            raise LabError(f"--accel kvm: {problem}; leave --accel out (or --accel tcg) to use QEMU's emulation")
        return Accel("kvm", "asked for (--accel kvm)")
    if problem:
        return Accel("tcg", f"{problem}: QEMU's emulation (TCG) instead, slower")
    return Accel("kvm", "/dev/kvm with the CPU's virtualization extensions")
