"""`ksm-harness vm --kernel K ... explore [explore-args...]`: explore inside a guest.

The guest runs `ksm-harness explore` with its output directory and its JSON
result on the writable side channel, so the examples, failures, reproducer
and Hypothesis database come back to --out even when the guest dies.  Its
heartbeat (harness/heartbeat.py: one "scenario" per example) lets the host
follow it as it follows `run` (harness/vmrun.py Follower): a panic, a kernel
report with no progress after it, a silent guest or an example past its
timeout kills qemu within seconds.  The example that was running then is the
finding: explore writes each document to OUT/example.yaml before it runs it,
so the host keeps that file as crash-reproducer.yaml, headed by the report's
title.  Not shrunk and not replayed: each attempt would cost a boot (run it
with `ksm-harness vm --kernel K run --repeat N crash-reproducer.yaml`).
"""
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional, Sequence

from . import initramfs, tcg, vm, vmrun
from .errors import EXIT_ERROR, EXIT_FAIL, InputError

GUEST_OUT = "explore"  # explore's --out, under the side channel (and under --out on the host)
GUEST_JSON = "explore.json"  # explore's --json, beside it
CRASH_REPRODUCER = "crash-reproducer.yaml"  # the example the guest died in, on the host
OWN_OPTIONS = ("--out", "--json")  # explore options vm sets itself


@dataclass(frozen=True)
class VmExplore:
    """What one exploration in a guest gave."""

    boot: vm.VmRun  # the boot (status, reason, crashes, out)
    data: Optional[dict]  # explore's JSON result, paths made host paths; None if the guest died first
    crash_reproducer: Optional[Path]  # the example the guest died in; None if it did not
    emulator: str = ""  # why the guest's crash is qemu TCG's, not the kernel's (tcg.py); "" if it is not


def command(explore_args: Sequence[str], verbose: bool = False) -> list:
    """The guest command: `ksm-harness explore` writing to the side channel."""
    for arg in explore_args:
        if arg.split("=")[0] in OWN_OPTIONS:
            raise InputError(f"{arg}: vm sets explore's output itself; use vm's --out DIR", field="explore")
    res = initramfs.GUEST_RESULTS
    return [sys.executable, "-m", "harness.cli", *(["--verbose"] if verbose else []), "explore",
            "--out", f"{res}/{GUEST_OUT}", "--json", f"{res}/{GUEST_JSON}", *explore_args]


def host_paths(value: Any, guest: str, host: str) -> Any:
    """`value` (explore's JSON) with every string under the guest's results dir moved under `host`."""
    if isinstance(value, dict):
        return {k: host_paths(v, guest, host) for k, v in value.items()}
    if isinstance(value, list):
        return [host_paths(v, guest, host) for v in value]
    if isinstance(value, str) and value.startswith(guest):
        return host + value[len(guest):]
    return value


def keep_crash_example(out: Path, title: str, why: str, emulator: str = "") -> Optional[Path]:
    """The example the guest was running when it ended, as a reproducer with a header; None if none was."""
    example = out / GUEST_OUT / "example.yaml"
    if not example.exists():
        return None
    target = out / CRASH_REPRODUCER
    doubt = f"# No verdict on the kernel: {emulator}\n" if emulator else ""
    target.write_text(f"# The guest ended {why} while running this example: {title}\n{doubt}"
                      f"# Not shrunk.  Replay: ksm-harness vm --kernel K run --repeat 5 {target.name}\n"
                      + example.read_text())
    return target


def explore_in_vm(options: vm.VmOptions, explore_args: Sequence[str], out: Path, *,
                  echo: Optional[IO[str]] = None, verbose: bool = False,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> VmExplore:
    out = Path(out)
    guest_command = command(explore_args, verbose)
    share = Path(tempfile.mkdtemp(prefix="ksm-harness-vm-"))
    follower = vmrun.Follower()
    try:
        boot = vm.run_in_vm(options, guest_command, out, echo=echo, verbose=verbose, log=log, share=share,
                            follower=follower)
        if (share / GUEST_OUT).is_dir():
            shutil.copytree(share / GUEST_OUT, out / GUEST_OUT, dirs_exist_ok=True)
    finally:
        shutil.rmtree(share, ignore_errors=True)
    result = out / GUEST_JSON
    if result.exists() and boot.guest_exit is not None:
        data = host_paths(json.loads(result.read_text()), initramfs.GUEST_RESULTS, str(out.resolve()))
        result.write_text(json.dumps(data, indent=2) + "\n")
        return VmExplore(boot, data, None)
    crashes = follower.crashes() or boot.crashes
    emulator = tcg.emulator_fault(crashes, boot.accel.name)
    kept = keep_crash_example(out, vmrun.title_of(crashes), boot.killed or "by itself", emulator)
    return VmExplore(boot, None, kept, emulator)


def status(run: VmExplore) -> int:
    """explore's exit code where it finished; a guest that died while
    exploring is a FAIL, or an ERROR when the emulator caused it."""
    if run.data is not None:
        return run.boot.status
    return EXIT_ERROR if run.emulator else EXIT_FAIL
