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
"""
import collections
import operator

from . import hwpoison, numa, pages
from .errors import KernelError
from .scenario import NODE_METRIC_RE

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}


def on_node(view, node):
    """Pages of one process's region whose frame is on `node`."""
    addrs = [view.addr + i * pages.PAGE_SIZE for i, pfn in enumerate(view.pfns) if pfn]
    return numa.pages_on(view.pid, addrs, node)


class Metrics:
    def __init__(self, state, counters, proc):
        self.state = state  # runner.RunState: workers by group, per-region tallies
        self.counters = counters
        self.proc = proc

    def processes(self, group):
        """(pid, worker) of every live worker of the group and its descendants."""
        out = []
        for w in self.state.workers_of(group):
            if w.exit is not None:
                continue
            out.append((w.pid, w))
            out.extend((d.pid, w) for d in w.descendants())
        return out

    def region_views(self, group, region):
        views = []
        for pid, w in self.processes(group):
            for name, info in w.regions.items():
                if region not in ("all", name):
                    continue
                try:
                    views.append(pages.region_pages(pid, info["addr"], info["npages"], self.proc))
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a short-lived child exited while we looked
        return views

    def swapcache(self, group, region):
        """Pages in swap cache (KPF_SWAPCACHE), swapped-out ones included for
        workers, which answer mincore(2) for themselves; a descendant's
        swapped-out pages cannot be asked about and count as not in it."""
        total = 0
        for pid, w in self.processes(group):
            for name, info in w.regions.items():
                if region not in ("all", name):
                    continue
                own = w.call("resident", region=name)["resident"] if pid == w.pid else None
                try:
                    total += pages.swapcache_pages(pid, info["addr"], info["npages"], own, self.proc)
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a short-lived child exited while we looked
        return total

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
        views = self.region_views(group, region)
        if metric == "processes":
            return len(views), None
        denom = sum(v.npages for v in views)
        if metric in ("ksm_pages", "max_sharing"):
            counts = collections.Counter(v.pfns[i] for v in views for i in v.ksm)
            return (len(counts) if metric == "ksm_pages" else max(counts.values(), default=0)), None
        if metric == "swapcache":
            return self.swapcache(group, region), denom
        node = NODE_METRIC_RE.match(metric)
        if node:
            return sum(on_node(v, int(node.group(1))) for v in views), denom
        attr = {"ksm": "ksm_count"}.get(metric, metric)
        return sum(getattr(v, attr) for v in views), denom

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
        """(bool, detail) for a condition now."""
        value, denom = self.value(cond, reference)
        want = cond.value
        if cond.percent:
            want = (denom or 0) * cond.value / 100
        ok = OPS[cond.op](value, want)
        shown = f"{'+' if cond.delta else ''}{cond.name}={value}"
        if cond.percent:
            shown += f" of {denom} pages"
        return ok, f"{shown} (want {cond.op} {cond.value}{'%' if cond.percent else ''})"
