"""Run external programs: argv lists only, echoed before they run (as KUnit's tool does).

A program the harness starts (losetup, mkswap, swapon, swapoff, mount) runs
in a session of its own, so the terminal's Ctrl-C (sent to the foreground
process group) reaches the harness alone; and the harness defers SIGINT,
SIGTERM and SIGHUP until the program has exited, so a half-done losetup or
swapoff never goes unrecorded (subprocess.run() would SIGKILL it on
KeyboardInterrupt).  The program dies with the harness (PR_SET_PDEATHSIG), so
no orphan swapoff races the next start's recovery: mm/swapfile.c
try_to_unuse() checks signal_pending() between mms (one mm's pages are all
read back first), and an interrupted swapoff re-inserts the area
(reinsert_swap_info()), which the next start then removes.
"""
import logging
import os
import shlex
import subprocess

from ._mem import lib
from .cleanup import signals_deferred
from .errors import KernelError

log = logging.getLogger("ksm-harness")


def run(argv, check=True, timeout=60, **kwargs):
    """Run argv (a list, never a shell string); return the CompletedProcess.

    The command is logged at INFO level first, so `--verbose` shows every
    command the harness runs.  With check=True a non-zero exit raises
    KernelError carrying the command and its stderr.
    """
    if isinstance(argv, str):
        raise TypeError("argv must be a list, not a shell string")
    log.info("$ %s", shlex.join(str(a) for a in argv))
    harness = os.getpid()
    with signals_deferred(lambda: [shlex.join(str(a) for a in argv)]):
        proc = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
            start_new_session=True, preexec_fn=lambda: die_with(harness), **kwargs
        )
    if check and proc.returncode != 0:
        raise KernelError(
            f"`{shlex.join(str(a) for a in argv)}` exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def die_with(parent):
    """In the child before exec: SIGKILL when `parent` dies (and exit now if
    it already has).  Only a prctl(): safe after fork in a threaded process."""
    if lib.ksmh_die_with_parent(parent) < 0:
        os._exit(127)
