"""Worker actions (`do: NAME`): what the selected workers do to their
memory and processes.  The worker half of each is zygote.py's op_NAME."""
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

from .. import dataverify, hwpoison, lkdtm, numa, pages, uffd
from .base import Action
from .fields import field
from .values import ALL_PAGES, PageRange, Pattern, WaitFor, worker_names

MAX_NODE = 127  # mem.c ksmh_mbind() passes a 128-bit node mask
ADVICE = ("mergeable", "unmergeable", "pageout", "cold", "dontneed", "hugepage", "nohugepage")
PROTECTIONS = ("none", "read", "readwrite")
FOREVER_FORKS = 1 << 40  # a fork storm's count when only its duration (or until_done) ends it
FOREVER_SECONDS = 3600  # a fork storm's duration when only its count (or until_done) ends it


def one_region():
    """The `region` field of an action on one region of each worker."""
    return field("region", "region", "Region name.", required=True, excluded=("all",),
                 message="{key}: name one region ('all' is for verify and conditions)")


def refuse_if_forked(order, step, why):
    """Refuse `step` on workers an earlier fork step acted on: the harness
    knows their children's regions only as their parent's."""
    forked = sorted(worker_names(step.workers, order.group_sizes) & order.forked)
    if forked:
        raise order.refuse(step, f"{step.action} of workers an earlier fork step acted on ({', '.join(forked)}): "
                                 f"{why}")


@dataclass(frozen=True)
class OnPages(Action):
    """An action on some pages of one region of each selected worker."""

    region: str = one_region()
    pages: PageRange = field("pages", "pages", "Which pages: all, 10-19, 7, 50% or 'last 50%'.",
                             default=ALL_PAGES)

    def span(self, w):
        """{start, count} of the pages in worker w's region."""
        start, count = self.pages.span(w.regions[self.region]["npages"])
        return {"start": start, "count": count}

    def measured_pages(self, run):
        return sum(self.span(w)["count"] for w in run.state.select(self.workers))


@dataclass(frozen=True)
class Write(OnPages):
    action: ClassVar[str] = "write"
    op: ClassVar[Optional[str]] = "write"
    summary: ClassVar[str] = "Write new content into pages (breaks COW: do_wp_page() copies a KSM page)."
    pattern: Pattern = field("pattern", "pattern", "Content to write (default: unique, never seen before).",
                             default=Pattern("unique"))

    def begin(self, run):
        # one generation for the step: a `same` or `groups` pattern written to
        # several workers gives them all the same content, as at setup
        run.state.generation += 1

    def send(self, run, w):
        w.send("write", region=self.region, pattern=self.pattern.command(), worker=w.index,
               generation=run.state.generation, **self.span(w))


def advise(run, w, action, advice):
    """madvise(advice) over the action's pages; before a pageout, the frames the pages leave."""
    span = action.span(w)
    if advice == "pageout":
        run.record_frames(w, action.region, span)
    w.send("advise", region=action.region, advice=advice, **span)


@dataclass(frozen=True)
class Advise(OnPages):
    action: ClassVar[str] = "advise"
    op: ClassVar[Optional[str]] = "advise"
    summary: ClassVar[str] = "madvise() pages of a region."
    advice: str = field("advice", "choice", "madvise advice.", required=True, choices=ADVICE,
                        message="unknown advice {value!r} (" + ", ".join(ADVICE) + ")")

    @property
    def drops_pages(self):
        # after MADV_DONTNEED a read fault maps the shared zero page
        # (do_anonymous_page()); after MADV_HUGEPAGE khugepaged may collapse
        # the range into a THP, and since 6.12 splitting it maps its
        # zero-filled subpages to the shared zero page (mm/huge_memory.c
        # __split_huge_page() -> remap_page(..., RMP_USE_SHARED_ZEROPAGE)):
        # either way a zero page there is not KSM's (explore's 30 minutes on
        # 6.18 raised a false ksm_zero_pages FAIL on it)
        return self.advice in ("dontneed", "hugepage")

    def send(self, run, w):
        advise(run, w, self, self.advice)


@dataclass(frozen=True)
class Mprotect(OnPages):
    action: ClassVar[str] = "mprotect"
    op: ClassVar[Optional[str]] = "mprotect"
    # a drawn touch or write after PROT_NONE kills the worker (SIGSEGV): explore's
    # first 30-minute run on 6.18 raised that as its only alarm, a false one
    explorable: ClassVar[bool] = False
    summary: ClassVar[str] = ("mprotect() pages of a region: unmerge reaches PROT_NONE pages too (mm/ksm.c "
                              "break_ksm() unshares through handle_mm_fault(), which checks no protection).")
    prot: str = field("prot", "choice", "Protection: none, read or readwrite (a touch or write of a page it "
                      "forbids kills the worker with SIGSEGV; verify reads through /proc/self/mem).",
                      required=True, choices=PROTECTIONS,
                      message="unknown protection {value!r} (" + ", ".join(PROTECTIONS) + ")")

    def send(self, run, w):
        w.send("mprotect", region=self.region, prot=self.prot, **self.span(w))


@dataclass(frozen=True)
class Userfaultfd(OnPages):
    action: ClassVar[str] = "userfaultfd"
    op: ClassVar[Optional[str]] = "userfaultfd"
    explorable: ClassVar[bool] = False  # a drawn write after wp waits for ever; minor needs a memfd region
    summary: ClassVar[str] = ("Register pages with a userfaultfd (harness/uffd.py): wp write-protects them "
                              "(UFFDIO_WRITEPROTECT; a write to them would then wait for ever), minor needs a "
                              "memfd region.  The scenario skips where the kernel lacks the mode.")
    mode: str = field("mode", "choice", "wp: UFFDIO_REGISTER_MODE_WP; minor: UFFDIO_REGISTER_MODE_MINOR.",
                      required=True, choices=uffd.MODES,
                      message="unknown userfaultfd mode {value!r} (" + ", ".join(uffd.MODES) + ")")
    protect: bool = field("protect", "bool", "wp: set the uffd-wp bit (true) or clear it (false).", default=True)

    def validate(self, p, m, where, in_concurrent):
        if "protect" in m and self.mode != "wp":
            raise p.err("protect is for mode wp", m, "protect", f"{where}.protect")

    def check_order(self, order):
        if self.mode == "minor":
            groups = {s.group for s in self.workers}
            groups = set(order.group_sizes) if "all" in groups else groups
            plain = sorted(g for g in groups if (g, self.region) not in order.memfd)
            if plain:
                raise order.refuse(self, f"userfaultfd minor mode needs a memfd region: {self.region} of "
                                         f"{', '.join(plain)} is anonymous (set memfd: true)")
        super().check_order(order)

    def send(self, run, w):
        w.send("userfaultfd", region=self.region, mode=self.mode, protect=self.protect, **self.span(w))


@dataclass(frozen=True)
class Pageout(OnPages):
    action: ClassVar[str] = "pageout"
    op: ClassVar[Optional[str]] = "advise"
    summary: ClassVar[str] = "MADV_PAGEOUT pages of a region (needs setup.swap)."

    def check_order(self, order):
        if not order.swap:
            raise order.refuse(self, "pageout needs setup.swap (no swap device to page out to)")
        super().check_order(order)

    def send(self, run, w):
        advise(run, w, self, "pageout")


@dataclass(frozen=True)
class Touch(OnPages):
    action: ClassVar[str] = "touch"
    op: ClassVar[Optional[str]] = "touch"
    summary: ClassVar[str] = "Fault pages in (read, or write with write: true), optionally from several threads."
    write: bool = field("write", "bool", "Write word 0 of each page instead of reading it.", default=False)
    threads: int = field("threads", "int", "Threads touching in parallel.", default=1, minimum=1, maximum=64,
                         limit="threads")
    pace_us: float = field("pace_us", "number", "Microseconds between touches.", default=0, minimum=0)
    wait_for: Optional[WaitFor] = field("wait_for", "wait_for", "Start once a KSM file reads a value.")

    def send(self, run, w):
        wait = self.wait_for.command(run.ctx.knobs.root) if self.wait_for else {}
        w.send("touch", region=self.region, write=self.write, threads=self.threads, pace_us=self.pace_us,
               **self.span(w), **wait)

    def receive(self, run, w, reply, windows):
        run.state.add(w, self.region, "sigbus", reply["sigbus"])
        return run.note_window(w, "page faults", reply["times_ns"], windows)


@dataclass(frozen=True)
class Verify(Action):
    action: ClassVar[str] = "verify"
    summary: ClassVar[str] = "Check every page's data now (the end of the scenario checks it anyway)."
    region: Optional[str] = field("region", "region", "Region name, or all (default all).")

    def receive(self, run, w, reply, windows):
        for name in ([self.region] if self.region and self.region != "all" else list(w.regions)):
            res = w.call("verify", timeout=run.left(), region=name)
            run.state.add(w, name, "sigbus", res["sigbus"])
            run.state.add(w, name, "bad", res["bad"])
            problems = dataverify.problems(w.name, name, res, run.data_mode)
            run.check(f"data {run.data_mode} in {w.name}.{name} (line {run.current_line})", not problems,
                      "; ".join(problems) or f"{res['pages']} pages verified")


@dataclass(frozen=True)
class Fork(Action):
    action: ClassVar[str] = "fork"
    op: ClassVar[Optional[str]] = "fork"
    summary: ClassVar[str] = ("Fork children (a storm for `duration` seconds, or `count` forks) that live on "
                              "(up to live_cap) or exit at once.")
    count: int = field("count", "int", "How many forks.", default=FOREVER_FORKS, minimum=1,
                       maximum=FOREVER_FORKS)
    duration: float = field("duration", "number", "Seconds to go on forking.", default=FOREVER_SECONDS, minimum=0,
                            exclusive_minimum=True)
    depth: int = field("depth", "int", "Generations: each child forks again down to this depth.", default=1,
                       minimum=1, maximum=16, limit="fork_depth")
    live: bool = field("live", "bool", "Children live on (paused) instead of exiting at once.", default=True)
    live_cap: int = field("live_cap", "int", "Most children alive at once.", default=256, minimum=0,
                          maximum=1 << 20)
    lifetime_us: float = field("lifetime_us", "number", "Live children exit after this many microseconds and "
                               "are replaced, a rolling population (0: they live to the end).", default=0, minimum=0)
    interval_us: float = field("interval_us", "number", "Microseconds between forks.", default=0, minimum=0)
    wait_for: Optional[WaitFor] = field("wait_for", "wait_for", "Start once a KSM file reads a value.")
    until_done: bool = field("until_done", "bool", "Go on until the concurrent step's harness steps are done.",
                             default=False)
    # the keys of which a fork needs one (else it would never end)
    needs_one_of: ClassVar[Tuple[str, ...]] = ("count", "duration", "until_done")

    def validate(self, p, m, where, in_concurrent):
        if self.until_done and not in_concurrent:
            raise p.err("until_done only makes sense inside a concurrent step", m, "until_done",
                        f"{where}.until_done")

    @property
    def stops_when_told(self):
        return self.until_done

    @property
    def ends_processes(self):
        return True

    def check_order(self, order):
        super().check_order(order)
        order.forked |= worker_names(self.workers, order.group_sizes)

    def send(self, run, w):
        wait = self.wait_for.command(run.ctx.knobs.root) if self.wait_for else {}
        w.send("fork", count=self.count, duration=self.duration, depth=self.depth,
               live_cap=self.live_cap if self.live else 0, lifetime_us=self.lifetime_us,
               interval_us=self.interval_us, until_told=self.until_done, **wait)

    def receive(self, run, w, reply, windows):
        run.state.add(w, "all", "forks", reply["forks"])
        if windows:
            return run.note_window(w, "forks", reply["times_ns"], windows)
        run.state.notes.append(f"{w.name}: {reply['forks']} forks, {reply['live']} children alive at the end")
        if reply["failed"]:
            run.state.notes.append(f"{w.name}: {reply['failed']} forks failed ({reply['error']})")


@dataclass(frozen=True)
class PrctlMerge(Action):
    action: ClassVar[str] = "prctl_merge"
    op: ClassVar[Optional[str]] = "prctl_merge"
    summary: ClassVar[str] = "PR_SET_MEMORY_MERGE (6.4+): the whole process mergeable (1) or not (0)."
    value: int = field("value", "flag", "1/true: merge the whole process; 0/false: stop.", required=True)

    def send(self, run, w):
        w.send("prctl_merge", value=self.value)


@dataclass(frozen=True)
class Exec(Action):
    action: ClassVar[str] = "exec"
    op: ClassVar[Optional[str]] = "exec"
    explorable: ClassVar[bool] = False  # explore's drafts do not track which workers forked (check_order)
    summary: ClassVar[str] = ("The workers execve() themselves (same pid, a new mm): the new image answers, "
                              "then its regions are mapped and filled afresh as the group defines them "
                              "(new addresses); PR_SET_MEMORY_MERGE is kept as the kernel keeps it.")
    merge: Optional[int] = field("merge", "flag", "Check that PR_GET_MEMORY_MERGE reads this after exec "
                                 "(1: MMF_VM_MERGE_ANY survived exec).")

    @property
    def drops_pages(self):
        return True

    @property
    def ends_processes(self):
        return True  # the old mm exits (exit_mmap() -> ksm_exit())

    def check_order(self, order):
        super().check_order(order)
        refuse_if_forked(order, self, "their children keep the old regions, which the harness no longer knows")

    def send(self, run, w):
        w.send("exec")

    def receive(self, run, w, reply, windows):
        run.check(f"{w.name} keeps its pid over exec", reply["pid"] == w.pid,
                  f"pid {w.pid} before, {reply['pid']} after")
        if self.merge is not None:
            run.check(f"{w.name}: PR_GET_MEMORY_MERGE after exec == {self.merge}", reply["merge"] == self.merge,
                      f"PR_GET_MEMORY_MERGE read {reply['merge']}")
        w.regions.clear()
        for key in [k for k in run.state.frames if k[0] == w.name]:
            del run.state.frames[key]
        run.map_regions(w, run.group_of(w))
        run.state.notes.append(f"{w.name}: exec'd (PR_GET_MEMORY_MERGE {reply['merge']}), "
                               f"regions {', '.join(w.regions)} mapped afresh")


@dataclass(frozen=True)
class Remap(OnPages):
    action: ClassVar[str] = "remap"
    op: ClassVar[Optional[str]] = "remap"
    # the new VMA is VM_MERGEABLE only under PR_SET_MEMORY_MERGE, which
    # explore's drafts do not follow range by range (Draft.mergeable())
    explorable: ClassVar[bool] = False
    summary: ClassVar[str] = ("Map fresh anonymous memory over pages of a region (mmap MAP_FIXED): they read "
                              "zero after.  The new VMA is VM_MERGEABLE only under PR_SET_MEMORY_MERGE "
                              "(mm/ksm.c ksm_add_vma()); whether it merges with its neighbours (the `vmas` "
                              "metric) is mm/vma.c's call.")

    @property
    def drops_pages(self):
        return True  # a read fault maps the zero page there, as after MADV_DONTNEED

    def send(self, run, w):
        w.send("remap", region=self.region, **self.span(w))


@dataclass(frozen=True)
class Mremap(Action):
    action: ClassVar[str] = "mremap"
    op: ClassVar[Optional[str]] = "mremap"
    explorable: ClassVar[bool] = False  # explore's drafts do not track which workers forked (check_order)
    summary: ClassVar[str] = ("Move a whole region to a new address (mremap MREMAP_FIXED): mm/mremap.c "
                              "move_vma() first unmerges its KSM pages (ksm_madvise(MADV_UNMERGEABLE)) "
                              "and keeps VM_MERGEABLE, so ksmd merges them again at the new address.")
    region: str = one_region()

    def check_order(self, order):
        super().check_order(order)
        refuse_if_forked(order, self, "their children keep the region at the old address")

    def send(self, run, w):
        w.send("mremap", region=self.region)

    def receive(self, run, w, reply, windows):
        old = w.regions[self.region]["addr"]
        w.regions[self.region] = reply
        run.state.frames.pop((w.name, self.region), None)
        run.state.notes.append(f"{w.name}.{self.region}: moved from {old:#x} to {reply['addr']:#x}")


@dataclass(frozen=True)
class Migrate(Action):
    action: ClassVar[str] = "migrate"
    summary: ClassVar[str] = ("Move a region's pages to a NUMA node: move_pages(), again for the pages still "
                              "elsewhere until all are there (a page ksmd holds makes one call stop short).")
    region: str = field("region", "region", "Region name.", required=True)
    node: int = field("node", "int", "Target NUMA node.", required=True, minimum=0, maximum=MAX_NODE)

    def receive(self, run, w, reply, windows):
        info = w.regions[self.region]
        addrs = [info["addr"] + i * pages.PAGE_SIZE for i in range(info["npages"])]
        moved, calls = numa.migrate(w.pid, addrs, self.node)
        run.state.notes.append(f"{w.name}.{self.region}: {moved}/{len(addrs)} pages now on node {self.node}"
                               f" ({calls} move_pages calls)")


@dataclass(frozen=True)
class Exit(Action):
    action: ClassVar[str] = "exit"
    summary: ClassVar[str] = "The workers exit (their pages are freed; later steps may not act on them)."

    @property
    def ends_processes(self):
        return True

    def check_order(self, order):
        order.exited |= worker_names(self.workers, order.group_sizes)

    def receive(self, run, w, reply, windows):
        w.send("exit")
        w.exit = w.pool.wait_exit(w.pid)


@dataclass(frozen=True)
class Hwpoison(OnPages):
    action: ClassVar[str] = "hwpoison"
    damaging: ClassVar[bool] = True
    summary: ClassVar[str] = ("Poison the pages' frames (madvise MADV_HWPOISON, or the injector for swapped "
                              "out ones); needs requires.memory_failure, damages the kernel for good.")

    def check_order(self, order):
        if not order.requires.memory_failure:
            raise order.refuse(self, "hwpoison steps need requires.memory_failure: true (so that kernels "
                                     "without CONFIG_MEMORY_FAILURE skip)")
        super().check_order(order)

    def receive(self, run, w, reply, windows):
        start, count = self.pages.span(w.regions[self.region]["npages"])
        done = hwpoison.poison(run.ctx.poison, w, self.region, start, count,
                               run.state.frames.get((w.name, self.region), {}),
                               lambda: [r.text for r in run.kmsg.records()], run.left())
        run.state.add(w, self.region, "poisoned", sum(p.poisoned for p in done))
        lost = {p.page for p in done if hwpoison.lost_in_swapcache(p.after)}
        if lost:
            run.state.lost.setdefault((w.name, self.region), set()).update(lost)
        run.state.notes.append(f"{w.name}.{self.region} hwpoison: {hwpoison.summary(done)}")


@dataclass(frozen=True)
class Provoke(Action):
    action: ClassVar[str] = "provoke"
    op: ClassVar[Optional[str]] = "provoke"
    damaging: ClassVar[bool] = True
    summary: ClassVar[str] = ("The worker writes an LKDTM crash type to provoke-crash/DIRECT (harness/lkdtm.py): "
                              "the kernel runs that crash in it; damages the kernel for good.")
    crash: str = field("crash", "str", "LKDTM crash type (BUG, WARNING, HUNG_TASK, PANIC, ...).", required=True,
                       pattern=r"[A-Z][A-Z0-9_]*",
                       message="crash must be an LKDTM crash type such as BUG, WARNING, HUNG_TASK, PANIC; "
                               "not {value!r}")

    def send(self, run, w):
        w.send("provoke", path=str(lkdtm.direct(run.ctx.roots.sys / "kernel/debug")), crash=self.crash)

    def receive(self, run, w, reply, windows):
        run.state.notes.append(f"{w.name}: LKDTM {self.crash} provoked; the write returned")

