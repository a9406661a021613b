"""Processes that SIGKILL could not end: journaled until they are gone.

A fatal signal only wakes a task sleeping TASK_KILLABLE or interruptibly
(kernel/signal.c signal_wake_up_state()); one asleep in TASK_UNINTERRUPTIBLE
(state D) goes on sleeping, and dies only when what it waits for comes.  A
worker stuck so outlives its run: the runner names it in the result and
journals it here, with its start time (/proc/PID/stat field 22, jiffies
since boot) so that a pid reused later is never taken for it.  `restore` (or
the next run's start) kills it again and keeps the entry while it is there.
"""
import os
import signal
import time
from pathlib import Path

from .errors import KernelError
from .watchdog import InKernel, read_abandonable, stat_state

GONE_WAIT = 2.0  # seconds a SIGKILLed process is given to go


def start_time(stat_text):
    """Field 22 of /proc/PID/stat (fields counted after the ")" that ends comm)."""
    if not stat_text or ")" not in stat_text:
        return None
    return int(stat_text.rsplit(")", 1)[1].split()[19])


def to_journal(stuck: InKernel, proc=Path("/proc")):
    return {"pid": stuck.pid, "name": stuck.name, "wchan": stuck.wchan,
            "start_time": start_time(read_abandonable(Path(proc) / str(stuck.pid) / "stat"))}


def from_journal(entry):
    return entry


def _same(entry, proc):
    """The stat text of the journaled process, or None once it is gone (or its pid is another's)."""
    text = read_abandonable(Path(proc) / str(entry["pid"]) / "stat")
    if text is None or stat_state(text) in ("Z", "X") or start_time(text) != entry["start_time"]:
        return None
    return text


def remove_stale(entry, proc=Path("/proc")):
    """SIGKILL it again; raises KernelError while it is still there."""
    text = _same(entry, proc)
    if text is None:
        return
    try:
        os.kill(entry["pid"], signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + GONE_WAIT
    while time.monotonic() < end:
        text = _same(entry, proc)
        if text is None:
            return
        time.sleep(0.05)
    wchan = read_abandonable(Path(proc) / str(entry["pid"]) / "wchan") or entry["wchan"]
    raise KernelError(f"pid {entry['pid']} ({entry['name']}) is still asleep in the kernel (state "
                      f"{stat_state(text)}, wchan {wchan.strip()}) since a run SIGKILLed it: only the kernel "
                      f"or a reboot can end it")
