"""Run scenarios against the running kernel.

run_all() takes the global lock, restores what a killed run left behind,
journals the knobs, and runs each scenario: setup -> steps -> expectations,
with a LIFO cleanup stack that always puts knobs, swap, cgroups and processes
back, on pass, failure, exception, SIGINT and SIGTERM.
"""
import os
import platform
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import cgroup, faultinject, numa, pages, requirements, swap, taint, truthcheck
from .cgroup import MemCgroup
from .cleanup import Cleanup
from .errors import CannotRun, DeadlineExceeded, HarnessError, KernelError, Skip, WorkerError
from .journal import Journal
from .kmsg import KmsgWatcher
from .knobs import NEED_UNSHARED, RUN_UNMERGE, Knobs, WriteResult
from .metrics import Metrics
from .results import ERROR, FAIL, PASS, SKIP, Check, RunResult, ScenarioResult, StepMark
from .sampler import Counters, Sampler, deltas
from .swap import SwapManager
from .wait import wait_until
from .workers import WorkerDied, WorkerPool
from .zygote import PAGE_SIZE, verify_buffer
from ._mem import ffi


# actions the harness carries out itself (verify through the worker, migrate
# through move_pages, exit), rather than a command sent ahead to the worker
HARNESS_ACTIONS = ("verify", "migrate", "exit")


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like KeyboardInterrupt, cleaning up on the way."""


@dataclass
class Roots:
    """Where the kernel interfaces live (tests point these at fakes)."""

    ksm: Path = Path("/sys/kernel/mm/ksm")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")


@dataclass
class RunState:
    """The live objects of one scenario run."""

    scenario: object
    groups: dict = field(default_factory=dict)  # group name -> [Worker]
    tallies: dict = field(default_factory=dict)  # (worker name, region, metric) -> int
    generation: int = 0  # bumped by each write step: new content never seen before
    notes: list = field(default_factory=list)

    def workers_of(self, selector):
        """Workers for a selector: all, NAME, NAME[i], NAME[i:j]."""
        if selector == "all":
            return [w for ws in self.groups.values() for w in ws]
        name, _, index = selector.partition("[")
        ws = self.groups[name]
        if not index:
            return list(ws)
        index = index.rstrip("]")
        if ":" in index:
            lo, _, hi = index.partition(":")
            return ws[int(lo or 0): int(hi) if hi else None]
        return [ws[int(index)]]

    def select(self, selectors):
        seen, out = set(), []
        for sel in selectors:
            for w in self.workers_of(sel):
                if w.name not in seen and w.exit is None:
                    seen.add(w.name)
                    out.append(w)
        return out

    def add(self, worker, region, metric, n):
        key = (worker.name, region, metric)
        self.tallies[key] = self.tallies.get(key, 0) + n

    def tally(self, group, region, metric):
        names = {w.name for w in self.workers_of(group)}
        return sum(v for (w, r, m), v in self.tallies.items()
                   if w in names and m == metric and region in ("all", r))


def page_span(spec, npages):
    """(start, count) for a page range: all, 10-19, 7, 50%, 'last 50%'."""
    spec = spec or "all"
    if spec == "all":
        return 0, npages
    if spec.startswith("last "):
        count = npages * int(spec[5:-1]) // 100
        return npages - count, count
    if spec.endswith("%"):
        return 0, npages * int(spec[:-1]) // 100
    if "-" in spec:
        lo, hi = map(int, spec.split("-"))
        return lo, min(hi, npages - 1) - lo + 1
    return int(spec), 1


class ScenarioRun:
    """Executes one scenario; every step and check lands in self.checks."""

    def __init__(self, ctx, scenario):
        self.ctx = ctx
        self.sc = scenario
        self.state = RunState(scenario)
        self.checks = []
        self.steps = []
        self.t0 = time.monotonic()
        self.deadline = self.t0 + scenario.timeout
        self.metrics = Metrics(self.state, ctx.counters, ctx.roots.proc, ctx.truth)
        self.unchecked = []  # "what: why": checks this kernel's truth sources could not decide
        self.swap_dev = None
        self.cgroup = None
        self.injector = None
        self.reference = None

    # -- helpers --
    def left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"scenario timeout of {self.sc.timeout:g}s reached")
        return left

    def check(self, what, passed, detail):
        """Record a check; passed None: this kernel cannot decide it (kept
        apart from the checks: it neither passes nor blames the kernel)."""
        if passed is None:
            self.unchecked.append(f"{what}: {detail}")
            return False
        self.checks.append(Check(what, bool(passed), detail))
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
        if any(n in ("merge_across_nodes", "max_page_sharing") for n, _ in sc.knobs):
            knobs.wait_unshared(10)
        self.write_knobs(sc.knobs, "ok", setup=True)
        if sc.swap:
            self.swap_dev = ctx.swap.create(sc.swap["kind"], sc.swap["npages"] * PAGE_SIZE,
                                            journal=self.journaled("swap", swap.to_journal, defer))
            defer(ctx.swap.remove, self.swap_dev)
        pool = WorkerPool()
        defer(pool.close)
        if sc.cgroup:
            self.cgroup = MemCgroup.create(f"run-{os.getpid()}", proc=str(ctx.roots.proc),
                                           journal=self.journaled("cgroups", cgroup.to_journal, defer))
            defer(self.cgroup.remove)
        for g in sc.workers:
            ws = []
            for i in range(g.count):
                w = pool.spawn(f"{g.name}[{i}]")
                w.index = i  # the unique pattern pairs worker i of groups sharing a seed
                if self.cgroup:
                    self.cgroup.add(w.pid)
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
                for r in g.regions:
                    w.regions[r.name] = w.call(
                        "map", timeout=self.left(), region=r.name, npages=r.npages, thp=r.thp, node=r.node,
                        mergeable=r.mergeable, worker=w.index,
                        pattern={"kind": r.pattern.kind, "seed": r.pattern.seed, "groups": r.pattern.groups})

    def journaled(self, kind, to_journal, defer):
        """A callback for swap/cgroup/faultinject: each call (made before the
        module changes kernel state) replaces the journal entry with the newer
        description; the entry is dropped when the resource is undone."""
        entry = []

        def record(obj):
            if entry:
                self.ctx.journal.remove(kind, entry.pop())
            else:
                defer(lambda: entry and self.ctx.journal.remove(kind, entry.pop()))
            entry.append(to_journal(obj))
            self.ctx.journal.add(kind, entry[0])

        return record

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
            # after an unmerge, and after a knob the kernel lets change only
            # with nothing shared (NEED_UNSHARED)
            unshared = (name, value) == ("run", RUN_UNMERGE) or name in NEED_UNSHARED
            if unshared and not setup and w.result is WriteResult.OK:
                self.invariant(f"after {name}={value} (line {self.current_line})")
        return results

    # -- invariants and checks --
    def invariant(self, when):
        """Nothing shared => nothing mapped KSM: with pages_shared == 0 no
        worker or descendant may map a KSM page (KPF_KSM)."""
        shared = self.ctx.knobs.read_int("pages_shared")
        if shared != 0:
            return
        mapped, unsure = [], 0
        for group in self.state.groups:
            for view, maybe in self.metrics.judged_views(group, "all"):
                unsure += maybe
                if view.ksm:
                    mapped.append(f"pid {view.pid}: {view.ksm_count} KSM pages (first at page {view.ksm[0]})")
        passed = False if mapped else None if unsure else True  # None: cannot check here
        self.check(f"pages_shared == 0 => no KSM page mapped ({when})", passed,
                   "; ".join(mapped[:5]) or (self.metrics.judge.reason(unsure) if unsure
                                             else "no process maps a KSM page"))

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
                problems.extend(self.verify_problems(w.name, region, res, mode))
            for d in w.descendants():
                for region, info in w.regions.items():
                    res = self.verify_remote(d.pid, info)
                    if res is not None:
                        checked += 1
                        problems.extend(self.verify_problems(f"{w.name} child {d.pid}", region, res, mode))
        self.check(f"data {mode} ({when})", not problems,
                   "; ".join(problems[:5]) or f"{checked} process regions verified")

    @staticmethod
    def verify_problems(who, region, res, mode):
        out = []
        if res["bad"]:
            first = ", ".join(f"page {f['page']} word0={f['found']:#x}" for f in res["first"] if not f["sigbus"])
            out.append(f"{who}.{region}: {res['bad']} of {res['pages']} pages hold wrong data ({first})")
        if res["sigbus"] and mode == "intact":
            out.append(f"{who}.{region}: {res['sigbus']} pages raised SIGBUS")
        return out

    def verify_remote(self, pid, info):
        """Verify a descendant's copy through /proc/PID/mem: its keys and region
        sit at the same addresses as in the worker it was forked from."""
        try:
            keys = pages.read_memory(pid, info["keys_addr"], 8 * info["npages"], self.ctx.roots.proc)
            data = pages.read_memory(pid, info["addr"], PAGE_SIZE * info["npages"], self.ctx.roots.proc)
        except (FileNotFoundError, ProcessLookupError):
            return None  # exited meanwhile
        except OSError as exc:
            return {"pages": info["npages"], "bad": 0, "sigbus": 1,
                    "first": [{"page": -1, "found": 0, "sigbus": True, "error": str(exc)}]}
        return verify_buffer(ffi.from_buffer("char[]", data), ffi.from_buffer("uint64_t[]", keys),
                             info["npages"])

    # -- steps --
    def run_steps(self, steps):
        for step in steps:
            self.left()
            self.current_line = step.line
            start = time.monotonic()
            self.ctx.progress.step(step.title)
            try:
                if step.kind == "repeat":
                    for _ in range(step.args["times"]):
                        if not self.run_steps(step.children):
                            return False
                elif step.kind == "concurrent":
                    for _ in range(step.args["repeat"]):
                        self.concurrent(step)
                elif not self.simple(step):
                    return False
            finally:
                self.mark(step.title, start)
        return True

    def simple(self, step):
        """One step; False when the scenario cannot go on."""
        kind, a = step.kind, step.args
        if kind == "knob":
            self.write_knobs(a["writes"], a["expect"])
        elif kind == "wait":
            return self.wait(step)
        elif kind == "check":
            ok, detail = self.metrics.holds(a["until"], self.reference)
            self.check(f"{a['until'].text} (line {step.line})", ok, detail)
        elif kind == "fault_injection":
            self.fault_injection(a)
        elif kind == "cgroup":
            self.cgroup_limit(a["limit_pages"], a["expect"])
        elif kind == "do":
            workers = self.state.select(a["workers"])
            for w in workers:
                self.send_action(w, a)
            for w in workers:
                self.receive_action(w, a, None)
        return True

    def wait(self, step):
        cond = step.args["until"]
        reference = self.ctx.counters.read() if cond.delta else None
        timeout = min(step.args["timeout"], self.left())
        last = {}

        def holds():
            last["ok"], last["detail"] = self.metrics.holds(cond, reference)
            return last["ok"]

        try:
            wait_until(holds, timeout, cond.text)
            return True
        except DeadlineExceeded:
            # still undecidable (None) at the deadline: cannot check, not failed
            self.check(f"wait {cond.text} within {timeout:g}s (line {step.line})",
                       None if last["ok"] is None else False, last["detail"])
            return False

    def fault_injection(self, a):
        if a["on"]:
            for w in self.state.select(["all"]):
                w.call("fault_in_own", timeout=self.left())
            self.injector = self.ctx.faults.arm(
                self.ctx.swap.block_device_name(self.swap_dev), times=a["times"],
                journal=self.journaled("faultinject", faultinject.to_journal, self.ctx.cleanup))
            self.ctx.cleanup(self.injector.disarm)
        elif self.injector is not None:
            self.injector.disarm()

    def concurrent(self, step):
        """Worker actions start first (each may wait for a knob value, to enter
        the race window the moment it opens), then the harness's own steps run,
        then workers told to go on until_done are stopped, then all report."""
        actions = [c for c in step.children if c.kind == "do"]
        others = [c for c in step.children if c.kind != "do"]
        sent = []
        for c in actions:
            for w in self.state.select(c.args["workers"]):
                self.send_action(w, c.args)
                sent.append((w, c))
        windows = []
        for c in others:
            self.current_line = c.line
            start = time.monotonic()
            if c.kind == "knob":
                for w in self.write_knobs(c.args["writes"], c.args["expect"]):
                    windows.append((w.started, w.started + w.seconds, f"{w.name}={w.value}"))
            else:
                self.simple(c)
            self.mark(c.title, start)
        for w, c in sent:
            if c.args.get("until_done"):
                w.send("stop")
        for w, c in sent:
            self.receive_action(w, c.args, windows)
            if c.args.get("until_done"):
                w.receive("stop", self.left())

    def send_action(self, w, a):
        act = a["do"]
        region = a.get("region")
        wait = {}
        if a.get("wait_for"):
            wf = a["wait_for"]
            wait = {"wait_file": str(self.ctx.knobs.root / wf["knob"]), "wait_value": wf["value"],
                    "wait_timeout": wf["timeout"]}
        span = {}
        if region and region != "all":
            start, count = page_span(a.get("pages"), w.regions[region]["npages"])
            span = {"start": start, "count": count}
        if act == "write":
            self.state.generation += 1
            p = a.get("pattern")
            pattern = {"kind": p.kind, "seed": p.seed, "groups": p.groups} if p else {"kind": "unique"}
            w.send("write", region=region, pattern=pattern, worker=w.index,
                   generation=self.state.generation, **span)
        elif act in ("advise", "pageout"):
            w.send("advise", region=region, advice=a.get("advice", "pageout"), **span)
        elif act == "touch":
            w.send("touch", region=region, write=a.get("write", False), threads=a.get("threads", 1),
                   pace_us=a.get("pace_us", 0), **span, **wait)
        elif act in HARNESS_ACTIONS:
            return  # done in receive_action, once the worker's other actions are in
        elif act == "fork":
            live_cap = 0 if not a.get("live", True) else a.get("live_cap", 256)
            w.send("fork", count=a.get("count", 1 << 40), duration=a.get("duration", 3600),
                   depth=a.get("depth", 1), live_cap=live_cap, lifetime_us=a.get("lifetime_us", 0),
                   interval_us=a.get("interval_us", 0),
                   until_told=bool(a.get("until_done")), **wait)
        elif act == "prctl_merge":
            w.send("prctl_merge", value=int(a["value"]))
        else:  # validated in scenario.py; reaching here is a harness bug
            raise HarnessError(f"unknown action {act}")

    def receive_action(self, w, a, windows):
        act = a["do"]
        try:
            reply = None if act in HARNESS_ACTIONS else w.receive("advise" if act == "pageout" else act, self.left())
        except WorkerDied as exc:
            self.check(f"worker {w.name} survives {act}", False, str(exc))
            return
        region = a.get("region")
        if act == "touch":
            self.state.add(w, region, "sigbus", reply["sigbus"])
            self.note_window(w, "page faults", reply["times_ns"], windows)
        elif act == "fork":
            self.state.add(w, "all", "forks", reply["forks"])
            if windows:
                self.note_window(w, "forks", reply["times_ns"], windows)
            else:
                self.state.notes.append(f"{w.name}: {reply['forks']} forks, {reply['live']} children alive at the end")
            if reply["failed"]:
                self.state.notes.append(f"{w.name}: {reply['failed']} forks failed ({reply['error']})")
        elif act == "verify":
            for name in ([region] if region and region != "all" else list(w.regions)):
                res = w.call("verify", timeout=self.left(), region=name)
                self.state.add(w, name, "sigbus", res["sigbus"])
                self.state.add(w, name, "bad", res["bad"])
                problems = self.verify_problems(w.name, name, res, "intact")
                self.check(f"data intact in {w.name}.{name} (line {self.current_line})", not problems,
                           "; ".join(problems) or f"{res['pages']} pages verified")
        elif act == "migrate":
            info = w.regions[region]
            addrs = [info["addr"] + i * PAGE_SIZE for i in range(info["npages"])]
            moved, calls = numa.migrate(w.pid, addrs, a["node"])
            self.state.notes.append(f"{w.name}.{region}: {moved}/{len(addrs)} pages now on node {a['node']}"
                                    f" ({calls} move_pages calls)")
        elif act == "exit":
            w.send("exit")
            w.exit = w.pool.wait_exit(w.pid)

    def note_window(self, w, what, times_ns, windows):
        """How often a race window was hit: events inside a knob write's span."""
        if windows is None or not times_ns:
            return
        for start, end, label in windows:
            hits = sum(1 for t in times_ns if t and start <= t / 1e9 <= end)
            self.state.notes.append(f"{w.name}: {hits} of {len(times_ns)} {what} happened while "
                                    f"{label} was being written ({end - start:.3f}s)")

    # -- expectations --
    def expectations(self):
        for e in self.sc.expect:
            if e.kind == "that":
                ok, detail = self.metrics.holds(e.args["cond"], self.reference)
                self.check(e.text, ok, detail)
            elif e.kind == "data":
                self.verify_data("at the end", e.args["mode"])


class RunContext:
    """What all scenarios of a run share."""

    def __init__(self, roots, journal, progress):
        self.roots = roots
        self.journal = journal
        self.progress = progress
        self.knobs = Knobs(roots.ksm)
        self.counters = Counters(self.knobs, roots.proc)
        self.swap = SwapManager(proc=str(roots.proc), sys=str(roots.sys))
        self.faults = faultinject.FailMakeRequest(sys=str(roots.sys), proc=str(roots.proc))
        self.original = None
        self.cleanup = None
        self.truth = truthcheck.TRUSTED  # what run_all's self-check found the truth sources to be


def run_scenario(ctx, sc):
    """One scenario -> ScenarioResult.  Never raises for kernel behaviour:
    failures are checks, harness problems are ERROR results."""
    started = time.monotonic()
    try:
        requirements.check(sc, ctx)
    except Skip as skip:
        return ScenarioResult(sc.name, sc.file, sc.line, SKIP, 0.0, reason=skip.reason)
    run = ScenarioRun(ctx, sc)
    # user_records: a report written into /dev/kmsg by a test counts too (the
    # detector only matches kernel report formats, not arbitrary lines)
    watcher = KmsgWatcher(ctx.roots.kmsg, user_records=True)
    watcher.start()
    taint_path = ctx.roots.proc / "sys/kernel/tainted"
    taint_before = taint.read_tainted(taint_path)
    sampler = Sampler(ctx.counters, interval=0.1, t0=run.t0)
    status, reason = PASS, ""
    with Cleanup() as defer:
        ctx.cleanup = defer
        try:
            defer(watcher.stop)
            run.setup(defer)
            run.reference = ctx.counters.read()
            sampler.start()
            defer(sampler.stop)
            run.run_steps(sc.steps)
            run.current_line = sc.line
            run.invariant("at the end")
            run.expectations()
        except (HarnessError, OSError) as exc:
            status, reason = ERROR, str(exc)
            if isinstance(exc, (DeadlineExceeded, WorkerError)):
                status = FAIL
        finally:
            sampler_done = run.reference is not None
            end_values = ctx.counters.read()
    crashes = tuple(watcher.crashes())
    new_taint = taint.new_flags(taint_before, taint.read_tainted(taint_path))
    expected_crash = [e for e in sc.expect if e.kind == "crash"]
    for e in expected_crash:
        hits = [c.title for c in crashes if re.search(e.args["title"], c.title)]
        run.check(e.text, bool(hits), "; ".join(hits) or "no matching kernel report")
    unexpected = [c for c in crashes if not any(re.search(e.args["title"], c.title) for e in expected_crash)]
    run.check("no kernel crash report", not unexpected,
              "; ".join(f"{c.title} (log line {c.line})" for c in unexpected) or "log clean")
    if not expected_crash:
        run.check("no new taint", not new_taint, ", ".join(new_taint) or "taint unchanged")
    failed = [c for c in run.checks if not c.passed]
    if status == PASS and failed:
        status, reason = FAIL, f"{failed[0].what}: {failed[0].detail}"
    elif status == PASS and run.unchecked:
        status, reason = ERROR, run.unchecked[0]
    elif status != PASS and failed and not reason:
        reason = failed[0].detail
    return ScenarioResult(
        name=sc.name, file=sc.file, line=sc.line, status=status,
        duration=round(time.monotonic() - started, 3), reason=reason, checks=tuple(run.checks),
        crashes=crashes, taint=tuple(new_taint), samples=tuple(sampler.samples), steps=tuple(run.steps),
        deltas=deltas(run.reference, end_values) if sampler_done else {},
        notes=tuple(run.state.notes) + tuple(f"not checked: {u}" for u in run.unchecked),
        log_context=tuple(r.text for r in watcher.context[-20:]),
    )


def recover(ctx, stale, say):
    """Put back what a killed run left (its journal), newest first: fault
    injection, cgroups, swap devices, then the knobs.  Every item is tried;
    the first failure is raised after all were."""
    undo = [(ctx.faults.remove_stale, faultinject.from_journal, e) for e in stale.get("faultinject", [])]
    undo += [(cgroup.remove_stale, cgroup.from_journal, e) for e in stale.get("cgroups", [])]
    undo += [(ctx.swap.remove_stale, swap.from_journal, e) for e in reversed(stale.get("swap", []))]
    with Cleanup() as defer:
        if stale.get("knobs"):
            defer(ctx.knobs.restore, stale["knobs"])
        for remove, parse, entry in reversed(undo):
            defer(lambda remove=remove, parse=parse, entry=entry: remove(parse(entry)))
    say(f"restored KSM knobs and removed {len(stale.get('swap', []))} swap device(s) and "
        f"{len(stale.get('cgroups', []))} cgroup(s) left by run pid {stale.get('pid', '?')}")


def preflight(roots):
    if os.geteuid() != 0:
        raise CannotRun("ksm-harness drives /sys/kernel/mm/ksm and reads /proc/kpageflags: run it as root")
    if not Knobs(roots.ksm).exists():
        raise CannotRun(f"{roots.ksm} does not exist: this kernel has no KSM (CONFIG_KSM=n)")


def run_all(scenarios, progress, roots=Roots(), journal=None, wait=True, say=print):
    """Run scenarios (already validated) one after another; returns RunResult."""
    preflight(roots)
    journal = journal or Journal()
    ctx = RunContext(roots, journal, progress)
    journal.lock(wait=wait, on_wait=lambda pid: say(f"waiting for ksm-harness run pid {pid} to finish..."))
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def on_term(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in previous:
        signal.signal(s, on_term)
    started = time.monotonic()
    results = []
    try:
        stale = journal.stale()
        if stale:
            recover(ctx, stale, say)
        ctx.original = ctx.knobs.snapshot()
        journal.begin(ctx.original)
        if scenarios:
            ctx.truth = truthcheck.checked(ctx.knobs, roots.proc)
        for i, sc in enumerate(scenarios, 1):
            progress.scenario_started(sc.name, i, len(scenarios))
            result = run_scenario(ctx, sc)
            progress.scenario_done(result)
            results.append(result)
    finally:
        # a second SIGINT/SIGTERM must not cut the restore short
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        try:
            if ctx.original is not None:
                ctx.knobs.restore(ctx.original)
                journal.finish()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s, h in previous.items():
                signal.signal(s, h)
            journal.unlock()
    return RunResult(kernel=platform.release(), started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     duration=round(time.monotonic() - started, 3), scenarios=tuple(results),
                     findings=ctx.truth.findings)


def restore(roots=Roots(), journal=None, say=print):
    """`ksm-harness restore`: undo what a killed run left behind."""
    preflight(roots)
    journal = journal or Journal()
    journal.lock(wait=False)
    try:
        ctx = RunContext(roots, journal, None)
        stale = journal.stale()
        if not stale:
            say("nothing to restore: no run was interrupted")
            return
        recover(ctx, stale, say)
        journal.finish()
    finally:
        journal.unlock()
