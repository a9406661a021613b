"""The live state of one scenario run: its workers by group, per-region
tallies (SIGBUS, bad pages, forks, poisoned pages), notes and the frames
recorded at pageout.  Steps change it; metrics.py reads it."""
from dataclasses import dataclass, field


@dataclass
class RunState:
    """The live objects of one scenario run."""

    scenario: object
    groups: dict = field(default_factory=dict)  # group name -> [Worker]
    tallies: dict = field(default_factory=dict)  # (worker name, region, metric) -> int
    generation: int = 0  # bumped by each write step: new content never seen before
    notes: list = field(default_factory=list)
    # (worker name, region) -> {page index: PFN}, read from pagemap before each
    # pageout: the frame a page kept when it left the page tables (a KSM page
    # in swapcache keeps it), for the hwpoison step and lost_in_swapcache
    frames: dict = field(default_factory=dict)
    # (worker name, region) -> {page index}: pages whose frame a hwpoison step
    # left lost in swapcache (hwpoison.lost_in_swapcache), which must never
    # read back without SIGBUS (ScenarioRun.losses_kept)
    lost: dict = field(default_factory=dict)

    def workers_of(self, selector):
        """Workers for a selector (steps.values.Selector), or a group's name or "all"."""
        if isinstance(selector, str):
            return [w for g, ws in self.groups.items() if selector in ("all", g) for w in ws]
        groups = self.groups if selector.group == "all" else [selector.group]
        return [self.groups[g][i] for g in groups for i in selector.indexes(len(self.groups[g]))]

    def select(self, selectors):
        """The live workers selectors name (steps.values.Selector, or "all"), each once."""
        seen, out = set(), []
        for sel in selectors:
            for w in self.workers_of(sel):
                if w.name not in seen and w.exit is None:
                    seen.add(w.name)
                    out.append(w)
        return out

    def forget_lost(self, worker, region=None):
        """The worker's pages of `region` (None: of every region) were dropped or replaced."""
        for key in [k for k in self.lost if k[0] == worker.name and region in (None, k[1])]:
            del self.lost[key]

    def add(self, worker, region, metric, n):
        key = (worker.name, region, metric)
        self.tallies[key] = self.tallies.get(key, 0) + n

    def tally(self, group, region, metric):
        names = {w.name for w in self.workers_of(group)}
        return sum(v for (w, r, m), v in self.tallies.items()
                   if w in names and m == metric and region in ("all", r))
