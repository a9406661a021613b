"""Run scenarios against the running kernel.

run_all() takes the machine lock, restores what a killed run left behind,
journals the knobs, and runs each scenario: setup -> steps -> expectations,
with a LIFO cleanup stack that always puts knobs, swap, cgroups and processes
back, on pass, failure, exception, SIGINT and SIGTERM.  A resource leaves the
journal only once it is gone; whatever a scenario's cleanup could not remove
is tried again at the end of the run, and stays journaled for `ksm-harness
restore` if that fails too.
"""
import contextlib
import os
import platform
import re
import signal
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import (attribution, cgroup, dataverify, environment, faultinject, hwpoison, kernel, pages, requirements, swap,
               taint, truth, truthcheck, unreaped)
from .cgroup import Cpuset, MemCgroup
from .cleanup import Cleanup
from .errors import (CannotRun, CleanupError, DeadlineExceeded, HarnessError, KernelError, ScenarioStopped, Skip,
                     WorkerError)
from .journal import Journal
from .lock import MachineLock
from .kmsg import KmsgWatcher
from .knobs import NEED_UNSHARED, RUN_UNMERGE, Knobs, WriteResult
from .metrics import Metrics
from .recovery import Tracked, entry_name, recover, recover_stale
from .results import ERROR, FAIL, SKIP, Check, Measurement, RunResult, ScenarioResult, StepMark
from .runstate import RunState
from .sampler import Counters, Sampler, deltas
from .swap import SwapManager
from .watchdog import NOT_RUN, Watchdog, settle, stuck_text, workers_in_kernel
from .verdict import errored, verdict
from .workers import WorkerDied, WorkerPool
from .zygote import PAGE_SIZE


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like KeyboardInterrupt, cleaning up on the way."""


@contextlib.contextmanager
def unwinding_on_term():
    """SIGTERM and SIGHUP raise Interrupted while the block runs (main
    thread), so that its finally clauses put back what it made; the old
    handlers after."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def on_term(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in previous:
        signal.signal(s, on_term)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class Roots:
    """Where the kernel interfaces live (tests point these at fakes)."""

    ksm: Path = Path("/sys/kernel/mm/ksm")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")


class ScenarioRun:
    """Executes one scenario; every step and check lands in self.checks."""

    def __init__(self, ctx, scenario):
        self.ctx = ctx
        self.sc = scenario
        self.state = RunState(scenario)
        self.checks = []
        self.errors = []  # why the run tested less than it meant (a missed race window): ERROR
        self.steps = []
        self.measurements = []  # results.Measurement of each step with a `measure:` key
        self.t0 = time.monotonic()
        self.deadline = self.t0 + scenario.timeout
        self.metrics = Metrics(self.state, ctx.counters, ctx.roots.proc, ctx.truth)
        thp = kernel.thp(str(ctx.roots.sys))
        self.truth = truth.Truth(ctx.knobs, ctx.roots.proc, truth.uses_merge_any(scenario), thp and thp.mode)
        self.racing = False  # inside a concurrent step: workers act, ksmd is not quiet
        self.unchecked = []  # "what: why": checks this kernel's truth sources could not decide
        self.swap_dev = None
        self.cgroup = None
        self.cpuset = None
        self.injector = None
        self.reference = None
        self.kmsg = None  # the run's KmsgWatcher, set by run_scenario()
        self.pool = None  # the WorkerPool, once setup made it

    # -- helpers --
    def left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"scenario timeout of {self.sc.timeout:g}s reached")
        return left

    def where(self):
        """The step being run, for the watchdog's message."""
        line = getattr(self, "current_line", None)
        if line == self.sc.line:
            return "the final checks"
        return f"line {line}" if line else "setup"

    def busy(self):
        return self.pool.busy() if self.pool else []

    @property
    def data_mode(self):
        """How the scenario's data is checked (its `data:` expectation): intact or sigbus-or-intact."""
        return next(e.mode for e in self.sc.expect if e.kind == "data")

    def stuck_in_kernel(self, dog):
        """The busy workers, and the harness's main thread, asleep in the
        kernel (state D) when a deadline passed: what the watchdog saw when it
        fired, or a look now at the workers (the main thread is here)."""
        seen = dog.stuck or workers_in_kernel(self.busy(), self.ctx.roots.proc)
        return tuple(s for s in seen if s.state == "D")

    def check(self, what, passed, detail, kernel=True):
        """Record a check; passed None: this kernel cannot decide it (kept
        apart from the checks: an ERROR "cannot check on this kernel", which
        neither passes nor blames the kernel)."""
        if passed is None:
            self.unchecked.append(f"{what}: {detail}")
            return False
        self.checks.append(Check(what, bool(passed), detail, kernel))
        return passed

    def mark(self, name, start):
        self.steps.append(StepMark(round(start - self.t0, 4), round(time.monotonic() - self.t0, 4), name))

    # -- setup --
    def setup(self, defer):
        ctx, sc = self.ctx, self.sc
        knobs = ctx.knobs
        # A clean start: unmerge everything, so the knobs that need
        # pages_shared == 0 can be set and nothing is left from before.
        defer(knobs.restore, ctx.original)
        self.write_knobs((("run", RUN_UNMERGE),), "ok", setup=True)
        self.truth.begin()
        defer(self.counters_back)
        if any(n in ("merge_across_nodes", "max_page_sharing") for n, _ in sc.knobs):
            knobs.wait_unshared(10)
        self.write_knobs(sc.knobs, "ok", setup=True)
        if sc.swap:
            tracked = self.journaled("swap", swap.to_journal, ctx.swap.remove, defer)
            self.swap_dev = ctx.swap.create(sc.swap["kind"], sc.swap["npages"] * PAGE_SIZE, journal=tracked.record)
        pool = self.pool = WorkerPool()
        defer(pool.close)
        if sc.cgroup:
            tracked = self.journaled("cgroups", cgroup.to_journal, cgroup.remove_stale, defer)
            self.cgroup = MemCgroup.create(f"run-{os.getpid()}", proc=str(ctx.roots.proc), journal=tracked.record)
            if not sc.cgroup.get("oom_kill", True):
                self.cgroup.disable_oom_kill()
                # a worker waiting over the limit goes on once it is lifted, before it is killed
                defer(self.cgroup.set_limit, None)
        if sc.cpuset:
            tracked = self.journaled("cgroups", cgroup.to_journal, cgroup.remove_stale, defer)
            self.cpuset = Cpuset.create(f"run-{os.getpid()}", proc=str(ctx.roots.proc), journal=tracked.record)
            self.cpuset.place(sc.cpuset["cpus"], sc.cpuset["mems"])
            self.state.notes.append(f"cpuset {self.cpuset.path}: " + ", ".join(
                f"{k} {v}" for k, v in self.cpuset.effective().items()))
        for g in sc.workers:
            ws = []
            for i in range(g.count):
                w = pool.spawn(f"{g.name}[{i}]")
                w.index = i  # the unique pattern pairs worker i of groups sharing a seed
                for group in (self.cgroup, self.cpuset):
                    if group:  # before the worker maps anything: its pages are charged and placed there
                        group.add(w.pid)
                if g.prctl_merge:
                    w.call("prctl_merge", value=1)
                ws.append(w)
            self.state.groups[g.name] = ws
        if self.cgroup:
            self.cgroup_limit(sc.cgroup["limit_pages"], "ok")
        # one region after another, in file order: MADV_MERGEABLE order is the
        # order of ksm_mm_head's list (__ksm_enter() adds at the tail while
        # ksmd's cursor is at the head), which is the order unmerge walks
        for g in sc.workers:
            for w in self.state.groups[g.name]:
                self.map_regions(w, g)

    def group_of(self, w):
        """The scenario.WorkerGroup worker w belongs to."""
        return next(g for g in self.sc.workers if w in self.state.groups.get(g.name, ()))

    def map_regions(self, w, group):
        """Map, fill and advise worker w's regions as its group (scenario.WorkerGroup) defines them."""
        for r in group.regions:
            w.regions[r.name] = w.call(
                "map", timeout=self.left(), region=r.name, npages=r.npages, thp=r.thp, node=r.node,
                mergeable=r.mergeable, memfd=r.memfd, worker=w.index,
                pattern={"kind": r.pattern.kind, "seed": r.pattern.seed, "groups": r.pattern.groups})

    def journaled(self, kind, to_journal, remove, defer):
        """A Tracked resource whose removal is deferred before it is made."""
        tracked = Tracked(self.ctx.journal, kind, to_journal, remove)
        defer(tracked.undo)
        return tracked

    def cgroup_limit(self, npages, expect):
        result = self.cgroup.set_limit(npages * PAGE_SIZE)
        if expect == "any":
            self.state.notes.append(f"cgroup limit {npages * PAGE_SIZE >> 20}M: {result.name}")
            return
        self.check(f"cgroup limit {npages * PAGE_SIZE >> 20}M gives {expect}", result.name == expect.upper(),
                   f"memory limit write: {result.name}")

    def write_knobs(self, writes, expect, setup=False):
        results = []
        for name, value in writes:
            w = self.ctx.knobs.write(name, value)
            results.append(w)
            ok = w.result.value == expect or (expect == "ok" and w.result is WriteResult.OK)
            if setup and not ok:
                raise KernelError(f"setup could not write {name}={value}: {w.result.value}")
            if not setup:
                self.check(f"knob {name}={value} gives {expect}", ok,
                           f"{w.result.value} after {w.seconds:.3f}s")
            # after an unmerge, after a knob the kernel lets change only with
            # nothing shared (NEED_UNSHARED), and where ksmd stopped (run=0)
            unshared = (name, str(value)) in (("run", RUN_UNMERGE), ("run", "0")) or name in NEED_UNSHARED
            if (name, str(value)) == ("run", RUN_UNMERGE) and w.result is WriteResult.OK:
                self.truth.unmerged()
            if unshared and not setup and w.result is WriteResult.OK:
                self.invariant(f"after {name}={value} (line {self.current_line})")
        return results

    # -- invariants and checks --
    def invariant(self, when):
        """Nothing shared => nothing mapped KSM: with pages_shared == 0 no
        worker or descendant may map a KSM page (KPF_KSM) in its regions or,
        under PR_SET_MEMORY_MERGE, in any mapping ksmd scans
        (pages.mergeable_mappings()).  Then, where ksmd is quiet, the page
        truth of every counter."""
        processes = self.metrics.processes("all")
        shared = self.ctx.knobs.read_int("pages_shared")
        what = f"pages_shared == 0 => no KSM page mapped ({when})"
        if shared != 0:
            self.check(what, True, f"not applicable: pages_shared={shared} at that point")
        if not self.metrics.judge.truth.kpf_ksm:
            self.invariant_judged(what, shared)
            return
        seen = self.truth.look(processes)
        shared = self.merged_meanwhile(what, shared)
        if shared == 0:
            mapped = [f"{s.label} (pid {s.pages.pid}): {len(s.pages.ksm)} KSM pages (first at "
                      f"{s.pages.ksm[0][0]:#x})" for s in seen if s.pages.ksm]
            self.check(what, not mapped, "; ".join(mapped[:5]) or
                       f"no process maps a KSM page ({len(seen)} processes, regions"
                       f"{' and VM_MERGEABLE mappings' if self.truth.merge_any else ''})")
        if not self.racing:
            checks, notes = self.truth.check(when, seen, {pid for pid, _ in processes})
            self.checks.extend(checks)
            self.state.notes.extend(notes)

    def losses_kept(self, when):
        """A page memory failure took in swapcache stays lost: a read of it
        raises SIGBUS.  do_swap_page() returns VM_FAULT_HWPOISON for the
        poisoned swapcache page (mm/memory.c); swapoff's unuse_pte()
        (mm/swapfile.c) maps a swapin error entry for a page that is not up to
        date, which ksm_might_need_to_copy() must hand back as it is, not
        copy (part 4 of the seed fix).  A page that reads back was made up
        from a lost frame."""
        readable = []
        for w in self.state.select(["all"]):
            for region, lost in sorted((r, p) for (name, r), p in self.state.lost.items() if name == w.name):
                back = hwpoison.read_back(w, region, lost, self.left())
                readable += [f"{w.name}.{region} pages {first}-{first + n - 1}: {got} of {n} read without SIGBUS"
                             for first, n, got in back]
        if self.state.lost:
            self.check(f"pages memory failure took in swapcache raise SIGBUS when read ({when})", not readable,
                       "; ".join(readable[:5]) or
                       f"{sum(map(len, self.state.lost.values()))} lost pages, each read raised SIGBUS")

    def merged_meanwhile(self, what, shared):
        """pages_shared read again after the page walk.  With ksmd at work
        (run=1) a page it merged between the first read and the walk is a
        KSM page before pages_shared counts it (mm/ksm.c
        try_to_merge_two_pages() makes the KSM page, stable_tree_append()
        then counts it): where the count moved off 0 meanwhile, the walk
        proves nothing (explore's 30-minute run on 6.18 raised this as a
        false alarm at the end of an example that left ksmd merging)."""
        if shared != 0:
            return shared
        now = self.ctx.knobs.read_int("pages_shared")
        if now != 0:
            self.check(what, True, f"not applicable: ksmd merged while the pages were looked at "
                                   f"(pages_shared 0, then {now})")
        return now

    def invariant_judged(self, what, shared):
        """The invariant where this kernel's KPF_KSM lies (truthcheck.py): the
        judge decides which pages are KSM pages, and the counters' page truth,
        which rests on KPF_KSM, is left out, with a note saying so."""
        note = "counters not held against page truth: this kernel's KPF_KSM cannot be trusted (run findings)"
        if note not in self.state.notes:
            self.state.notes.append(note)
        if shared != 0:
            return
        mapped, unsure = [], 0
        for group in self.state.groups:
            for view, maybe in self.metrics.judged_views(group, "all"):
                unsure += maybe
                if view.ksm:
                    mapped.append(f"pid {view.pid}: {view.ksm_count} KSM pages (first at page {view.ksm[0]})")
        if self.merged_meanwhile(what, shared):
            return
        passed = False if mapped else None if unsure else True  # None: cannot check here
        self.check(what, passed, "; ".join(mapped[:5]) or (self.metrics.judge.reason(unsure) if unsure
                                                              else "no process maps a KSM page"))

    def attributed(self, cond):
        """A rise of a machine-wide KSM counter (+ksm_swpin_copy) is this
        scenario's evidence only while no other process uses KSM: else the
        path may not have run here at all, which is ERROR, not PASS."""
        if not cond.delta or cond.name not in truth.MACHINE_WIDE:
            return
        others = truth.other_users({pid for pid, _ in self.metrics.processes("all")}, self.ctx.roots.proc)
        if others is None or others:
            who = "; ".join(others[:3]) if others else "this harness cannot see every process (PID namespace)"
            self.errors.append(f"{cond.text}: a machine-wide counter, not this scenario's alone: other KSM users "
                               f"at the end: {who}")

    def counters_back(self):
        """Once the workers exited (the pool closes first): run=2, and every
        global counter must be where it was before they started."""
        if self.ctx.knobs.write("run", RUN_UNMERGE).result is WriteResult.OK:
            self.checks.append(self.truth.back_to_start())

    def verify_data(self, when, mode="intact"):
        """Every page of every worker and descendant has its pattern's content."""
        problems, checked = [], 0
        for w in self.state.select(["all"]):
            for region in w.regions:
                try:
                    res = w.call("verify", timeout=self.left(), region=region)
                except WorkerDied as exc:
                    problems.append(str(exc))
                    continue
                checked += 1
                self.state.add(w, region, "sigbus", res["sigbus"])
                problems.extend(dataverify.problems(w.name, region, res, mode))
            for d in w.descendants():
                for region, info in w.regions.items():
                    res = dataverify.remote(d.pid, info, self.ctx.roots.proc)
                    if res is not None:
                        checked += 1
                        problems.extend(dataverify.problems(f"{w.name} child {d.pid}", region, res, mode))
        self.check(f"data {mode} ({when})", not problems,
                   "; ".join(problems[:5]) or f"{checked} process regions verified")

    # -- steps --
    def run_steps(self, steps):
        """Run steps in order; False when the scenario cannot go on (a wait timed out)."""
        for step in steps:
            if not self.run_step(step):
                return False
        return True

    def run_step(self, step):
        """One step (steps.Step) on this set-up run, timed and shown; False when
        the scenario cannot go on.  Raises DeadlineExceeded past the timeout."""
        self.left()
        self.current_line = step.line
        measure = getattr(step, "measure", None)
        npages = step.measured_pages(self) if measure else None
        start = time.monotonic()
        self.ctx.progress.step(step.title)
        try:
            return step.run(self)
        finally:
            if measure:
                self.measurements.append(Measurement(measure, round(time.monotonic() - start, 6),
                                                     None if npages is None else npages * pages.PAGE_SIZE))
            self.mark(step.title, start)

    def receive(self, action, w, windows):
        """Worker w's reply to an action (steps.Action) sent to it, handed to
        the action; a worker that died on it fails a check."""
        try:
            reply = w.receive(action.op, self.left()) if action.op else None
        except WorkerDied as exc:
            self.check(f"worker {w.name} survives {action.action}", False, str(exc))
            return None
        return action.receive(self, w, reply, windows)

    def acted(self, workers, actions):
        """Tell the page truth that these workers' pages changed (and that
        processes exited: a fork storm's children, an exit step)."""
        self.truth.changed(workers, dropped=any(a.drops_pages for a in actions))
        for a in (a for a in actions if a.drops_pages):
            for w in workers:
                self.state.forget_lost(w, getattr(a, "region", None))
        if any(a.ends_processes for a in actions):
            self.truth.exited()

    def record_frames(self, w, region, span):
        """Remember the PFN of each mapped page about to be paged out."""
        info = w.regions[region]
        view = pages.region_pages(w.pid, info["addr"], info["npages"], self.ctx.roots.proc)
        start, count = span.get("start", 0), span.get("count", info["npages"])
        frames = self.state.frames.setdefault((w.name, region), {})
        for i in range(start, start + count):
            if view.pfns[i]:
                frames[i] = view.pfns[i]
            else:  # paged out before: the frame recorded then may have been freed since
                frames.pop(i, None)

    def note_window(self, w, what, times_ns, windows):
        """How often a race window was hit: events inside a knob write's span.
        Returns (events inside any window, events), None outside a race."""
        if not windows:
            return None
        inside = set()
        for start, end, label in windows:
            hit = {i for i, t in enumerate(times_ns) if t and start <= t / 1e9 <= end}
            inside |= hit
            self.state.notes.append(f"{w.name}: {len(hit)} of {len(times_ns)} {what} happened while "
                                    f"{label} was being written ({end - start:.3f}s)")
        return len(inside), len(times_ns)

    # -- expectations --
    def expectations(self):
        for e in self.sc.expect:
            if e.kind == "that":
                ok, detail = self.metrics.holds(e.cond, self.reference)
                self.check(e.text, ok, detail)
                self.attributed(e.cond)
            elif e.kind == "data":
                self.verify_data("at the end", e.mode)


class RunContext:
    """What all scenarios of a run share."""

    def __init__(self, roots, journal, progress, allow_kernel_damage=False):
        self.roots = roots
        self.journal = journal
        self.progress = progress
        self.knobs = Knobs(roots.ksm)
        self.counters = Counters(self.knobs, roots.proc)
        self.swap = SwapManager(proc=str(roots.proc), sys=str(roots.sys))
        self.faults = faultinject.FailMakeRequest(sys=str(roots.sys), proc=str(roots.proc))
        self.poison = hwpoison.HwPoison(debugfs=str(roots.sys / "kernel/debug"), proc=str(roots.proc))
        self.allow_kernel_damage = allow_kernel_damage  # hwpoison steps may run outside a VM guest
        self.original = None
        self.cleanup = None
        self.unfit = None  # "SCENARIO (TITLE)" once the kernel is no longer fit to run more
        self.truth = truthcheck.TRUSTED  # what run_all's self-check found the truth sources to be


def run_scenario(ctx, sc, drive=None):
    """One scenario -> ScenarioResult.  Never raises for kernel behaviour:
    failures are checks, harness problems are ERROR results.  drive(run)
    runs the steps on the set-up ScenarioRun (default: sc.steps in order,
    ScenarioRun.run_steps); one that chooses each step as it goes (explore)
    calls run.run_step(step) itself.  The final invariant, the expectations
    and the verdict follow either way."""
    started = time.monotonic()
    identity = {"started": _now(), "params": {k: str(v) for k, v in sc.params.items()}}  # for KCIDB, LAVA
    try:
        requirements.check(sc, ctx)
    except Skip as skip:
        return ScenarioResult(sc.name, sc.file, sc.line, SKIP, 0.0, reason=skip.reason, **identity)
    run = ScenarioRun(ctx, sc)
    expected_crash = [e for e in sc.expect if e.kind == "crash"]  # reports the scenario is written to provoke
    dog = Watchdog(run.deadline, sc.timeout, run.busy, ctx.roots.proc,
                   expected=[e.title for e in expected_crash], where=run.where)
    # only the kernel's own records (facility 0) count: a user-space line
    # written to /dev/kmsg is never a kernel report (tests that inject fake
    # reports point roots.kmsg at a log file of their own)
    watcher = KmsgWatcher(ctx.roots.kmsg, on_crash=dog.on_report)
    watcher.start()
    run.kmsg = watcher
    taint_path = ctx.roots.proc / "sys/kernel/tainted"
    taint_before = taint.read_tainted(taint_path)
    sampler = Sampler(ctx.counters, interval=0.1, t0=run.t0)
    with Cleanup() as defer:
        ctx.cleanup = defer
        try:
            defer(watcher.stop)
            with dog:
                run.setup(defer)
                run.reference = ctx.counters.read()
                sampler.start()
                defer(sampler.stop)
                (drive or run_in_order)(run)
                run.current_line = sc.line
                run.invariant("at the end")
                run.losses_kept("at the end")
                run.expectations()
        except Exception as exc:  # EOFError, TimeoutExpired, a bug: this scenario's ERROR, not the run's end
            stuck = run.stuck_in_kernel(dog) if isinstance(exc, (ScenarioStopped, DeadlineExceeded, WorkerError)) else ()
            if dog.report is not None or stuck:
                # the kernel's: it reported, or a worker (or the harness's own
                # knob write) sleeps in it past every deadline
                run.check("the scenario runs to its end", False,
                          "; ".join([str(exc)] + [s.text() for s in stuck if s.text() not in str(exc)]))
            else:
                # ours, not the kernel's: a worker that reported an error (mmap
                # ENOMEM), the scenario's deadline on a slow machine, a knob or
                # file the harness could not handle, or a harness bug
                run.errors.append(f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, (HarnessError, OSError)):
                run.check("the harness ran the scenario to its end", False, traceback.format_exc(), kernel=False)
        finally:
            dog.disarm()
            if dog.report is not None:
                settle(watcher.records)  # the whole report, not its first lines
            sampler_done = run.reference is not None
            end_values = ctx.counters.read()
    for failure in defer.failures:
        run.check(f"cleanup: {failure.what}", False, failure.traceback, kernel=False)
    crashes = tuple(watcher.crashes())
    if watcher.lost():
        run.errors.append(watcher.lost())
    new_taint = taint.new_flags(taint_before, taint.read_tainted(taint_path))
    for e in expected_crash:
        hits = [c.title for c in crashes if re.search(e.title, c.title)]
        run.check(e.text, bool(hits), "; ".join(hits) or "no matching kernel report")
    unexpected = [c for c in crashes if not any(re.search(e.title, c.title) for e in expected_crash)]
    run.check("no kernel crash report", not unexpected,
              "; ".join(f"{c.title} (log line {c.line})" for c in unexpected) or "log clean")
    if not expected_crash:
        run.check("no new taint", not new_taint, ", ".join(new_taint) or "taint unchanged")
    if run.pool is not None and run.pool.unreaped:
        # SIGKILL waits for a task to wake: one asleep for good may hold mm
        # locks any later scenario needs, so none runs on this kernel
        run.check("every worker reaped after SIGKILL", False,
                  stuck_text(run.pool.unreaped) + ": left to the kernel and the journal, not waited for")
        for stuck in run.pool.unreaped:  # `restore` kills it again, and keeps it journaled while it is there
            ctx.journal.add("process", unreaped.to_journal(stuck, ctx.roots.proc))
        report = dog.report or (crashes[0] if crashes else None)
        ctx.unfit = f"{sc.name} ({report.title if report else 'workers stuck in the kernel'})"
    status, reason = verdict(run.checks, run.errors + [f"cannot check on this kernel: {u}" for u in run.unchecked])
    if status == FAIL and unexpected:
        # the kernel's report is the headline, whatever it broke next (a worker it killed)
        headline = f"the kernel reported {unexpected[0].title}"
        if headline not in reason:
            reason = f"{headline} (log line {unexpected[0].line}); {reason}"
    return ScenarioResult(
        name=sc.name, file=sc.file, line=sc.line, status=status,
        duration=round(time.monotonic() - started, 3), reason=reason, checks=tuple(run.checks),
        crashes=crashes, taint=tuple(new_taint), samples=tuple(sampler.samples), steps=tuple(run.steps),
        deltas=deltas(run.reference, end_values) if sampler_done else {},
        notes=tuple(run.state.notes) + tuple(f"not checked: {u}" for u in run.unchecked),
        log_context=tuple(r.text for r in watcher.context[-20:]),
        measurements=tuple(run.measurements),
        **identity,
    )


def run_in_order(run):
    """The scenario's own steps, in file order."""
    run.run_steps(run.sc.steps)


def preflight(roots):
    if os.geteuid() != 0:
        raise CannotRun("ksm-harness drives /sys/kernel/mm/ksm and reads /proc/kpageflags: run it as root")
    if not Knobs(roots.ksm).exists():
        raise CannotRun(f"{roots.ksm} does not exist: this kernel has no KSM (CONFIG_KSM=n)")


@contextlib.contextmanager
def driving(ctx, lock, wait, say):
    """Hold the machine while KSM is driven (`run`, `perf`): the lock,
    SIGTERM and SIGHUP unwinding as Interrupted, a killed run's journal undone
    first, the knobs as found journaled; at the end whatever is journaled is
    undone (knobs back as found), signals and lock released.  Yields the list
    that receives the final restore's failures (empty: the machine is back as
    found); after an exception they are raised as CleanupError from it."""
    journal = ctx.journal
    lock.acquire(wait=wait, on_wait=lambda pid: say(f"waiting for ksm-harness pid {pid} to finish "
                                                    f"(it holds {lock.path})..."))
    failures = []
    interrupted = None
    with unwinding_on_term():
        try:
            stale = journal.stale()
            if stale:
                recover_stale(ctx, journal, stale, say)
            ctx.original = ctx.knobs.snapshot()
            journal.begin(ctx.original)
            yield failures
        except BaseException as exc:  # KeyboardInterrupt, Interrupted: the final restore still runs
            interrupted = exc
            raise
        finally:
            try:
                if journal.data is not None:
                    # what a scenario's cleanup could not remove is tried once more;
                    # signals wait for this (Cleanup defers them)
                    left = [entry_name(e) for e in journal.data["entries"]]
                    failures.extend(recover(ctx, journal))
                    if not failures:
                        journal.finish()
                        if left:
                            say(f"removed at the end of the run what a cleanup had left: {'; '.join(left)}")
            finally:
                lock.release()
            if failures and interrupted is not None:
                raise CleanupError(failures) from interrupted  # and the machine is not back as found


def run_all(scenarios, progress, roots=Roots(), journal=None, wait=True, say=print, lock=None,
            allow_kernel_damage=False):
    """Run scenarios (already validated) one after another; returns RunResult.
    allow_kernel_damage: hwpoison steps may run outside a ksm-harness VM guest."""
    preflight(roots)
    journal = journal or Journal()
    ctx = RunContext(roots, journal, progress, allow_kernel_damage)
    results, windows = [], []
    # the whole run's log: reports between scenarios and late ones (attribution.py)
    run_log = KmsgWatcher(roots.kmsg)
    with driving(ctx, lock or MachineLock(), wait, say) as failures:
        started, started_at = time.monotonic(), _now()
        try:
            if scenarios:
                ctx.truth = truthcheck.checked(ctx.knobs, roots.proc)
            run_log.start()
            for i, sc in enumerate(scenarios, 1):
                progress.scenario_started(sc.name, i, len(scenarios))
                begin = attribution.now()
                if ctx.unfit:
                    result = ScenarioResult(sc.name, sc.file, sc.line, ERROR, 0.0, reason=f"{NOT_RUN} {ctx.unfit}")
                else:
                    try:
                        result = run_scenario(ctx, sc)
                    except Exception as exc:  # a harness bug past run_scenario's own guard
                        result = errored(sc.name, sc.file, sc.line, f"{type(exc).__name__}: {exc}",
                                         [Check("the harness ran the scenario to its end", False,
                                                traceback.format_exc(), kernel=False)])
                progress.scenario_done(result)
                results.append(result)
                windows.append(attribution.Window(sc.name, begin, attribution.now()))
            settle(run_log.records, quiet=attribution.DRAIN, limit=2 * attribution.DRAIN)
            usec = {r.seq: r.usec for r in run_log.records()}
            results = attribution.attribute(results, windows, run_log.crashes(), usec.get)
        finally:
            run_log.stop()
    if failures:
        final = CleanupError(failures)
        say(f"ksm-harness: {final}")
        results.append(errored("restore-after-run", str(journal.path), 0, str(final),
                               [Check(f"cleanup: {f.what}", False, f.traceback, kernel=False) for f in failures]))
    return RunResult(kernel=platform.release(), started=started_at,
                     duration=round(time.monotonic() - started, 3), scenarios=tuple(results),
                     environment=environment.describe(roots.proc, roots.sys), findings=ctx.truth.findings)


def _now():
    """The wall-clock time now, ISO 8601 UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def restore(roots=Roots(), journal=None, say=print, lock=None):
    """`ksm-harness restore`: undo what a killed run left behind.  Running
    it again finds nothing to do."""
    preflight(roots)
    journal = journal or Journal()
    with (lock or MachineLock()).hold(wait=False):
        stale = journal.stale()
        if not stale:
            say(f"nothing to restore: {journal.path} does not exist (no run was interrupted)")
            return
        recover_stale(RunContext(roots, journal, None), journal, stale, say)
