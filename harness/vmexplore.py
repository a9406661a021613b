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

A crash is a failure like any other, and costs a boot (explore_across_boots):
a new boot runs explore again with the same seed, what is left of --budget,
and --known OUT/known-outcomes.jsonl, every document run so far with its
outcome and the one the guest died in as a FAIL (explore/known.py).  Answered
from that file, Hypothesis draws the same examples up to the crash in seconds,
then shrinks it; each attempt that crashes costs one more boot (OUT/boot-2/
and so on).  The smallest crashing document is then replayed --replay times
through `vm ... run --repeat N` (vmrun.run_scenarios boots again after each
crash), as the guest cannot replay it itself.
"""
import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Optional, Sequence

import yaml

from . import initramfs, tcg, vm, vmrun
from .errors import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, InputError
from .explore import known
from .results import ERROR, FAIL

GUEST_OUT = "explore"  # explore's --out, under the side channel (and under --out on the host)
GUEST_JSON = "explore.json"  # explore's --json, beside it
CRASH_REPRODUCER = "crash-reproducer.yaml"  # the example the guest died in, on the host
OWN_OPTIONS = ("--out", "--json", "--known")  # explore options vm sets itself
REPLAY_DIR = "crash-replay"  # `vm ... run --repeat N crash-reproducer.yaml`'s --out, beside it
MIN_BUDGET = 30.0  # seconds: less left after a crash is not worth a boot (about 10 s under TCG)
KNOWN = "known-outcomes.jsonl"  # under the host's --out: what every boot ran, and where it crashed


@dataclass(frozen=True)
class VmExplore:
    """What one exploration in a guest gave."""

    boot: vm.VmRun  # the boot (status, reason, crashes, out)
    data: Optional[dict]  # explore's JSON result, paths made host paths; None if the guest died first
    crash_reproducer: Optional[Path]  # the example the guest died in; None if it did not
    emulator: str = ""  # why the guest's crash is qemu TCG's, not the kernel's (tcg.py); "" if it is not
    crash: str = ""  # the title of the kernel report the guest died with ("" where it did not die)
    replay: Optional["Replay"] = None  # the crash reproducer's replays; None where none ran


@dataclass(frozen=True)
class Replay:
    """A crash reproducer run again, each time in a boot of its own after a crash."""

    runs: int  # times it ran
    failed: int  # times it failed again (mostly the kernel crashing in it again; vmrun.crashed())
    out: Path  # `vm ... run`'s --out: console logs and result.json


def command(explore_args: Sequence[str], verbose: bool = False, answers: bool = False) -> list:
    """The guest command: `ksm-harness explore` writing to the side channel
    (answers: reading --known from it too, where the host put KNOWN)."""
    for arg in explore_args:
        if arg.split("=")[0] in OWN_OPTIONS:
            raise InputError(f"{arg}: vm sets it itself (explore writes under vm's --out DIR)", field="explore")
    res = initramfs.GUEST_RESULTS
    return [sys.executable, "-m", "harness.cli", *(["--verbose"] if verbose else []), "explore",
            "--out", f"{res}/{GUEST_OUT}", "--json", f"{res}/{GUEST_JSON}",
            *(["--known", f"{res}/{KNOWN}"] if answers else []), *explore_args]


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
                      f"# Replay: ksm-harness vm --kernel K run --repeat 5 {target.name}\n"
                      + example.read_text())
    return target


def explore_in_vm(options: vm.VmOptions, explore_args: Sequence[str], out: Path, *,
                  echo: Optional[IO[str]] = None, verbose: bool = False,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                  answers: Optional[Path] = None) -> VmExplore:
    """One boot exploring; answers: a KNOWN file of earlier boots' outcomes for explore's --known."""
    out = Path(out)
    guest_command = command(explore_args, verbose, answers is not None)
    share = Path(tempfile.mkdtemp(prefix="ksm-harness-vm-"))
    if answers is not None:
        shutil.copyfile(answers, share / KNOWN)
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
    title = vmrun.title_of(crashes)
    kept = keep_crash_example(out, title, boot.killed or "by itself", emulator)
    return VmExplore(boot, None, kept, emulator, title)


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
    """Explore until the budget is spent or a failure is shrunk, booting
    again after each crash (module docstring) -> a VmExplore per boot, the
    first under `out`; the last carries the crash reproducer's replays."""
    wanted = guest_options(explore_args)
    seed = wanted.seed if wanted.seed is not None else random.SystemRandom().randrange(1 << 32)
    deadline = clock() + wanted.budget
    answers = Path(out) / KNOWN
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.write_text("")
    boots: list = []
    args = continued(explore_args, seed, wanted.budget)
    while True:
        one = explore_in_vm(options, args, vm.boot_out(out, len(boots)), echo=echo, verbose=verbose, log=log,
                            answers=answers if boots else None)
        with open(answers, "a") as f:
            f.write(learned(one))
        boots.append(one)
        left = deadline - clock()
        if one.data is not None or one.crash_reproducer is None or left < MIN_BUDGET:
            break
        log(f"the guest crashed: a new boot answers what ran from {answers} and shrinks the crash "
            f"({left:.0f} s left, --seed {seed})")
        args = continued(explore_args, seed, left)
    crash = crash_reproducer(boots[-1])
    if crash is not None and wanted.replay:
        log(f"replaying {crash} {wanted.replay} times, a boot after each crash")
        boots[-1] = replace(boots[-1], replay=replayed(options, crash, wanted.replay, echo=echo, verbose=verbose,
                                                        log=log))
    return tuple(boots)


def learned(one: VmExplore) -> str:
    """known.py lines of what a boot ran (its explore/outcomes.jsonl) and of
    the example it died in: a FAIL, or an ERROR where qemu's emulation failed."""
    ran = one.boot.out / GUEST_OUT / known.FILE
    text = ran.read_text() if ran.exists() else ""
    if one.crash_reproducer is not None:
        doc = yaml.safe_load(one.crash_reproducer.read_text())
        text += known.line(known.key(doc), ERROR, f"qemu failed in it: {one.emulator}") if one.emulator \
            else known.crash_line(doc, one.crash)
    return text


def crash_reproducer(last: VmExplore) -> Optional[Path]:
    """What the guest cannot replay itself: the last boot's reproducer where
    its failure is a crash, else the example the last boot died in."""
    repro = (last.data or {}).get("reproducer")
    if repro and repro["crashed"]:
        return Path(repro["file"])
    return last.crash_reproducer if not last.emulator else None


def status_of_all(boots: Sequence[VmExplore]) -> int:
    """A FAIL in any boot fails the exploration; else the first other trouble; else 0."""
    codes = [status(b) for b in boots]
    return EXIT_FAIL if EXIT_FAIL in codes else next((c for c in codes if c != EXIT_PASS), EXIT_PASS)
