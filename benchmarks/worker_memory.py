"""Private memory (USS) per idle worker, forked from the prepared zygote.

Goal: at most 2 MiB per idle worker, so a few hundred fit beside their test
memory.  Prints the mean and max over 100 workers and the bound.
"""
import sys

import psutil

from harness.workers import WorkerPool

COUNT = 100
BOUND = 2 << 20


def main():
    with WorkerPool() as pool:
        workers = [pool.spawn(f"w{i}") for i in range(COUNT)]
        uss = [psutil.Process(w.pid).memory_full_info().uss for w in workers]
    mean, worst = sum(uss) / len(uss), max(uss)
    good = worst <= BOUND
    print(f"idle worker USS: mean {mean / 1024:.0f} KiB, max {worst / 1024:.0f} KiB over {COUNT} workers   "
          f"bound <= {BOUND / 1024:.0f} KiB   {'OK' if good else 'MISSED'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
