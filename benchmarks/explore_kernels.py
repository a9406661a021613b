"""Does explore find the seed fix's bugs without the seed scenarios?

Goal (issue #17): on each shared 6.1.192 kernel with part 1, 2, 3 or 4 of the
fix reverted, `ksm-harness vm --kernel K --numa 2 explore --budget B` (the
default vocabulary, no scenario given) finds a failure within B seconds
(default 900: 15 minutes under TCG with 2 NUMA nodes), and the reproducer it
writes fails on that kernel (explore's own replays, same boot) and passes on
the fixed kernel (`ksm-harness vm --kernel fixed run --repeat N`).  Printed
for each: time to first failure, steps of the first failing example and of
the reproducer, replays failed on its kernel and on the fixed one.

    .venv/bin/python benchmarks/explore_kernels.py [--budget S] [--seed N] [--replay N] [--out DIR]
        [--kernel NAME]...

One VM at a time: run it alone (under the VM lock on a shared machine:
`flock /run/lock/ksm-harness-vm.lock ...`).  Kernels from ../shared/kernels
or $KSM_HARNESS_KERNELS.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")
# parts 1, 2, 3, 4 (part 4 through memory failure, which explore draws in a guest)
REVERTED = ("stale-stable-nodes", "fork-behind-cursor", "swapin-during-unmerge", "copy-not-uptodate")
BUDGET = 900.0  # seconds: the goal's bound


def harness_vm(kernel, out, *command):
    """`ksm-harness vm --kernel KERNEL --numa 2 --out OUT COMMAND...`: the exit code (argv echoed first)."""
    argv = [sys.executable, "-m", "harness", "vm", "--kernel", str(KERNELS / f"ksm-6.1.192-{kernel}.bzImage"),
            "--numa", "2", "--out", str(out), *command]
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL).returncode


def on_fixed(reproducer, out, replay):
    """How many of `replay` runs of the reproducer FAIL on the fixed kernel."""
    harness_vm("fixed", out, "run", "-q", "--repeat", str(replay), str(reproducer))
    result = json.loads((out / "result.json").read_text())
    return sum(1 for s in result["scenarios"] if s["status"] == "fail"), len(result["scenarios"])


def row(kernel, args, out):
    start = time.monotonic()
    code = harness_vm(kernel, out, "explore", "--budget", str(args.budget), "--seed", str(args.seed),
                      "--replay", str(args.replay), "-q")
    wall = time.monotonic() - start
    data = json.loads((out / "explore.json").read_text()) if (out / "explore.json").exists() else None
    repro = data and data["reproducer"]
    if not repro:
        found = "guest died (crash-reproducer.yaml)" if data is None else f"none ({data['stopped']})"
        return f"| {kernel} | {found} | | | | | {wall:.0f} s, exit {code} |"
    failed, runs = on_fixed(repro["file"], out / "on-fixed", args.replay)
    return (f"| {kernel} | {repro['first_failure_at']:.0f} s | {repro['steps_first']} -> {repro['steps']} | "
            f"{repro['failed']} of {repro['runs']} | {failed} of {runs} | {repro['reason'][:120]} | "
            f"{wall:.0f} s, {data['examples']} examples |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=BUDGET)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replay", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results") / f"explore-kernels-{time.strftime('%Y%m%d-%H%M%S')}")
    p.add_argument("--kernel", action="append", choices=REVERTED, help="default: all four")
    args = p.parse_args()
    rows = [row(k, args, args.out / k) for k in args.kernel or REVERTED]
    print(f"\nexplore --budget {args.budget:g} --seed {args.seed} per kernel (goal: a failure within the budget, "
          f"a reproducer that fails there and passes on the fixed kernel)\n")
    print("| kernel | first failure | steps (first -> shrunk) | replays failed there | on the fixed kernel | "
          "reason | explore |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
