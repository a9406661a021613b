"""LKDTM, the Linux Kernel Dump Test Module (drivers/misc/lkdtm/).

With CONFIG_LKDTM, debugfs has provoke-crash/DIRECT: reading it lists the
crash types this kernel knows, one per line (lkdtm_debugfs_read()); writing a
type name runs that crash at once in the writing task (direct_entry() ->
lkdtm_do_action()), so the report names the process that wrote it.  Some
types return (WARNING: a WARN_ON() and the write succeeds), some kill the
writer (BUG, EXCEPTION: an oops, make_task_dead()), some never return
(HUNG_TASK: schedule() in TASK_UNINTERRUPTIBLE; SOFTLOCKUP: a loop with
preemption off) and PANIC stops the kernel.
"""
from pathlib import Path
from typing import List, Optional

DEBUGFS = Path("/sys/kernel/debug")  # where debugfs is mounted (the guest init mounts it there)
DIRECT = "provoke-crash/DIRECT"  # relative to debugfs


def direct(debugfs: Path = DEBUGFS) -> Path:
    """The file a worker writes a crash type to."""
    return Path(debugfs) / DIRECT


def types(debugfs: Path = DEBUGFS) -> List[str]:
    """The crash types this kernel's LKDTM offers; [] without LKDTM (or debugfs)."""
    try:
        lines = (Path(debugfs) / DIRECT).read_text().splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines[1:] if line.strip()]  # lines[0]: "Available crash types:"


def unavailable(crash: Optional[str], debugfs: Path = DEBUGFS) -> Optional[str]:
    """Why `crash` (None: any type) cannot be provoked here, or None when it can."""
    known = types(debugfs)
    if not known:
        return (f"needs LKDTM ({direct(debugfs)} missing: CONFIG_LKDTM=n, or debugfs not mounted at "
                f"{debugfs})")
    if crash is not None and crash not in known:
        return f"this kernel's LKDTM has no crash type {crash} (it has {', '.join(known)})"
    return None
