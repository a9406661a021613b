"""The one guard for steps that damage the running kernel for good.

LKDTM's provoke-crash (drivers/misc/lkdtm/core.c: a write to DIRECT runs the
crash type at once, from the writing task) and hwpoison leave a kernel
oopsed, tainted or with poisoned frames until it reboots.  They run inside a
ksm-harness VM guest, which vm.py marks on the guest kernel's command line,
and on any other kernel only when the user says so with ALLOW_OPTION.

A dotted parameter the kernel does not know ("ksm_harness.guest") is not
passed to init (init/main.c unknown_bootoption() leaves module parameters
alone) but stays in /proc/cmdline, which nothing but a reboot changes: so a
host cannot be mistaken for a guest by a stray environment variable.
"""
from pathlib import Path
from typing import Iterable, Optional

GUEST_MARK = "ksm_harness.guest=1"  # on the kernel command line of every ksm-harness guest
ALLOW_OPTION = "--allow-kernel-damage"  # `ksm-harness run` option: damaging steps may run here anyway


def in_guest(proc: Path = Path("/proc")) -> bool:
    """True when this kernel was booted by `ksm-harness vm` (its command line has GUEST_MARK)."""
    try:
        return GUEST_MARK in (Path(proc) / "cmdline").read_text().split()
    except OSError:
        return False


def refusal(actions: Iterable[str], allowed: bool, proc: Path = Path("/proc")) -> Optional[str]:
    """Why steps doing `actions` (the damaging ones: steps.Action.damaging)
    may not run on this kernel, or None when they may."""
    damaging = sorted(set(actions))
    if not damaging or allowed or in_guest(proc):
        return None
    return (f"do: {', '.join(damaging)} damages the running kernel for good: run it in a guest "
            f"(ksm-harness vm --kernel BZIMAGE run ...), or pass {ALLOW_OPTION} on a machine you will reboot")
