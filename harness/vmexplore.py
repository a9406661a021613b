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
title.

A crash costs a boot, not the exploration (explore_across_boots): the crash
reproducer is replayed --replay times through `vm ... run --repeat N`
(vmrun.run_scenarios boots again after each crash), and a new boot explores
on with what is left of --budget, seed + 1 where --seed was given (the same
seed would draw the same examples up to the crash again), its output under
OUT/boot-2/ and so on.  Not shrunk: Hypothesis shrinks inside one process,
and each attempt at a crashing example would cost a boot.
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Optional, Sequence

from . import initramfs, tcg, vm, vmrun
from .errors import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, InputError
from .results import FAIL

GUEST_OUT = "explore"  # explore's --out, under the side channel (and under --out on the host)
GUEST_JSON = "explore.json"  # explore's --json, beside it
CRASH_REPRODUCER = "crash-reproducer.yaml"  # the example the guest died in, on the host
OWN_OPTIONS = ("--out", "--json")  # explore options vm sets itself
REPLAY_DIR = "crash-replay"  # `vm ... run --repeat N crash-reproducer.yaml`'s --out, beside it
MIN_BUDGET = 30.0  # seconds: less left after a crash is not worth a boot (about 10 s under TCG)


@dataclass(frozen=True)
class VmExplore:
    """What one exploration in a guest gave."""

    boot: vm.VmRun  # the boot (status, reason, crashes, out)
    data: Optional[dict]  # explore's JSON result, paths made host paths; None if the guest died first
    crash_reproducer: Optional[Path]  # the example the guest died in; None if it did not
    emulator: str = ""  # why the guest's crash is qemu TCG's, not the kernel's (tcg.py); "" if it is not
    replay: Optional["Replay"] = None  # the crash reproducer's replays; None where none ran


@dataclass(frozen=True)
class Replay:
    """A crash reproducer run again, each time in a boot of its own after a crash."""

    runs: int  # times it ran
    failed: int  # times it failed again (mostly the kernel crashing in it again; vmrun.crashed())
    out: Path  # `vm ... run`'s --out: console logs and result.json


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


def guest_options(explore_args: Sequence[str]) -> argparse.Namespace:
    """explore's own parse of its arguments (budget, seed, replay), before any boot."""
    from .cli import Parser
    from .explore import command as explore_command  # imports Hypothesis

    parser = Parser(prog="ksm-harness vm ...", add_help=False)  # a usage error is an InputError (exit 2)
    explore_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["explore", *explore_args])


def continued(explore_args: Sequence[str], seed: Optional[int], budget: float) -> list:
    """explore_args for a later boot: the budget left and the next seed."""
    args, skip = [], False
    for arg in explore_args:
        if skip:
            skip = False
        elif arg in ("--budget", "--seed"):
            skip = True
        elif arg.split("=")[0] not in ("--budget", "--seed"):
            args.append(arg)
    return args + ["--budget", f"{budget:.0f}"] + (["--seed", str(seed)] if seed is not None else [])


def replayed(options: vm.VmOptions, reproducer: Path, times: int, *, echo=None, verbose=False,
             log: Callable[[str], None] = lambda msg: None) -> Replay:
    """The crash reproducer `times` over, as `ksm-harness vm ... run --repeat
    TIMES` runs it: a boot, and one more after each crash."""
    out = reproducer.parent / REPLAY_DIR
    run = vmrun.run_scenarios(options, ["-q", "--repeat", str(times), str(reproducer)], out, echo=echo,
                              verbose=verbose, log=log)
    results = run.result.scenarios if run.result is not None else ()
    return Replay(len(results), sum(1 for r in results if r.status == FAIL), out)


def explore_across_boots(options: vm.VmOptions, explore_args: Sequence[str], out: Path, *,
                         echo: Optional[IO[str]] = None, verbose: bool = False,
                         log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                         clock: Callable[[], float] = time.monotonic) -> tuple:
    """Explore until the budget is spent, booting again after each crash
    (module docstring) -> a VmExplore per boot, the first under `out`."""
    wanted = guest_options(explore_args)
    deadline = clock() + wanted.budget
    boots: list = []
    args = list(explore_args)
    while True:
        one = explore_in_vm(options, args, vm.boot_out(out, len(boots)), echo=echo, verbose=verbose, log=log)
        if one.crash_reproducer is not None and not one.emulator and wanted.replay:
            log(f"the guest crashed: replaying {one.crash_reproducer} {wanted.replay} times, a boot after each crash")
            one = replace(one, replay=replayed(options, one.crash_reproducer, wanted.replay, echo=echo,
                                               verbose=verbose, log=log))
        boots.append(one)
        left = deadline - clock()
        if one.data is not None or one.crash_reproducer is None or left < MIN_BUDGET:
            return tuple(boots)
        seed = wanted.seed + len(boots) if wanted.seed is not None else None
        log(f"exploring on in a new boot: {left:.0f} s left" + (f", --seed {seed}" if seed is not None else ""))
        args = continued(explore_args, seed, left)


def status_of_all(boots: Sequence[VmExplore]) -> int:
    """A FAIL in any boot fails the exploration; else the first other trouble; else 0."""
    codes = [status(b) for b in boots]
    return EXIT_FAIL if EXIT_FAIL in codes else next((c for c in codes if c != EXIT_PASS), EXIT_PASS)
