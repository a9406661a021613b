"""`ksm-harness perf` beside kselftest's own ksm_tests, same sizes, same run.

Goal: each of our numbers within 10% of ksm_tests' (merge -P, THP merge -H,
unmerge -D, COW on merged pages -C, and -C's writes to pages not merged), so
that the harness's own bookkeeping (worker command round trips, JSON) does
not distort what it measures.  For the comparison `perf` polls full_scans
from the merged worker (--poll-from worker), as ksm_tests polls from its own
process; perf's default merge, polled from the harness, is shown beside it
as merge-apart, with no bound (harness/perf.py says why it reads faster).

ksm_tests is built from Debian's linux-source package
(tools/testing/selftests/mm/ksm_tests.c with vm_util.c and thp_settings.c,
as its Makefile links it) with gcc into build/ksm_tests (ignored by git,
reused while the package is the same); nothing is installed.  Without the package, gcc or libnuma's header the
benchmark says what to install and exits 125.  The two run alternately,
--rounds times (each round one of every ksm_tests option, one `perf` and
one `perf merge` polled apart),
ksm_tests under `flock /run/lock/ksm-harness.lock` as any KSM driver outside
the harness must be (it puts back the knobs it writes itself), `perf`
taking the lock on its own; the medians are compared.  Needs root and KSM;
the knobs must read the same at the end as at the start.

    .venv/bin/python benchmarks/ksm_tests_compare.py [--rounds N] [--size MIB]
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = REPO / "build" / "ksm_tests"  # never committed: .gitignore has /build/
sys.path.insert(0, str(REPO))

from harness.knobs import Knobs  # noqa: E402
from harness.lock import LOCK_PATH, MachineLock  # noqa: E402
from harness.perf import (COW_PAGES, DEFAULT_PAGES_TO_SCAN, DEFAULT_SIZE_MIB, MIB, POLL_FROM_HARNESS,  # noqa: E402
                          POLL_FROM_WORKER)
from harness.results import throughput  # noqa: E402

BOUND = 0.10  # ours within 10% of theirs
SOURCES = "/usr/src/linux-source-*.tar.xz"
INSTALL = "apt-get install -y linux-source-6.12 gcc libnuma-dev"
# what ksm_tests.c needs from the tree (its Makefile adds -I $(top_srcdir)
# for include/vdso/time64.h and the installed uapi headers for the rest; the
# three uapi headers newer than the distribution's are taken from the tree)
MM = "tools/testing/selftests/mm/"
TREE_FILES = [MM + f for f in ("ksm_tests.c", "vm_util.c", "vm_util.h", "thp_settings.c", "thp_settings.h")] + [
    "tools/testing/selftests/kselftest.h", "include/vdso/time64.h"]
UAPI = ["include/uapi/linux/" + h for h in ("prctl.h", "fs.h", "userfaultfd.h")]
# ksm_tests option -> (our measure, the "Total time" line's index in its output)
OPTIONS = {"-P": [("merge", 0)], "-H": [("thp-merge", 0)], "-D": [("unmerge", 0)],
           "-C": [("cow-unmerged", 0), ("cow", 1)]}
# perf's default merge, full_scans polled apart from the merged memory: shown
# beside ksm_tests' -P, not held to it (harness/perf.py says why they differ)
APART = "merge-apart"
TIME = re.compile(r"^# Total time:\s+([0-9.]+) s", re.M)


def missing():
    """What this machine lacks to build ksm_tests, as the apt command line."""
    lacks = []
    if not glob.glob(SOURCES):
        lacks.append("a linux-source package (/usr/src/linux-source-*.tar.xz)")
    if not shutil.which("gcc"):
        lacks.append("gcc")
    if not Path("/usr/include/numa.h").exists():
        lacks.append("libnuma's header (numa.h)")
    return lacks


def build():
    """Extract what ksm_tests needs from the newest linux-source tarball and
    compile it as its Makefile does, into build/ksm_tests (git ignores
    build/); a binary built from the same tarball is reused (unpacking the
    tarball takes a minute) -> (path of the binary, the tarball)."""
    tarball = sorted(glob.glob(SOURCES))[-1]
    binary = BUILD / "ksm_tests"
    stamp = BUILD / "built-from"
    made_from = f"{tarball} {os.stat(tarball).st_mtime_ns}"
    if binary.exists() and stamp.exists() and stamp.read_text() == made_from:
        return binary, tarball
    top = Path(tarball).name[: -len(".tar.xz")]
    if BUILD.exists():
        shutil.rmtree(BUILD)
    BUILD.mkdir(parents=True)
    subprocess.run(["tar", "-xJf", tarball, "-C", str(BUILD)] + [f"{top}/{f}" for f in TREE_FILES + UAPI],
                   check=True)
    tree = BUILD / top
    overlay = BUILD / "uapi" / "linux"
    overlay.mkdir(parents=True)
    for header in UAPI:
        shutil.copy(tree / header, overlay)
    mm = tree / MM
    argv = ["gcc", "-Wall", "-O2", "-I", str(tree), "-isystem", str(overlay.parent), "-U_FORTIFY_SOURCE",
            "-o", str(binary)] + [str(mm / f) for f in ("ksm_tests.c", "vm_util.c", "thp_settings.c")] + [
            "-lrt", "-lpthread", "-lm", "-lnuma"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"building ksm_tests failed ({' '.join(argv)}):\n{done.stderr}")
    stamp.write_text(made_from)
    return binary, tarball


def theirs(binary, option, size, pages_to_scan):
    """One ksm_tests run under the machine lock -> {measure: seconds}."""
    argv = ["flock", str(LOCK_PATH), str(binary), option, "-p", str(pages_to_scan)]
    if option != "-C":
        argv += ["-s", str(size)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    times = [float(t) for t in TIME.findall(out)]
    if not re.search(r"^ok 1 ", out, re.M) or len(times) != len(OPTIONS[option]):
        return {}  # skipped or failed: said by the caller as a missing number
    return {name: times[i] for name, i in OPTIONS[option]}


def ours(size, pages_to_scan, tmp, poll_from, tests=()):
    """One `ksm-harness perf` -> {measure: seconds}."""
    out = Path(tmp) / "perf.json"
    out.unlink(missing_ok=True)  # a failed run must not leave the last round's numbers
    done = subprocess.run([sys.executable, "-m", "harness", "perf", "--size", str(size), "--pages-to-scan",
                           str(pages_to_scan), "--poll-from", poll_from, "--json", str(out), *tests], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode or not out.exists():
        print(f"  ksm-harness perf exited {done.returncode}: {done.stderr.strip()[-300:]}", flush=True)
        return {}
    return {m["name"]: m["seconds"] for t in json.loads(out.read_text())["tests"] for m in t["measures"]}


def nbytes(name, size):
    """The bytes each measure's time is for (ksm_tests prints -C's speed
    for 7 MiB, page_size * 2000 / MB in integer arithmetic: 7.8125 here)."""
    return COW_PAGES // 2 * os.sysconf("SC_PAGE_SIZE") if name.startswith("cow") else size * MIB


def spread(times):
    """The interquartile range of times over their median: how much one
    tool's own runs differ, against which the bound can be read."""
    if len(times) < 2:
        return 0.0
    q1, median, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / median


def knobs_now():
    """The knobs, read under the machine lock (another driver's run may be
    half way through its changes otherwise)."""
    with MachineLock().hold():
        return Knobs().snapshot()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternations of ksm_tests and perf (default 5)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE_MIB, help="MiB for -P, -H and -D (default 100)")
    p.add_argument("--pages-to-scan", type=int, default=DEFAULT_PAGES_TO_SCAN,
                   help="ksm_tests -p, perf --pages-to-scan (default 10, ksm_tests' own)")
    args = p.parse_args()
    if os.geteuid() != 0 or not Knobs().exists():
        print("needs root and KSM")
        return 125
    lacks = missing()
    if lacks:
        print(f"SKIP: cannot build ksm_tests: no {', no '.join(lacks)}; install them with: {INSTALL}")
        return 125
    knobs_before = knobs_now()
    samples = {name: ([], []) for pairs in OPTIONS.values() for name, _ in pairs}  # name -> (theirs, ours)
    samples[APART] = ([], [])
    binary, tarball = build()
    with tempfile.TemporaryDirectory(prefix="ksm-perf-") as tmp:
        print(f"ksm_tests built from {tarball}; {args.rounds} rounds, {args.size} MiB, "
              f"pages_to_scan {args.pages_to_scan}", flush=True)
        for r in range(args.rounds):
            got_theirs, got_ours = {}, {}
            order = ("theirs", "ours") if r % 2 == 0 else ("ours", "theirs")
            for who in order:
                if who == "theirs":
                    for option in OPTIONS:
                        got_theirs.update(theirs(binary, option, args.size, args.pages_to_scan))
                else:
                    got_ours = ours(args.size, args.pages_to_scan, tmp, POLL_FROM_WORKER)
                    apart = ours(args.size, args.pages_to_scan, tmp, POLL_FROM_HARNESS, ("merge",))
                    if "merge" in apart:
                        got_ours[APART] = apart["merge"]
            if "merge" in got_theirs:  # merge-apart is held beside ksm_tests' -P
                got_theirs[APART] = got_theirs["merge"]
            for name, (t, o) in samples.items():
                if name in got_theirs and name in got_ours:
                    t.append(got_theirs[name])
                    o.append(got_ours[name])
            print(f"  round {r + 1}: " + ", ".join(f"{n} {got_theirs.get(n, 0):.6f}/{got_ours.get(n, 0):.6f} s"
                                                    for n in samples), flush=True)
    held = True
    print(f"{'measure':<14}{'ksm_tests':>24}{'ksm-harness perf':>26}{'ours/theirs':>13}{'theirs IQR':>12}   bound")
    for name, (t, o) in samples.items():
        if not t:
            print(f"{name:<14} not measured by both (skipped or failed: run `ksm-harness perf {name}` to see why)")
            held = False
            continue
        size = nbytes(name, args.size)
        mt, mo = statistics.median(t), statistics.median(o)
        ratio = throughput(size, mo) / throughput(size, mt)
        ok = abs(ratio - 1) <= BOUND
        if name == APART:
            verdict = "no bound: ksm_tests' own polling slows the merge it times"
        else:
            held &= ok
            verdict = f"within {BOUND:.0%}: {'OK' if ok else 'MISSED'}"
        print(f"{name:<14}{mt:>10.6f} s {throughput(size, mt):>9.1f} MiB/s{mo:>12.6f} s {throughput(size, mo):>9.1f} "
              f"MiB/s{ratio:>10.3f}{spread(t):>11.0%}   {verdict}")
    print(f"medians of {args.rounds} rounds; speed = the same bytes / each median time; theirs IQR = how far "
          f"ksm_tests' own times spread (interquartile range / median); ours polled full_scans "
          f"from the merged worker, as ksm_tests does, except {APART} (perf's default: from the harness)")
    if knobs_now() != knobs_before:
        print("the KSM knobs do not read as they did before the benchmark")
        held = False
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
