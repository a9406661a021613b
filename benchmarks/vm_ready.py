"""Boot-to-ready time of a ksm-harness guest: qemu start to the ready marker.

Goal: <= 10 s under TCG on the project machine (2 cores).  Boots the shared
fixed test kernel a few times with a command that exits at once and prints
the median and the bound; exits 1 when the median is over it.

    .venv/bin/python benchmarks/vm_ready.py [--boots N] [--kernel BZIMAGE]
"""
import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import vm  # noqa: E402

BOUND_S = 10.0
REPO = Path(__file__).resolve().parents[1]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boots", type=int, default=3)
    p.add_argument("--kernel", type=Path, default=KERNELS / "ksm-6.1.192-fixed.bzImage")
    args = p.parse_args()
    ready, total = [], []
    for _ in range(args.boots):
        with tempfile.TemporaryDirectory() as out:
            run = vm.run_in_vm(vm.VmOptions(kernel=args.kernel, timeout=120), ["true"], Path(out),
                               log=lambda msg: None)
        if run.ready_after is None or run.status != 0:
            print(f"boot failed: {run.reason}")
            return 1
        ready.append(run.ready_after)
        total.append(run.duration)
    median = statistics.median(ready)
    print(f"vm ready after {median:.1f} s median of {args.boots} "
          f"(min {min(ready):.1f}, max {max(ready):.1f}; boot+poweroff {statistics.median(total):.1f} s), "
          f"accel {run.accel.name}; bound {BOUND_S:.0f} s: {'ok' if median <= BOUND_S else 'OVER'}")
    return 0 if median <= BOUND_S else 1


if __name__ == "__main__":
    sys.exit(main())
