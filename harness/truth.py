"""Page truth for every counter: what the kernel says about KSM, held against
what the processes map.

The kernel keeps its own books: per mm (/proc/PID/ksm_stat: ksm_rmap_items,
ksm_merging_pages, ksm_zero_pages, ksm_process_profit) and globally
(/sys/kernel/mm/ksm: pages_shared, pages_sharing, pages_unshared,
pages_volatile, ksm_zero_pages, general_profit).  Bugs in exactly these books
are a recurring class of upstream fixes, so the runner checks them at every
point where ksmd is quiet (run reads 0 or 2: run_store() in mm/ksm.c takes
ksm_thread_mutex, which ksmd holds for a whole batch, so once the write
returned no scan is half done) against /proc/PID/pagemap + /proc/kpageflags.

What mm/ksm.c promises, and so what is checked:
- stable_tree_append() adds an rmap item to a stable node and counts it in
  its mm's ksm_merging_pages and in pages_shared (the node's first item) or
  pages_sharing (every further one, rmap_hlist beyond the first);
  remove_rmap_item_from_tree() undoes both.  A max_page_sharing chain
  (stable_node_chain) holds several dups, each its own KSM page with its own
  items.  So with every rmap item matching its page table entry:
  ksm_merging_pages == the process's entries mapping a KPF_KSM page, over
  every mapping ksmd scans (VM_MERGEABLE, pages.mergeable_mappings():
  PR_SET_MEMORY_MERGE merges beyond the declared regions); pages_shared == distinct KSM frames mapped; pages_shared +
  pages_sharing == every KSM entry of every process.  Items match entries
  only once ksmd saw the pages after their last change: a write (COW), a
  pageout, a fork (ksm_fork() starts the child at 0 items) or an exit
  (__ksm_exit() leaves a busy mm's items to ksmd) is undone at ksmd's next
  visit, so these are checked when SETTLE_SCANS full scans passed since.
  One lag outlives that rule: cmp_and_merge_page() -> try_to_merge_two_pages()
  makes the page it is scanning the KSM page in place, and only the scanning
  mm's item is counted.  Every other mm that maps that same page since a fork
  gets its item at ksmd's next visit (stable_tree_search() returns the page
  itself, "ksm page forked", and stable_tree_append() counts it), so the
  ones ksmd visited earlier in that scan map a KSM page uncounted until the
  next scan.  Traced on 6.18 (ksm_merge_with_ksm_page events): the last
  child forked, at the tail of ksm_mm_head, made its page KSM in the second
  scan after run=2, after its 7 siblings sharing it had been visited.  Such a
  shortfall is allowed where the process shares each of those entries (same
  address, same PFN) with another process of its fork family, and said.
- unmerge_and_remove_all_rmap_items() (run=2) removes every rmap item of
  every mm and break_ksm() breaks every KSM page and KSM-placed zero page:
  after run=2 every process's counters are 0, and so are the global ones
  whoever else uses KSM.
- ksm_map_zero_page()/ksm_might_unmap_zero_page() (6.10+) count KSM-placed
  zero pages at the page table entry itself (the dirty bit tells them from a
  read fault's zero page, which pagemap does not show): the harness wrote
  every page of its regions, so a zero page there was placed by KSM, and the
  process maps at most as many zero pages in all its mergeable mappings:
  zero pages in the regions <= ksm_zero_pages <= zero pages in them all.
- ksm_process_profit() is (ksm_merging_pages + ksm_zero_pages) * PAGE_SIZE -
  ksm_rmap_items * sizeof(struct ksm_rmap_item) and general_profit_show() is
  (pages_sharing + ksm_zero_pages) * PAGE_SIZE - ksm_rmap_items *
  sizeof(struct ksm_rmap_item) (Documentation/admin-guide/mm/ksm.rst), with
  the global item count == pages_shared + pages_sharing + pages_unshared +
  pages_volatile (pages_volatile_show()).  sizeof(struct ksm_rmap_item) is
  not exported: it is derived from one process's numbers, and every other
  process and general_profit must agree with that one size.
The global identities are checked only while the harness's processes are
the only KSM users it can see (every /proc/PID/ksm_stat of the others is 0);
with other users present the result says so instead.
"""
import collections
from dataclasses import dataclass
from pathlib import Path

from . import kernel, pages
from .results import Check

SETTLE_SCANS = 2  # full scans after a change before rmap items match page tables again
# global counters that run=2 (and so the end of every scenario) puts back to 0
UNMERGED_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "ksm_zero_pages",
                     "general_profit")
# ... and what must be back where it started once the workers exited and run=2 was written
END_COUNTERS = UNMERGED_COUNTERS + ("stable_node_chains", "stable_node_dups")
# /proc/vmstat counters of KSM events that any KSM user moves (mm/ksm.c
# ksm_might_need_to_copy(): ksm_swpin_copy; mm/memory.c do_wp_page(): cow_ksm)
MACHINE_WIDE = ("ksm_swpin_copy", "cow_ksm")
SHOWN = 6  # per-process numbers shown in one check's detail
# A known kernel defect, named instead of checked: before 6.2 ksm_fork()
# (include/linux/ksm.h, read in 6.1.192) only calls __ksm_enter(), so a child
# keeps the ksm_merging_pages and ksm_rmap_items that dup_mm() copied from its
# parent, for rmap items it does not have (6.1 children of a merged worker
# read 512/512 after run=2 removed every item); 6.12's ksm_fork() sets both
# to 0.  Versions in between are checked: a FAIL there names the counter.
INHERITED_BEFORE = "6.2"


@dataclass(frozen=True)
class Seen:
    """One process at one quiet point, read through ksm_stat and pagemap."""

    label: str  # "victim[0]" or "victim[0] child 4242"
    worker: str  # the worker it is or descends from (whose changes it shares)
    stat: dict  # /proc/PID/ksm_stat (+ ksm_merging_pages), pages.ksm_stat()
    pages: pages.ProcessPages  # KSM and zero-page entries over every private mapping
    zero_in_regions: int  # zero-page entries inside the regions the harness wrote


def rmap_item_size(seen):
    """sizeof(struct ksm_rmap_item) from each process's ksm_process_profit:
    {size or None (not an integer): [labels]}, over processes with rmap items."""
    sizes = collections.defaultdict(list)
    for s in seen:
        st = s.stat
        if st.get("ksm_rmap_items", 0) > 0 and "ksm_process_profit" in st:
            saved = (st.get("ksm_merging_pages", 0) + st.get("ksm_zero_pages", 0)) * pages.PAGE_SIZE
            cost, rest = divmod(saved - st["ksm_process_profit"], st["ksm_rmap_items"])
            sizes[None if rest else cost].append(s.label)
    return dict(sizes)


def uncounted_forked(checked, seen):
    """{label: shortfall} for the processes of `checked` whose
    ksm_merging_pages falls short of their KSM entries by no more than the
    entries they share (same address, same PFN) with another process of their
    fork family in `seen`: KSM pages made in place after ksmd's last visit to
    them (see the module's docstring)."""
    family = collections.defaultdict(collections.Counter)
    for s in seen:
        family[s.worker].update(s.pages.ksm)
    late = {}
    for s in checked:
        short = len(s.pages.ksm) - s.stat.get("ksm_merging_pages", 0)
        if short > 0 and short <= sum(1 for entry in s.pages.ksm if family[s.worker][entry] > 1):
            late[s.label] = short
    return late


def listed(pairs, how):
    """"a 3=3, b 4=4 (how)" with at most SHOWN pairs."""
    shown = ", ".join(pairs[:SHOWN]) + (f", ... {len(pairs) - SHOWN} more" if len(pairs) > SHOWN else "")
    return f"{shown} ({how})"


def other_users(mine, proc=Path("/proc")):
    """Processes outside `mine` that the kernel counts KSM pages or rmap items
    for, as "pid N (comm): ksm_merging_pages=..."; None when this harness
    cannot see every process (it runs in a child PID namespace)."""
    try:
        for line in (Path(proc) / "self/status").read_text().splitlines():
            if line.startswith("NSpid:") and len(line.split()) > 2:
                return None
    except FileNotFoundError:
        return None
    out = []
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            stat = pages.ksm_stat(int(entry.name), proc) or {}
            comm = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        used = {k: stat[k] for k in ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages") if stat.get(k)}
        if used:
            out.append(f"pid {entry.name} ({comm}): " + ", ".join(f"{k}={v}" for k, v in used.items()))
    return out


class Truth:
    """When the harness's processes last changed their pages, and the checks
    of the kernel's KSM books at the quiet points of one scenario."""

    def __init__(self, knobs, proc=Path("/proc"), merge_any=False, thp_mode=None):
        self.knobs = knobs  # knobs.Knobs: the global counters
        self.proc = Path(proc)
        # the scenario uses PR_SET_MEMORY_MERGE: every mapping of a process
        # may be merged, so look at all VM_MERGEABLE ones (smaps), not only
        # the regions, which otherwise are all that ksmd scans
        self.merge_any = merge_any
        self.thp_mode = thp_mode  # /sys/kernel/mm/transparent_hugepage/enabled's mode, None without THP
        self.changed_at = {}  # worker name -> full_scans when its pages last changed
        self.dropped = set()  # workers that gave pages back (MADV_DONTNEED): a read maps the zero page
        self.exited_at = None  # full_scans when a harness process last exited
        self.start = None  # END_COUNTERS before the workers started (after setup's run=2)
        # UNMERGED_COUNTERS that setup's run=2 left non-zero: a drift from before this
        # scenario (a leaked ksm_zero_pages stays until reboot); checks count from it
        self.residue = {}
        # children's ksm_merging_pages/ksm_rmap_items are their parent's (INHERITED_BEFORE)
        self.inherited = not kernel.version_at_least(kernel.release(str(proc)), INHERITED_BEFORE)

    # -- what the runner tells us --
    def changed(self, workers, dropped=False):
        """These workers' pages (and their descendants') changed just now;
        `dropped`: by MADV_DONTNEED, after which a read fault maps the zero
        page without KSM (do_anonymous_page())."""
        now = self.knobs.read_int("full_scans")
        for w in workers:
            self.changed_at[w.name] = now
            if dropped:
                self.dropped.add(w.name)

    def unmerged(self):
        """run=2 removed every rmap item (and reset full_scans to 0,
        unmerge_and_remove_all_rmap_items()): no item is stale any more."""
        self.changed_at.clear()
        self.exited_at = None

    def exited(self):
        """A harness process exited: its mm may keep rmap items until ksmd comes by."""
        self.exited_at = self.knobs.read_int("full_scans")

    def begin(self):
        """Right after setup's run=2, before the workers exist: run=2 unmerged
        every mm of every KSM user, so what does not read 0 was left by an earlier
        leak in the kernel's books, not by this scenario."""
        self.start = self.read(END_COUNTERS)
        self.residue = {n: v for n, v in self.start.items() if n in UNMERGED_COUNTERS and v != 0}

    def residue_note(self, when):
        """Says what the checks at `when` count from, where setup's run=2 left a drift."""
        if not self.residue:
            return []
        return [f"global counters {when}: checked against what setup's run=2 left before any worker existed, "
                f"not 0: {', '.join(f'{n}={v}' for n, v in self.residue.items())} (the kernel's books drifted "
                f"earlier on this boot; they stay so until reboot)"]

    def read(self, names):
        return {n: self.knobs.read_int(n) for n in names if self.knobs.has(n)}

    def huge(self, region):
        """The region (a worker's region description) may be backed by THPs:
        MADV_HUGEPAGE, or THP "always" and no MADV_NOHUGEPAGE.  A zero page
        there need not be KSM's: since 6.12 splitting a THP maps its
        zero-filled subpages to the shared zero page (mm/huge_memory.c
        __split_huge_page() -> remap_page(..., RMP_USE_SHARED_ZEROPAGE))."""
        return bool(self.thp_mode) and self.thp_mode != "never" and (
            region.get("thp") is True or (region.get("thp") is None and self.thp_mode == "always"))

    # -- reading the processes --
    def look(self, processes):
        """Seen for each (pid, worker) that is still there.  One frame's flags
        are read once and serve every process that maps it: the look is one
        snapshot, which is exact where it counts, at the quiet points check()
        judges (with ksmd stopped no frame becomes a KSM page meanwhile)."""
        out, known = [], {}
        for pid, w in processes:
            regions = [(i["addr"], i["addr"] + i["npages"] * pages.PAGE_SIZE) for i in w.regions.values()]
            try:
                stat = pages.ksm_stat(pid, self.proc) or {}  # {} before Linux 5.19: no per-process books
                spans = list(regions)
                if self.merge_any and stat.get("ksm_merge_any") != "no":  # shown since 6.13 or so
                    spans += [(m.start, m.end) for m in pages.mergeable_mappings(pid, self.proc)]
                seen = pages.process_pages(pid, spans, self.proc, known)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a short-lived child exited meanwhile
            spans = [] if w.name in self.dropped else \
                [s for s, i in zip(regions, w.regions.values()) if not self.huge(i)]
            zero = sum(1 for a in seen.zero if any(lo <= a < hi for lo, hi in spans))
            out.append(Seen(w.name if pid == w.pid else f"{w.name} child {pid}", w.name, stat, seen, zero))
        return out

    # -- the checks --
    def check(self, when, seen, mine):
        """(checks, notes) at a quiet point: `seen` from look() over every
        worker and descendant, `mine` their pids.  run reading 1 is no quiet point."""
        run = self.knobs.read_int("run")
        if run == 1:
            return [], [f"page truth {when}: not checked, ksmd is running (run=1)"]
        if not seen:
            return [], [f"page truth {when}: no process left to check"]
        if run == 2:
            return self.after_unmerge(when, seen)
        return self.after_stop(when, seen, mine)

    def trusted(self, seen):
        """(processes whose rmap counters can be checked, notes): children's
        are their parent's on a kernel with the INHERITED_BEFORE defect."""
        if not self.inherited:
            return seen, []
        kept = [s for s in seen if s.label == s.worker]
        children = len(seen) - len(kept)
        return kept, [f"known kernel defect, not checked: the ksm_merging_pages and ksm_rmap_items of {children} "
                      f"children (before Linux {INHERITED_BEFORE} ksm_fork() leaves them as copied from the "
                      f"parent)"] if children else []

    def after_unmerge(self, when, seen):
        """run=2 removed every rmap item and broke every KSM page (and, where
        the kernel counts them, every KSM-placed zero page: break_ksm() tests
        is_ksm_zero_pte() since then; 6.1 leaves them mapped): all 0."""
        checks = []
        kept, notes = self.trusted(seen)
        for counter in ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "ksm_process_profit"):
            have = [s for s in (kept if counter in ("ksm_rmap_items", "ksm_merging_pages") else seen)
                    if counter in s.stat]
            if not have:
                continue
            bad = [f"{s.label} {counter}={s.stat[counter]}" for s in have if s.stat[counter] != 0]
            checks.append(Check(f"{counter} == 0 in every process after run=2 ({when})", not bad,
                                listed(bad or [f"{len(have)} processes: 0"], "/proc/PID/ksm_stat")))
        counted = [s for s in seen if "ksm_zero_pages" in s.stat]
        if counted:
            bad = [f"{s.label} {s.zero_in_regions}" for s in counted if s.zero_in_regions]
            checks.append(Check(f"no zero page left in the written regions after run=2 ({when})", not bad,
                                listed(bad or [f"{len(counted)} processes: 0"],
                                       "pagemap + kpageflags KPF_ZERO_PAGE")))
        now = self.read(UNMERGED_COUNTERS)
        bad = [f"{n}={v}" for n, v in now.items() if v != self.residue.get(n, 0)]
        checks.append(Check(f"global counters 0 after run=2 ({when})", not bad,
                            listed(bad or [f"{n}={v}" for n, v in now.items()], "/sys/kernel/mm/ksm")))
        return checks, [f"page truth {when}: {n}" for n in notes] + self.residue_note(when)

    def after_stop(self, when, seen, mine):
        """run=0: every book against the pages, where ksmd has seen them since they changed."""
        checks, notes = [], []
        scans = self.knobs.read_int("full_scans")
        kept, defect = self.trusted(seen)
        notes.extend(f"page truth {when}: {n}" for n in defect)
        settled = [s for s in kept if scans >= self.changed_at.get(s.worker, -SETTLE_SCANS) + SETTLE_SCANS]
        unsettled = sorted({s.worker for s in seen} - {s.worker for s in settled})
        if unsettled:
            notes.append(f"page truth {when}: ksm_merging_pages not checked for {', '.join(unsettled)} and their "
                         f"children: their pages changed fewer than {SETTLE_SCANS} full scans ago "
                         f"(full_scans={scans})")
        settled = [s for s in settled if "ksm_merging_pages" in s.stat]
        late = uncounted_forked(settled, seen)
        if settled:
            bad, good = [], []
            for s in settled:
                pair = f"{s.label} {s.stat.get('ksm_merging_pages', 0)}={len(s.pages.ksm)}"
                if s.label in late:
                    good.append(f"{pair} ({late[s.label]} fork-shared not yet counted)")
                else:
                    (good if s.stat.get("ksm_merging_pages", 0) == len(s.pages.ksm) else bad).append(pair)
            checks.append(Check(f"ksm_merging_pages == KSM pages mapped, per process ({when})", not bad,
                                listed(bad or good, "ksm_stat = entries with KPF_KSM in every VM_MERGEABLE "
                                                    "mapping, smaps + pagemap + kpageflags")))
        if late:
            notes.append(f"page truth {when}: {sum(late.values())} KSM entries of {len(late)} processes not yet "
                         f"counted in ksm_merging_pages: each maps a page a fork relative shares at the same "
                         f"address, which ksmd made KSM in place after its last visit to that process "
                         f"(counted at the next one, stable_tree_search(): \"ksm page forked\")")
        zeroed = [s for s in seen if "ksm_zero_pages" in s.stat]
        if zeroed:
            bad, good = [], []
            for s in zeroed:
                pair = f"{s.label} {s.zero_in_regions}<={s.stat['ksm_zero_pages']}<={len(s.pages.zero)}"
                ok = s.zero_in_regions <= s.stat["ksm_zero_pages"] <= len(s.pages.zero)
                (good if ok else bad).append(pair)
            checks.append(Check(f"ksm_zero_pages between the zero pages in the written regions and all mapped, "
                                f"per process ({when})", not bad,
                                listed(bad or good, "KPF_ZERO_PAGE from pagemap + kpageflags <= ksm_stat <= ...")))
        checks.extend(self.profits(when, seen))
        others = other_users(mine, self.proc)
        if others is None:
            notes.append(f"global counters {when}: not checked against page truth: this harness runs in a "
                         f"child PID namespace and cannot see every KSM user")
        elif others:
            notes.append(f"global counters {when}: not checked against page truth: other KSM users: "
                         + "; ".join(others[:3]))
        elif defect:
            notes.append(f"global counters {when}: not checked against page truth: the children's "
                         f"ksm_merging_pages cannot be summed (known kernel defect above)")
        elif unsettled or self.exited_at is not None and scans < self.exited_at + SETTLE_SCANS:
            notes.append(f"global counters {when}: not checked against page truth: pages changed or processes "
                         f"exited fewer than {SETTLE_SCANS} full scans ago")
        else:
            checks.extend(self.globals(when, seen, sum(late.values())))
            notes.extend(self.residue_note(when))
        return checks, notes

    def globals(self, when, seen, late=0):
        """The harness is the only KSM user and ksmd saw every change; `late`
        KSM entries are fork-shared ones not counted yet (uncounted_forked())."""
        now = {n: v - self.residue.get(n, 0) for n, v in self.read(("pages_shared", "pages_sharing",
                                                                     "ksm_zero_pages")).items()}
        sysfs = "sysfs, less what setup's run=2 left" if self.residue else "sysfs"
        frames = collections.Counter(pfn for s in seen for _, pfn in s.pages.ksm)
        mapped = sum(frames.values())
        merging = sum(s.stat.get("ksm_merging_pages", 0) for s in seen)
        checks = [
            Check(f"pages_shared == distinct KSM frames mapped ({when})", now["pages_shared"] == len(frames),
                  f"pages_shared={now['pages_shared']} ({sysfs}), {len(frames)} distinct KPF_KSM PFNs in "
                  f"{len(seen)} processes' pagemaps"),
            Check(f"pages_shared + pages_sharing == KSM pages mapped == sum of ksm_merging_pages ({when})",
                  now["pages_shared"] + now["pages_sharing"] == mapped - late == merging,
                  f"pages_shared+pages_sharing={now['pages_shared'] + now['pages_sharing']} ({sysfs}), "
                  f"{mapped} entries mapping KPF_KSM pages (pagemap)"
                  + (f" less {late} fork-shared ones not counted yet" if late else "")
                  + f", sum of ksm_merging_pages={merging} (ksm_stat)"),
        ]
        if "ksm_zero_pages" in now and all("ksm_zero_pages" in s.stat for s in seen):
            total = sum(s.stat["ksm_zero_pages"] for s in seen)
            checks.append(Check(f"ksm_zero_pages == sum over the processes ({when})", now["ksm_zero_pages"] == total,
                                f"ksm_zero_pages={now['ksm_zero_pages']} ({sysfs}), sum of per-process "
                                f"ksm_zero_pages={total} (ksm_stat)"))
        return checks

    def profits(self, when, seen):
        """ksm_process_profit and general_profit against their definitions,
        with one sizeof(struct ksm_rmap_item) derived from the processes."""
        sizes = rmap_item_size(seen)
        if not sizes:
            return []
        if len(sizes) != 1 or None in sizes:
            detail = "; ".join(f"{'not an integer' if k is None else k} bytes: {', '.join(v[:SHOWN])}"
                               for k, v in sizes.items())
            return [Check(f"one sizeof(ksm_rmap_item) explains every ksm_process_profit ({when})", False,
                          f"(ksm_merging_pages + ksm_zero_pages) * {pages.PAGE_SIZE} - ksm_process_profit, "
                          f"divided by ksm_rmap_items: {detail}")]
        (size, labels), = sizes.items()
        checks = [Check(f"one sizeof(ksm_rmap_item) explains every ksm_process_profit ({when})", 0 < size <= 256,
                        f"{size} bytes for all {len(labels)} processes with rmap items "
                        f"((ksm_merging_pages + ksm_zero_pages) * {pages.PAGE_SIZE} - ksm_process_profit) / "
                        f"ksm_rmap_items, ksm_stat")]
        names = ("general_profit", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                 "ksm_zero_pages")
        now = self.read(names)
        if len(now) == len(names):
            items = now["pages_shared"] + now["pages_sharing"] + now["pages_unshared"] + now["pages_volatile"]
            want = (now["pages_sharing"] + now["ksm_zero_pages"]) * pages.PAGE_SIZE - items * size
            checks.append(Check(f"general_profit == (pages_sharing + ksm_zero_pages) * page - rmap items * "
                                f"sizeof(ksm_rmap_item) ({when})", now["general_profit"] == want,
                                f"general_profit={now['general_profit']}, computed {want} from pages_sharing="
                                f"{now['pages_sharing']}, ksm_zero_pages={now['ksm_zero_pages']}, {items} rmap "
                                f"items (pages_shared+pages_sharing+pages_unshared+pages_volatile), {size} bytes "
                                f"each (sysfs)"))
        return checks

    def back_to_start(self):
        """After the workers exited and run=2: every global counter as at the start."""
        now = self.read(END_COUNTERS)
        moved = [f"{n} {self.start[n]} -> {v}" for n, v in now.items() if n in self.start and v != self.start[n]]
        return Check("KSM counters back where they started after the workers' exit and run=2", not moved,
                     listed(moved or [f"{n}={v}" for n, v in now.items()], "/sys/kernel/mm/ksm, before the "
                                                                               "workers started and now"))



def uses_merge_any(scenario):
    """Does the scenario set PR_SET_MEMORY_MERGE on any process?"""
    def steps(seq):
        return any(getattr(s, "action", None) == "prctl_merge" or steps(s.children) for s in seq)
    return any(g.prctl_merge for g in scenario.workers) or steps(scenario.steps)
