"""Evaluating scenario conditions: counters and per-process truth.

A counter name reads /sys/kernel/mm/ksm (counters, and settings such as
pages_to_scan that ksmd may change itself) or /proc/vmstat (a leading + means
its change since a reference sample).  A dotted name reads what processes map:
GROUP.REGION.metric sums over the group's workers and every live descendant
(children forked from a worker map its regions at the same addresses), so
"a.r.ksm == 0" covers children forked during an unmerge too.

Three region metrics look across the group's processes at once, from the PFNs
in pagemap: ksm_pages (how many distinct KSM page frames back the region),
max_sharing (the most mappings of one KSM page frame, which max_page_sharing
caps) and nodeN (pages whose frame is on NUMA node N, by move_pages()).

Which pages are KSM pages is truthcheck.KsmJudge's to say: KPF_KSM where the
run's self-check found it true, shared frames where it lies.  A count it
cannot pin down is a Between, and a condition whose answer depends on where
in that range the truth is holds as None: "cannot check on this kernel".
"""
import collections
import operator

from . import hwpoison, numa, pages, truthcheck
from .errors import KernelError
from .scenario import NODE_METRIC_RE

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}


class Between(int):
    """A count known only to lie between itself and .high: pages that may be
    KSM pages cannot be told from copies on this kernel (truthcheck.KsmJudge)."""

    def __new__(cls, low, high):
        count = super().__new__(cls, low)
        count.high = high  # the most the count can be
        return count


def decide(op, value, want):
    """True/False if `value OP want` has one answer for every count the value
    may be (see Between), None if the answer depends on which it is."""
    lo, hi = int(value), getattr(value, "high", value)
    if lo == hi:
        return OPS[op](lo, want)
    if op in ("==", "!="):
        return None if lo <= want <= hi else op == "!="
    low, high = OPS[op](lo, want), OPS[op](hi, want)
    return low if low == high else None


def on_node(view, node):
    """Pages of one process's region whose frame is on `node`."""
    addrs = [view.addr + i * pages.PAGE_SIZE for i, pfn in enumerate(view.pfns) if pfn]
    return numa.pages_on(view.pid, addrs, node)


class Metrics:
    def __init__(self, state, counters, proc, truth=truthcheck.TRUSTED):
        self.state = state  # runstate.RunState: workers by group, per-region tallies
        self.counters = counters
        self.proc = proc
        self.judge = truthcheck.KsmJudge(truth, proc)  # which mapped pages are KSM pages on this kernel

    def processes(self, group):
        """(pid, worker) of every live worker of the group and its descendants."""
        out = []
        for w in self.state.workers_of(group):
            if w.exit is not None:
                continue
            out.append((w.pid, w))
            out.extend((d.pid, w) for d in w.descendants())
        return out

    def each_region(self, group, region, look):
        """[(pid, worker, region name, look(pid, worker, name, info))] over
        the group's processes and their regions named `region` ("all": every one)."""
        out = []
        for pid, w in self.processes(group):
            for name, info in w.regions.items():
                if region not in ("all", name):
                    continue
                try:
                    out.append((pid, w, name, look(pid, w, name, info)))
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a short-lived child exited while we looked
        return out

    def _placed(self, group, region):
        """(worker name, region name, view) of what each process maps."""
        return [(w.name, name, view) for _, w, name, view in self.each_region(
            group, region, lambda pid, w, name, info: pages.region_pages(pid, info["addr"], info["npages"],
                                                                         self.proc))]

    def judged_views(self, group, region):
        """[(view, unsure)]: each process's view of the region, its .ksm the
        pages this kernel's truth shows as KSM pages, and how many more may
        be (truthcheck.KsmJudge; always 0 where KPF_KSM is trusted).  Where
        it is not, the judge looks at every process of the scenario at once."""
        if self.judge.truth.kpf_ksm:
            return [(v, 0) for _, _, v in self._placed(group, region)]
        placed = self._placed("all", "all")
        mine = {w.name for w in self.state.workers_of(group)}
        judged = self.judge.judge([(worker, v) for worker, _, v in placed])
        return [j for (worker, name, _), j in zip(placed, judged) if worker in mine and region in ("all", name)]

    def region_views(self, group, region):
        return [v for v, _ in self.judged_views(group, region)]

    def swapcache(self, group, region):
        """Pages in swap cache (KPF_SWAPCACHE), swapped-out ones included for
        workers, which answer mincore(2) for themselves; a descendant's
        swapped-out pages cannot be asked about and count as not in it."""
        def look(pid, w, name, info):
            own = w.call("resident", region=name)["resident"] if pid == w.pid else None
            return pages.swapcache_pages(pid, info["addr"], info["npages"], own, self.proc)
        return sum(n for *_, n in self.each_region(group, region, look))

    def vmas(self, group, region):
        """VMAs the region spans in each process, summed."""
        return sum(n for *_, n in self.each_region(
            group, region, lambda pid, w, name, info: pages.vmas_over(pid, info["addr"], info["npages"], self.proc)))

    def value(self, cond, reference=None):
        """(value, denominator or None) of the condition's left-hand side."""
        if "." not in cond.name:
            now = self.counters.read()
            knobs = self.counters.knobs
            if cond.name not in now and knobs.has(cond.name):
                setting = knobs.read(cond.name)  # a setting ksmd changes itself (advisor)
                if setting.isdigit():
                    now[cond.name] = int(setting)
            if cond.name not in now:
                raise KernelError(f"counter {cond.name!r} does not exist on this kernel: list it under "
                                  f"requires.knobs or requires.vmstat so that the scenario skips here")
            if cond.delta:
                return now[cond.name] - (reference or {}).get(cond.name, 0), None
            return now[cond.name], None
        parts = cond.name.split(".")
        group = parts[0]
        if len(parts) == 2:
            if parts[1] == "processes":
                return len(self.processes(group)), None
            if parts[1] == "sigbus":
                return self.state.tally(group, "all", "sigbus"), None
            key = {"merging_pages": "ksm_merging_pages", "rmap_items": "ksm_rmap_items"}[parts[1]]
            total = 0
            for pid, _ in self.processes(group):
                stat = pages.ksm_stat(pid, self.proc)
                if stat is None:
                    raise KernelError(f"{cond.name} needs /proc/PID/ksm_stat or ksm_merging_pages "
                                      f"(Linux 5.19+): add requires.ksm_stat: true")
                total += stat.get(key, 0)
            return total, None
        region, metric = parts[1], parts[2]
        if metric in ("sigbus", "bad", "poisoned"):
            return self.state.tally(group, region, metric), None
        if metric == "lost_in_swapcache":
            return self.lost_in_swapcache(group, region)
        if metric == "uffd_minor":
            return self.uffd_minor(group, region)
        if metric == "vmas":
            return self.vmas(group, region), None
        judged = self.judged_views(group, region)
        views = [v for v, _ in judged]
        unsure = sum(u for _, u in judged)
        if metric == "processes":
            return len(views), None
        denom = sum(v.npages for v in views)
        if metric in ("ksm_pages", "max_sharing"):
            counts = collections.Counter(v.pfns[i] for v in views for i in v.ksm)
            if metric == "ksm_pages":  # each unsure page may be a frame of its own
                return Between(len(counts), len(counts) + unsure), None
            most = max(counts.values(), default=0)
            return Between(most, max(most, 1 if unsure else 0)), None
        if metric == "swapcache":
            return self.swapcache(group, region), denom
        node = NODE_METRIC_RE.match(metric)
        if node:
            return sum(on_node(v, int(node.group(1))) for v in views), denom
        if metric == "ksm":
            ksm = sum(v.ksm_count for v in views)
            return Between(ksm, ksm + unsure), denom
        return sum(getattr(v, metric) for v in views), denom

    def uffd_minor(self, group, region):
        """(pages in VMAs registered for userfaultfd minor faults, the region pages)."""
        views = [v for _, _, v in self._placed(group, region)]
        return sum(pages.flagged_pages(v.pid, v.addr, v.npages, "ui", self.proc) for v in views), \
            sum(v.npages for v in views)

    def lost_in_swapcache(self, group, region):
        """(frames recorded at pageout that are poisoned, unmapped, in swapcache
        and not up to date now, the group's region pages)."""
        frames, denom = [], 0
        for w in self.state.workers_of(group):
            for name, info in w.regions.items():
                if region in ("all", name):
                    denom += info["npages"]
                    frames.extend(self.state.frames.get((w.name, name), {}).values())
        return sum(map(hwpoison.lost_in_swapcache, pages.kpageflags(frames, self.proc))), denom

    def holds(self, cond, reference=None):
        """(True, False or None, detail) for a condition now; None: this
        kernel's truth sources cannot decide it, and the detail says why."""
        value, denom = self.value(cond, reference)
        want = cond.value
        if cond.percent:
            want = (denom or 0) * cond.value / 100
        ok = decide(cond.op, value, want)
        high = getattr(value, "high", value)
        shown = f"{'+' if cond.delta else ''}{cond.name}={int(value)}" + (f" to {high}" if high != value else "")
        if cond.percent:
            shown += f" of {denom} pages"
        detail = f"{shown} (want {cond.op} {cond.value}{'%' if cond.percent else ''})"
        if ok is None:
            detail += f": {self.judge.reason(high - value)}"
        return ok, detail
