"""Crash-to-verdict time in a VM: from a kernel report on the console to the
result of the scenario it happened in.

Goal: <= 60 s under TCG on the project machine.  Boots the shared fixed test
kernel (LKDTM built in) and runs provoke[crash=BUG] from
tests/data/scenarios/crash/provoke.yaml: a worker hits BUG() in the middle of
the scenario.  The host notes when the report's first line reaches the
console and when the guest's heartbeat shows that scenario finished (its
result is in the side channel by then).  Prints the number and the bound;
exits 1 when over it.

    .venv/bin/python benchmarks/crash_verdict.py [--runs N] [--kernel BZIMAGE]
"""
import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import vm, vmrun  # noqa: E402

BOUND_S = 60.0
REPO = Path(__file__).resolve().parents[1]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")
SCENARIOS = REPO / "tests/data/scenarios/crash/provoke.yaml"


def one(kernel: Path) -> float:
    followers = []
    with tempfile.TemporaryDirectory() as out:
        run = vmrun.run_scenarios(vm.VmOptions(kernel=kernel, timeout=300), ["-q", "-k", "crash=BUG", str(SCENARIOS)],
                                  Path(out), followers=followers, log=lambda msg: None)
    (result,) = run.result.scenarios
    follower = followers[0]
    reported = next((t for t, c in zip(follower.report_times, follower.crashes()) if "lkdtm_BUG" in c.title), None)
    if reported is None or result.name not in follower.finished:
        raise SystemExit(f"no BUG report or no verdict: {result.status} {result.reason}")
    return follower.finished[result.name] - reported


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--kernel", type=Path, default=KERNELS / "ksm-6.1.192-fixed.bzImage")
    args = p.parse_args()
    times = [one(args.kernel) for _ in range(args.runs)]
    median = statistics.median(times)
    print(f"crash-to-verdict {median:.1f} s median of {args.runs} (min {min(times):.1f}, max {max(times):.1f}); "
          f"bound {BOUND_S:.0f} s: {'ok' if median <= BOUND_S else 'OVER'}")
    return 0 if median <= BOUND_S else 1


if __name__ == "__main__":
    sys.exit(main())
