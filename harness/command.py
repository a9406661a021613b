"""Run external programs: argv lists only, echoed before they run (as KUnit's tool does)."""
import logging
import shlex
import subprocess

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
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise KernelError(
            f"`{shlex.join(str(a) for a in argv)}` exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc
