"""Self-checks of the per-process truth sources, and the one place that
decides which mapped pages are KSM pages on this kernel.

Verdicts rest on /proc/kpageflags (KPF_KSM, KPF_ZERO_PAGE) and
/proc/PID/ksm_stat.  A kernel can get those wrong: Linux 6.12's
fs/proc/page.c stable_page_flags() sets KPF_KSM when
`mapping & PAGE_MAPPING_KSM`, and PAGE_MAPPING_KSM is
PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE (include/linux/page-flags.h), so
every anonymous folio reads as a KSM page.  6.1 tests PageKsm() (both bits,
folio_test_ksm()) and 6.18 reads right.  So once per run, before any
scenario, `self_check()` drives KSM over pages whose truth it knows:

- a page that was never mergeable must not read KPF_KSM;
- two identical mergeable pages of two processes, once they share a page
  frame, must read KPF_KSM (only KSM makes two independently filled private
  anonymous pages share a frame: the workers fill them after they are forked);
- a zero-filled page merged with use_zero_pages=1 maps the zero page and
  reads KPF_ZERO_PAGE (where the knob exists);
- ksm_stat's ksm_merging_pages counts those merged pages (where it exists).

A failed check is a `finding` about the kernel, said once per run in every
report.  Where KPF_KSM cannot be trusted, `KsmJudge` counts a page as KSM only
when its frame is mapped at two or more (worker lineage, address) places:
a worker and the children it forked share frames at the same address by
copy-on-write, so sharing counts only across workers or across addresses.
A KSM page mapped at one place only (its other mappings broken by COW,
unmerged or exited: mm/ksm.c keeps the page and its stable node while one
mapping is left) is invisible to that rule; `KsmJudge` counts such a page as
*unsure* when the same address held the same frame while it was visibly
shared and ksm_stat still counts more merged pages for the process than are
visible.  A verdict that unsure pages could change is not given: the check
says it cannot check on this kernel.
"""
import collections
import ctypes
import mmap
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Tuple

from . import pages
from .cleanup import Cleanup
from .errors import DeadlineExceeded, HarnessError
from .knobs import RUN_UNMERGE
from .wait import wait_until
from .workers import WorkerPool

NPAGES = 64  # pages per self-check region: enough to see a pattern, merged in two quick full scans
MERGE_TIMEOUT = 60.0  # seconds for ksmd to merge them (a TCG guest is 10-15x slower than the host)
SEED = 0x7E57  # pattern seed of the self-check regions

KPF_KSM_ON_ANON = (
    "this kernel's /proc/kpageflags sets KPF_KSM on plain anonymous pages (a page never made mergeable "
    "read KPF_KSM): fs/proc/page.c stable_page_flags() tests mapping & PAGE_MAPPING_KSM, which is "
    "PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE, so every anonymous page matches; KSM pages are told "
    "here by a page frame that two independently filled pages share"
)
KPF_KSM_MISSING = ("this kernel's /proc/kpageflags does not set KPF_KSM on merged pages (frames two processes "
                   "share after ksmd merged them): fs/proc/page.c stable_page_flags()")
ZERO_PAGE_MISSING = ("this kernel's /proc/kpageflags does not set KPF_ZERO_PAGE on the zero page KSM maps with "
                     "use_zero_pages=1: fs/proc/page.c stable_page_flags()")
NO_MERGE = ("ksmd did not merge two identical mergeable regions within {timeout:g}s: KPF_KSM on merged pages, "
            "the zero page and ksm_stat were not checked")


@dataclass(frozen=True)
class Truth:
    """What the self-check found the kernel's truth sources to be."""

    kpf_ksm: bool = True  # KPF_KSM marks KSM pages and nothing else
    ksm_stat: bool = True  # ksm_merging_pages counted merged pages right (or was not checked)
    findings: Tuple[str, ...] = ()  # each source that lied, as a finding about the kernel


TRUSTED = Truth()  # before (or without) a self-check: the sources are taken at their word


def self_check(knobs, proc=Path("/proc"), timeout=MERGE_TIMEOUT):
    """Drive KSM over two workers whose page truth is known and return the
    Truth found.  Needs the run's lock; leaves the knobs as it found them."""
    findings = []
    ksm_stat_ok = True
    original = knobs.snapshot()
    with Cleanup() as defer:
        defer(knobs.restore, original)
        knobs.write("run", RUN_UNMERGE)
        if knobs.has("merge_across_nodes") and knobs.read("merge_across_nodes") != "1":
            knobs.wait_unshared(10)  # the switch needs nothing shared
            knobs.write("merge_across_nodes", 1)  # the two workers may run on different nodes
        pool = WorkerPool()
        defer(pool.close)
        zero = knobs.has("use_zero_pages")
        workers = [pool.spawn(f"truth[{i}]") for i in range(2)]
        regions = {w.name: _map_regions(w, zero) for w in workers}

        def views(region):
            return [pages.region_pages(w.pid, regions[w.name][region]["addr"], NPAGES, proc) for w in workers]

        if any(v.ksm for v in views("plain") + views("twin")):
            findings.append(KPF_KSM_ON_ANON)
        settings = [("pages_to_scan", 5000), ("sleep_millisecs", 10)] + ([("use_zero_pages", 1)] if zero else [])
        for name, value in settings:
            knobs.write(name, value)
        knobs.write("run", 1)

        def merged():
            # the evidence that does not rest on kpageflags: each twin page
            # shares its frame with its twin, every zero page maps one frame
            zeros = {pfn for v in (views("zero") if zero else ()) for pfn in v.pfns}
            return len(pages.shared_pfns(*views("twin"))) == NPAGES and len(zeros) <= 1

        try:
            wait_until(merged, timeout, "the self-check's twin pages merge", interval=0.02)
        except DeadlineExceeded:
            findings.append(NO_MERGE.format(timeout=timeout))
        else:
            if any(v.ksm_count != NPAGES for v in views("twin")):
                findings.append(KPF_KSM_MISSING)
            if zero and any(v.zero != NPAGES for v in views("zero")):
                findings.append(ZERO_PAGE_MISSING)
            # stable_tree_append() counts a merged page just after its PTE is
            # replaced (mm/ksm.c): give the count a moment to catch up
            try:
                wait_until(lambda: _merging_counted(workers, proc), 5.0, "ksm_merging_pages", interval=0.02)
            except DeadlineExceeded:
                counts = [(pages.ksm_stat(w.pid, proc) or {}).get("ksm_merging_pages") for w in workers]
                ksm_stat_ok = False
                findings.append(f"this kernel's /proc/PID/ksm_stat says ksm_merging_pages {counts} for two "
                                f"processes whose pagemap shows {NPAGES} merged pages each "
                                f"(fs/proc/base.c proc_pid_ksm_stat())")
    lying = KPF_KSM_ON_ANON in findings or KPF_KSM_MISSING in findings
    return Truth(kpf_ksm=not lying, ksm_stat=ksm_stat_ok, findings=tuple(findings))


def checked(knobs, proc=Path("/proc")):
    """self_check(), or, when it could not run, a finding that says so and
    the one check that needs neither workers nor ksmd: a page of this
    process, never mergeable, must not read KPF_KSM."""
    try:
        return self_check(knobs, proc)
    except (HarnessError, OSError) as exc:
        failed = f"the self-check of /proc/kpageflags and ksm_stat could not run ({exc})"
        if _own_page_reads_ksm(proc):
            return Truth(kpf_ksm=False, findings=(f"{failed}: KPF_KSM was checked on a page of the harness's own",
                                                  KPF_KSM_ON_ANON))
        return Truth(findings=(f"{failed}: their answers are taken as they are",))


def _own_page_reads_ksm(proc):
    """Whether a private anonymous page of this process, never made
    mergeable, reads KPF_KSM."""
    page = mmap.mmap(-1, pages.PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        page[0] = 1  # fault it in
        buf = ctypes.c_char.from_buffer(page)
        try:
            return bool(pages.region_pages(os.getpid(), ctypes.addressof(buf), 1, proc).ksm)
        finally:
            del buf  # the mmap cannot close while a buffer is exported
    finally:
        page.close()


def _map_regions(w, zero):
    """twin: identical in both workers, mergeable; plain: identical too, never
    mergeable; zero: zero-filled, mergeable (use_zero_pages kernels)."""
    unique = {"kind": "unique", "seed": SEED, "groups": 1}
    specs = [("twin", unique, True), ("plain", dict(unique, seed=SEED + 1), False)]
    if zero:
        specs.append(("zero", {"kind": "zero", "seed": 1, "groups": 1}, True))
    return {name: w.call("map", region=name, npages=NPAGES, pattern=pattern, worker=0, mergeable=mergeable,
                         thp=False, node=None)
            for name, pattern, mergeable in specs}


def _merging_counted(workers, proc):
    """ksm_merging_pages is NPAGES in every worker, or there is none to check
    (before 5.19; 6.1's ksm_stat has ksm_rmap_items only)."""
    stats = [pages.ksm_stat(w.pid, proc) or {} for w in workers]
    return all(s.get("ksm_merging_pages", NPAGES) == NPAGES for s in stats)


class KsmJudge:
    """Decides which mapped pages are KSM pages, given the Truth of this run.

    One per scenario run: it remembers, per (lineage, address), the frames
    it saw visibly shared (see the module comment)."""

    def __init__(self, truth, proc=Path("/proc")):
        self.truth = truth
        self.proc = proc
        self.seen = set()  # (lineage, virtual address, pfn) of every page seen as a shared KSM frame

    def judge(self, placed):
        """placed: [(lineage, RegionPages)] of every process of the scenario.
        Returns [(view with .ksm the KSM pages, unsure count)] in that order."""
        if self.truth.kpf_ksm:
            return [(v, 0) for _, v in placed]
        places = collections.defaultdict(set)  # pfn -> {(lineage, address)}
        for lineage, v in placed:
            for i in v.ksm:
                places[v.pfns[i]].add((lineage, v.addr + i * pages.PAGE_SIZE))
        out, visible = [], collections.Counter()  # visible: pid -> pages judged KSM
        for lineage, v in placed:
            shared = tuple(i for i in v.ksm if len(places[v.pfns[i]]) > 1)
            self.seen.update((lineage, v.addr + i * pages.PAGE_SIZE, v.pfns[i]) for i in shared)
            visible[v.pid] += len(shared)
            out.append(replace(v, ksm=shared))
        excess = {}  # pid -> merged pages ksm_stat counts beyond the visible ones, read when needed
        judged = []
        for (lineage, v), mine in zip(placed, out):
            was_shared = sum(1 for i in set(v.ksm) - set(mine.ksm)
                             if (lineage, v.addr + i * pages.PAGE_SIZE, v.pfns[i]) in self.seen)
            if was_shared and v.pid not in excess:
                excess[v.pid] = self._excess(v.pid, visible[v.pid])
            unsure = min(was_shared, excess.get(v.pid, 0))
            if unsure:
                excess[v.pid] -= unsure  # the process's other regions share what is left
            judged.append((mine, unsure))
        return judged

    def _excess(self, pid, visible):
        """How many more merged pages ksm_stat counts for `pid` than the
        `visible` ones (unbounded without a trusted ksm_stat)."""
        stat = pages.ksm_stat(pid, self.proc) if self.truth.ksm_stat else None
        if stat is None or "ksm_merging_pages" not in stat:
            return 1 << 62
        return max(0, stat["ksm_merging_pages"] - visible)

    def reason(self, unsure):
        """Why a verdict that `unsure` pages could change cannot be given."""
        return (f"cannot check on this kernel: KPF_KSM is set on every anonymous page here "
                f"(fs/proc/page.c stable_page_flags()), and {unsure} pages that were shared KSM pages at the "
                f"same address are now mapped once, which ksm_stat still counts as merged (a KSM page left "
                f"with one mapping cannot be told from a copy)")
