"""`ksm-harness perf`: the throughput kselftest's ksm_tests measures, measured
the same way through the harness's own workers, knobs and journal.

tools/testing/selftests/mm/ksm_tests.c (Linux 6.12) times four things, one
per option, each in a fresh process after writing run=2, sleep_millisecs=0,
merge_across_nodes=1 (where the kernel has NUMA) and pages_to_scan=N (its -p,
10 by default); run_vmtests.sh runs `-P -s 100` and `-H -s 100`:

- merge (-P): MiB of identical pages per second, from madvise(MADV_MERGEABLE)
  to the second full scan after run=1 (ksm_merge_pages(): "merging occurs
  only after 2 scans": mm/ksm.c cmp_and_merge_page() puts a page in the
  unstable tree only once its checksum held over a scan);
- thp-merge (-H): the same over memory faulted as transparent huge pages,
  which KSM splits to merge (try_to_merge_one_page() -> split_huge_page());
- unmerge (-D): the madvise(MADV_UNMERGEABLE) call alone over merged pages
  (ksm_madvise() -> unmerge_ksm_pages() breaks COW on every KSM page);
- cow (-C): writing one byte into the first page of each of 2000 pairs of
  duplicate pages, before (no fault: the pages are present and writable) and
  after they were merged (do_wp_page() copies each KSM page: wp_page_copy()).

Here a worker (harness/zygote.py) owns the memory and the harness writes the
knobs (knobs.py), so a merge's time includes the harness's own bookkeeping:
two command round trips and their JSON, against a merge of 0.1-0.5 s.  The
unmerge and the COW writes are timed in the worker around the madvise()
call and the write loop alone, as ksm_unmerge_time() and ksm_cow_time()
time them: a round trip would be a part of the time there.

Who polls full_scans during a merge is a choice (--poll-from).  ksm_tests
polls from the process whose pages ksmd merges, so that process's mm is live
on a CPU all along: each page mm/ksm.c write_protect_page() and
replace_page() change then needs a TLB flush on that CPU (a shootdown IPI,
or the same CPU shared with the poller), and the merge it times slows about
2.5x (measured on a 2-CPU 6.18 machine: 100 MiB in 0.45 s polled from the
process, 0.17 s from another; about 50,000 TLB shootdowns against 3).  By
default the harness polls from its own process, apart from the merged
memory; --poll-from worker polls from the worker, as ksm_tests does.
benchmarks/ksm_tests_compare.py holds the numbers to ksm_tests' own, built
from the same kernel source, in the same run.
"""
import argparse
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from . import kernel, pages, report, runner
from .errors import HarnessError, InputError
from .journal import Journal
from .knobs import RUN_MERGE, RUN_UNMERGE, WriteResult
from .lock import MachineLock
from .results import ERROR, PASS, SKIP, Measurement
from .wait import wait_until
from .workers import WorkerPool
from .zygote import THP_SIZE

MIB = 1 << 20
DEFAULT_SIZE_MIB = 100  # run_vmtests.sh: ksm_tests -P -s 100 and -H -s 100
DEFAULT_PAGES_TO_SCAN = 10  # ksm_tests' page_count (KSM_PAGE_COUNT_DEFAULT), written to pages_to_scan
DEFAULT_TIMEOUT = 120  # seconds a merge may take: KSM_SCAN_LIMIT_SEC_DEFAULT
COW_PAGES = 4000  # ksm_cow_time(): 2000 pairs of duplicate pages, one of each pair written
POLL_FROM_HARNESS, POLL_FROM_WORKER = "harness", "worker"  # Settings.poll_from
SCANS_TO_MERGE = 2  # full scans after run=1 that ksm_merge_pages() waits for
REGION = "r"  # the one region of each measurement's worker
HUGE_PAGES = THP_SIZE // pages.PAGE_SIZE  # base pages in a PMD-sized huge page (512 on x86_64)


def clock():
    """ksm_tests' clock: CLOCK_MONOTONIC_RAW (no NTP slewing)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC_RAW)


@dataclass(frozen=True)
class Outcome:
    """One measurement (one ksm_tests option) and what came of it."""

    name: str  # its stable id and KTAP test name: "merge", "thp-merge", "unmerge", "cow"
    option: str  # the ksm_tests option that measures the same: "-P", "-H", "-D", "-C"
    status: str  # PASS (measured), SKIP (this kernel lacks what it needs) or ERROR
    reason: str = ""  # why it skipped or errored, one line
    measures: tuple = ()  # the results.Measurement it took
    notes: tuple = ()  # what the harness saw besides: pages merged, huge pages faulted


@dataclass(frozen=True)
class PerfRun:
    """A whole `ksm-harness perf`."""

    kernel: str  # uname -r
    started: str  # ISO 8601 UTC
    duration: float  # seconds, lock to restore
    settings: tuple  # ((knob, value), ...) written before each measurement, in order
    outcomes: tuple  # Outcome per measurement, in the order run


@dataclass(frozen=True)
class Settings:
    """The command line's choices, ksm_tests' options in brackets."""

    size_mib: int  # region size for merge, thp-merge and unmerge (-s)
    pages_to_scan: int  # written to pages_to_scan (-p)
    timeout: float  # seconds a merge may take (-l)
    # who polls full_scans while a merge is timed: POLL_FROM_HARNESS (a
    # process apart from the merged memory) or POLL_FROM_WORKER (the merged
    # process itself, as ksm_tests does)
    poll_from: str = POLL_FROM_HARNESS


class Context:
    """What the measurements share: the knobs, /proc and /sys, the settings."""

    def __init__(self, knobs, settings, proc=Path("/proc"), sys_root=Path("/sys")):
        self.knobs = knobs  # knobs.Knobs
        self.settings = settings  # Settings
        self.proc = Path(proc)
        self.thp = kernel.thp(str(sys_root))  # kernel.Thp, None without CONFIG_TRANSPARENT_HUGEPAGE

    def knob_plan(self):
        """ksm_tests main()'s writes, in its order: stop and unmerge, no sleep
        between batches, merge across nodes where the knob exists (ksm_tests
        writes it when libnuma's numa_available() says the kernel has NUMA,
        which is when mm/ksm.c has the knob: CONFIG_NUMA), pages_to_scan."""
        plan = [("run", RUN_UNMERGE), ("sleep_millisecs", "0")]
        if self.knobs.has("merge_across_nodes"):
            plan.append(("merge_across_nodes", "1"))
        return tuple(plan + [("pages_to_scan", str(self.settings.pages_to_scan))])

    def prepare(self):
        """Put KSM in ksm_tests' starting state (before every measurement:
        run=2 also unmerges what the one before left)."""
        for name, value in self.knob_plan():
            w = self.knobs.write(name, value)
            if w.result is not WriteResult.OK:
                raise HarnessError(f"writing {name}={value} gave {w.result.value}: another KSM user may hold "
                                   f"merged pages; stop it and try again")

    def missing_knobs(self):
        """The files ksm_tests needs that this kernel lacks."""
        return [n for n in ("run", "sleep_millisecs", "pages_to_scan", "full_scans") if not self.knobs.has(n)]

    def merge(self, worker):
        """Seconds from madvise(MADV_MERGEABLE) to the second full scan after
        run=1, as ksm_merge_pages() + ksm_do_scan() time it: full_scans is
        read right after run=1 (ksmd was stopped, so it cannot have moved)
        and then polled without a pause, as ksm_do_scan() does."""
        start = clock()
        worker.call("advise", region=REGION, advice="mergeable", timeout=self.settings.timeout)
        self.knobs.write("run", RUN_MERGE)
        target = self.knobs.read_int("full_scans") + SCANS_TO_MERGE
        if self.settings.poll_from == POLL_FROM_WORKER:
            # the measured process polls, as ksm_tests does: its mm stays live
            # on a CPU while ksmd write-protects and replaces its PTEs
            worker.call("wait_counter", path=str(self.knobs.root / "full_scans"), at_least=target,
                        within=self.settings.timeout, timeout=self.settings.timeout + 10)
        else:
            wait_until(lambda: self.knobs.read_int("full_scans") >= target, self.settings.timeout,
                       f"{SCANS_TO_MERGE} full scans after run=1 (ksm_tests: \"Scan time limit exceeded\")",
                       interval=0)
        return clock() - start

    def merged_note(self, worker, npages):
        """The pages the harness sees merged once the timing stopped."""
        stat = pages.ksm_stat(worker.pid, self.proc) or {}
        own = stat.get("ksm_merging_pages")
        mine = f"ksm_merging_pages {own} of {npages}" if own is not None else f"{npages} pages (no ksm_stat here)"
        return f"merged: {mine}; pages_shared {self.knobs.read('pages_shared')}, " \
               f"pages_sharing {self.knobs.read('pages_sharing')}; full_scans polled from the " \
               f"{self.settings.poll_from}"


def mapped(pool, npages, pattern, thp=None):
    """A fresh worker with one filled region, not yet mergeable."""
    worker = pool.spawn("perf")
    worker.regions[REGION] = worker.call("map", region=REGION, npages=npages, pattern=pattern, worker=0,
                                         mergeable=False, thp=thp, timeout=max(60.0, npages / 2000))
    return worker


IDENTICAL = {"kind": "same", "seed": 18}  # allocate_memory(..., '*', ...): every page the same


class MergeTime:
    """ksm_tests -P: merging identical pages."""

    name, option = "merge", "-P"  # the measure, and the ksm_tests option that measures the same
    thp: Optional[bool] = None  # True: the region is faulted as transparent huge pages

    def why_not(self, ctx):
        missing = ctx.missing_knobs()
        return f"this kernel's KSM lacks {', '.join(missing)}" if missing else None

    def npages(self, ctx):
        return ctx.settings.size_mib * MIB // pages.PAGE_SIZE

    def measure(self, ctx, pool):
        npages = self.npages(ctx)
        worker = mapped(pool, npages, IDENTICAL, self.thp)
        notes = self.before(ctx, worker, npages)
        seconds = ctx.merge(worker)
        return (Measurement(self.name, seconds, npages * pages.PAGE_SIZE),), notes + (ctx.merged_note(worker, npages),)

    def before(self, ctx, worker, npages):
        return ()


class ThpMergeTime(MergeTime):
    """ksm_tests -H: merging identical pages faulted as transparent huge pages."""

    name, option, thp = "thp-merge", "-H", True

    def why_not(self, ctx):
        # thp_is_enabled(): the enabled file exists and reads always or madvise
        if ctx.thp is None:
            return "no transparent hugepages on this kernel (CONFIG_TRANSPARENT_HUGEPAGE=n)"
        if ctx.thp.mode not in ("always", "madvise"):
            return f"transparent hugepages are off (enabled: {ctx.thp.mode})"
        return super().why_not(ctx)

    def npages(self, ctx):
        # ksm_merge_hugepages_time(): the size rounded down to whole huge pages
        return max(super().npages(ctx) // HUGE_PAGES, 1) * HUGE_PAGES

    def before(self, ctx, worker, npages):
        """ksm_tests prints how many 2 MiB ranges got a huge page."""
        view = pages.region_pages(worker.pid, worker.regions[REGION]["addr"], npages, ctx.proc)
        return (f"huge pages before the merge: {view.thp // HUGE_PAGES} of {npages // HUGE_PAGES}",)


class UnmergeTime(MergeTime):
    """ksm_tests -D: madvise(MADV_UNMERGEABLE) over merged pages."""

    name, option = "unmerge", "-D"

    def measure(self, ctx, pool):
        npages = self.npages(ctx)
        worker = mapped(pool, npages, IDENTICAL)
        ctx.merge(worker)
        note = ctx.merged_note(worker, npages)
        # timed in the worker around madvise() alone, as ksm_unmerge_time()
        # times ksm_unmerge_pages(): a command round trip is not the kernel's
        done = worker.call("advise", region=REGION, advice="unmergeable", timeout=ctx.settings.timeout)
        return (Measurement(self.name, done["elapsed_ns"] / 1e9, npages * pages.PAGE_SIZE),), (f"before: {note}",)


class CowTime(MergeTime):
    """ksm_tests -C: writes to pages before and after they were merged."""

    name, option = "cow", "-C"
    # pages i and i + COW_PAGES/2 are equal: 2000 pairs (ksm_tests pairs
    # neighbours; which pages pair does not change the faults taken)
    PAIRS = {"kind": "groups", "seed": 18, "groups": COW_PAGES // 2}

    WRITTEN = COW_PAGES // 2  # the first page of each pair

    def write_first_of_pairs(self, worker, name):
        """A byte changed in each first page, timed in the worker around its
        loop alone, as ksm_cow_time() times its memset(page, '-', 1) loop (a
        command round trip would swamp writes that take microseconds).  The
        content must change: a copy that still matched its KSM page would be
        merged back by ksmd, which runs on, while the loop writes (measured:
        2000 such writes took 18-25 ms against 9-12 ms for changed ones)."""
        done = worker.call("scribble", region=REGION, start=0, count=self.WRITTEN)
        return Measurement(name, done["elapsed_ns"] / 1e9, self.WRITTEN * pages.PAGE_SIZE)

    def measure(self, ctx, pool):
        # ksm_cow_time(): the writes to pages not merged go to its memory as
        # allocated ('*' everywhere), then it makes the pairs and merges them
        worker = mapped(pool, COW_PAGES, IDENTICAL)
        unmerged = self.write_first_of_pairs(worker, "cow-unmerged")
        worker.call("write", region=REGION, pattern=self.PAIRS, worker=0, generation=1)
        ctx.merge(worker)
        note = ctx.merged_note(worker, COW_PAGES)
        return (self.write_first_of_pairs(worker, "cow"), unmerged), (f"before the writes: {note}",)


TESTS = (MergeTime(), ThpMergeTime(), UnmergeTime(), CowTime())


def run_one(ctx, test):
    """One measurement in a worker pool of its own -> Outcome."""
    why = test.why_not(ctx)
    if why:
        return Outcome(test.name, test.option, SKIP, reason=why)
    try:
        ctx.prepare()
        with WorkerPool() as pool:
            measures, notes = test.measure(ctx, pool)
    except HarnessError as exc:
        return Outcome(test.name, test.option, ERROR, reason=f"{type(exc).__name__}: {exc}")
    return Outcome(test.name, test.option, PASS, measures=measures, notes=notes)


def run(tests, settings, roots=runner.Roots(), journal=None, lock=None, wait=True, say=print):
    """Hold the machine as `run` does (runner.driving: lock, journal, knobs
    back as found) and run each measurement -> PerfRun."""
    runner.preflight(roots)
    rctx = runner.RunContext(roots, journal or Journal(), None)
    ctx = Context(rctx.knobs, settings, roots.proc, roots.sys)
    started, started_at = time.monotonic(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    with runner.driving(rctx, lock or MachineLock(), wait, say) as failures:
        outcomes = tuple(run_one(ctx, t) for t in tests)
    if failures:
        outcomes += (Outcome("restore", "", ERROR, reason=str(runner.CleanupError(failures))),)
    return PerfRun(platform.release(), started_at, round(time.monotonic() - started, 3),
                   ctx.knob_plan(), outcomes)


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
        return value
    return parse


def build_parser():
    from .cli import Parser
    names = [t.name for t in TESTS]
    p = Parser(prog="ksm-harness perf",
               description="Measure what kselftest's ksm_tests -P/-H/-D/-C measure (merge, THP merge, unmerge, "
                           "COW on merged pages), through the harness's own workers.")
    p.add_argument("tests", nargs="*", metavar="TEST", help=f"which to run: {', '.join(names)} (default: all)")
    p.add_argument("--size", type=positive(int), default=DEFAULT_SIZE_MIB, metavar="MIB",
                   help=f"MiB for merge, thp-merge and unmerge (ksm_tests -s; default {DEFAULT_SIZE_MIB})")
    p.add_argument("--pages-to-scan", type=positive(int), default=DEFAULT_PAGES_TO_SCAN, metavar="N",
                   help=f"written to pages_to_scan (ksm_tests -p; default {DEFAULT_PAGES_TO_SCAN})")
    p.add_argument("--timeout", type=positive(float), default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds a merge may take (ksm_tests -l; default {DEFAULT_TIMEOUT})")
    p.add_argument("--poll-from", choices=(POLL_FROM_HARNESS, POLL_FROM_WORKER), default=POLL_FROM_HARNESS,
                   help="who polls full_scans while a merge is timed: the harness (default), or the merged "
                        "process itself, as ksm_tests does (its polling slows the merge it times)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH (- for stdout)")
    p.add_argument("--ktap", metavar="PATH", help="write the results as KTAP to PATH (- for stdout)")
    p.add_argument("--no-wait", action="store_true", help="fail at once if another run holds the KSM lock")
    return p


def selected_tests(names):
    known = {t.name: t for t in TESTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown test {unknown[0]!r} (known: {', '.join(known)})", field="TEST")
    return tuple(known[n] for n in dict.fromkeys(names)) if names else TESTS


def main(argv):
    from .cli import exit_status
    from .report import perf as perf_report
    args = build_parser().parse_args(argv)
    tests = selected_tests(args.tests)
    outputs = {fmt: path for fmt, path in (("json", args.json), ("ktap", args.ktap)) if path}
    if list(outputs.values()).count(report.STDOUT) > 1:
        raise InputError("only one report can go to standard output", field="--json and --ktap")
    settings = Settings(args.size, args.pages_to_scan, args.timeout, args.poll_from)
    result = run(tests, settings, wait=not args.no_wait, say=lambda m: print(m, file=sys.stderr))
    for fmt, path in outputs.items():
        perf_report.write(fmt, result, path)
    human = sys.stderr if report.STDOUT in outputs.values() else sys.stdout
    print(perf_report.render_text(result), end="", file=human)
    return exit_status({o.status for o in result.outcomes})
