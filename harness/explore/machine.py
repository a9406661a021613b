"""The Hypothesis state machine that writes one scenario document per
example: its rules add worker groups and regions (Bundles) and append steps
made from the registry's action classes; teardown hands the document to the
session, which runs it on the kernel.  A FAIL is an assertion error, so
Hypothesis shrinks the document over whole runs.

The rules are biased toward the shapes of the KSM bugs we know: merge (run=1
and a wait for ksmd), push merged pages to swapcache (pageout of pages only
this worker maps), unmerge (run=2) with a worker action started on that
value, switch merge_across_nodes after an unmerge, fault pages back, fork
during the unmerge.  Each has a rule of its own, beside a generic rule for any
action and any knob of the vocabulary, and parts 2 and 3 of the seed fix have
a rule each that draws their whole shape in order."""
import copy
import functools
from dataclasses import dataclass, field
from typing import Dict, List

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, multiple, precondition, rule

from .. import steps
from ..knobs import NEED_UNSHARED  # -EBUSY while anything is shared: explore writes them after an unmerge
from . import strategies

MAX_GROUPS = 4
MAX_REGIONS = 2  # per group
MAX_COUNT = 3  # workers per group
SWAP_SIZE = "128M"  # the swap file: more than all the regions explore maps page out
MERGE_WAIT = {"wait": {"until": "+full_scans >= 2", "timeout": 60}}  # ksmd went over everything twice
RACE_ACTIONS = ("touch", "fork")  # actions that can start on a knob value (their Spec has wait_for)
# the run values a race writes: the runner checks the nothing-shared invariant
# after any race that writes run (steps/control.py Concurrent.race), which
# holds only where ksmd is quiet; after run=1 it merges on, and a page it
# merges between the pages_shared read and the page walk is a false alarm
RACE_RUN = ("2", "0")
SCENARIO_TIMEOUT = 300  # seconds: a document's timeout at the least ...
# ... and per step: each knob write that unmerges or stops ksmd is followed by
# the invariant and the page truth over every process (runner.write_knobs), and
# in a 6.12 TCG guest one such step took 10 to 22 s: a 33-step document ran
# 238 s alone and timed out at 300 s as example 34 of an exploration
STEP_SECONDS = 20
# a ballast group: pages of few contents that merge, making run=2 long (add_ballast)
BALLAST_PAGES = 4096  # per worker (16 MiB), as the seed scenarios' ballast
BALLAST_COUNT = (2, 4)  # workers
BALLAST_PATTERN = {"kind": "groups", "seed": 9, "groups": 256}


def whole(rule_function):
    """A rule's steps count only once it has drawn them all: Hypothesis may
    abort an example in the middle of a rule (its data ran out), and
    teardown, which runs then too, must not run a half-written document."""
    @functools.wraps(rule_function)
    def wrapper(self, *args, **kwargs):
        self.draft.partial = True
        out = rule_function(self, *args, **kwargs)
        self.draft.partial = False
        return out
    return wrapper


class Finding(AssertionError):
    """The kernel failed a check on the example (a FAIL): what Hypothesis shrinks."""


@dataclass
class Draft:
    """One scenario document being written, and what its steps left
    (explore's model of the kernel state: which knob writes the kernel accepts)."""

    name: str  # the scenario's name
    groups: Dict[str, dict] = field(default_factory=dict)  # group name -> its `workers:` mapping
    steps: List[dict] = field(default_factory=list)  # the `steps:` mappings
    run: str = "2"  # the run value now: setup unmerges (runner.ScenarioRun.setup)
    maybe_shared: bool = False  # ksmd may have merged since the last unmerge
    exited: set = field(default_factory=set)  # workers ("g1[1]") an exit step ended
    swap: bool = False  # setup.swap is there
    written: set = field(default_factory=set)  # knobs the steps write
    partial: bool = False  # a rule is half done (the example was aborted in it)
    # a worker set PR_SET_MEMORY_MERGE: its pages shared copy-on-write with
    # its parent (the zygote) can become KSM pages in place, which run=2 does
    # not unmerge (the zygote is not on ksmd's list: pages.mergeable_mappings()),
    # so merge_across_nodes and max_page_sharing may be EBUSY for good
    merge_any: bool = False
    # (group, region) that an advise step (or PR_SET_MEMORY_MERGE=0) may have made unmergeable
    unmergeable: set = field(default_factory=set)
    merge_any_groups: set = field(default_factory=set)  # groups whose workers set PR_SET_MEMORY_MERGE=1 last
    ballast: str = ""  # the group add_ballast added, if any
    # (victim, partner): two groups add_ballast put before a last ballast,
    # whose region r1 holds the same pages worker by worker
    pair: tuple = ()
    # (group, region) where lose_in_swapcache lost pages in swapcache to
    # memory failure: a read of them raises SIGBUS from then on
    lost: set = field(default_factory=set)
    swapped_off: bool = False  # a swapoff step ran: no pageout after it (steps.machine.Swapoff.check_order)

    @property
    def ballast_last(self):
        """The ballast is mapped after every other group (last in ksmd's list), not first."""
        return bool(self.pair)

    def add(self, step):
        self.steps.append(step)
        if step.get("do") == "prctl_merge":
            named = self.named(step["workers"])
            if step.get("value") == 1:
                self.merge_any = True
                self.merge_any_groups |= named
            else:
                # mm/ksm.c ksm_disable_merge_any() -> ksm_del_vmas() clears VM_MERGEABLE on every VMA
                self.merge_any_groups -= named
                self.unmergeable |= {(g, r["name"]) for g in named for r in self.groups[g]["regions"]}
        if step.get("do") == "advise" and step["advice"] in ("mergeable", "unmergeable"):
            named = {(g, step["region"]) for g in self.named(step["workers"])}
            self.unmergeable = self.unmergeable | named if step["advice"] == "unmergeable" \
                else self.unmergeable - named

    def named(self, workers):
        """The groups a selector names ("all", "g1" or "g1[0]")."""
        return {g for g in self.groups if workers in ("all", g) or workers.startswith(f"{g}[")}

    def mergeable(self):
        """Some worker surely still has a VM_MERGEABLE mapping.  ksmd drops an
        mm that has none from its list once it has walked it (mm/ksm.c
        scan_get_next_rmap_item(): "found no VM_MERGEABLE"), and with the list
        empty ksmd_should_run() is false: full_scans stops, and a wait for two
        more would time out, a false alarm (explore's 30-minute runs on 6.18
        raised it after MADV_UNMERGEABLE of the only region, and after
        PR_SET_MEMORY_MERGE=0).  Where unsure, it says no: a wait left out
        costs nothing."""
        return bool(self.merge_any_groups) or any((g, r["name"]) not in self.unmergeable
                                                  for g, group in self.groups.items() for r in group["regions"])

    def can_page_out(self):
        return self.swap and not self.swapped_off

    def allows(self, action, region):
        """`do: action` on `region` is safe to draw now: no write where
        pages were lost (the worker's plain stores would die of the SIGBUS:
        only touch catches it), no pageout once swap is off."""
        if action == "pageout":
            return self.can_page_out()
        return action != "write" or region not in {r for _, r in self.lost}

    def unshared(self):
        """The knobs of NEED_UNSHARED can be written now."""
        return not (self.maybe_shared or self.merge_any)

    def wrote(self, knob, value):
        self.written.add(knob)
        if knob == "run":
            self.run = value
            self.maybe_shared = value == "1" or (self.maybe_shared and value == "0")
            # run=2 unmerges everything: nothing is shared once the write returns

    def document(self, description=""):
        """The scenario mapping: loads with harness.scenario.load_file."""
        doc = {"name": self.name}
        if description:
            doc["description"] = description
        requires = {"knobs": sorted(self.written | {"pages_shared"})}
        nodes = [r["node"] for g in self.groups.values() for r in g["regions"] if "node" in r]
        nodes += [s["node"] for s in self.steps if s.get("do") == "migrate"]
        if nodes and max(nodes) > 0:
            requires["numa_nodes"] = max(nodes) + 1
        if self.swap:
            requires["swap"] = "file"
        if self.lost:
            requires.update(fault_injection=True, memory_failure=True)
        doc["requires"] = requires
        doc["setup"] = {"knobs": {"pages_to_scan": 5000, "sleep_millisecs": 10}}
        if self.swap:
            doc["setup"]["swap"] = {"kind": "file", "size": SWAP_SIZE}
        # file order is mapping order, ksmd's list order (runner.ScenarioRun.setup)
        doc["workers"] = sorted(self.groups.values(), key=lambda g: self.ballast_last and g["name"] == self.ballast)
        doc["steps"] = list(self.steps)
        if self.merge_any and self.run == "2":
            # the runner's last check writes run=2 once the workers are gone,
            # and mm/ksm.c run_store() unmerges (and drops the stable nodes
            # the zygote's pages kept) only when run changes: from 0 it does
            doc["steps"].append({"knob": {"run": 0}})
        if self.lost:
            doc["expect"] = [{"data": "sigbus-or-intact"}]  # lost pages raise SIGBUS when read
        doc["timeout"] = max(SCENARIO_TIMEOUT, STEP_SECONDS * len(doc["steps"]))
        return doc

    def step_count(self):
        return len(self.steps)


class ExploreMachine(RuleBasedStateMachine):
    """Rules write a Draft; teardown runs it (session.Session.run)."""

    groups = Bundle("groups")
    regions = Bundle("regions")

    def __init__(self, vocab, session):
        super().__init__()
        self.vocab = vocab  # vocabulary.Vocabulary
        self.session = session  # session.Session: runs the document, or a fake in tests
        self.draft = Draft(session.next_name())
        self.draft.swap = vocab.swap

    # -- worker groups and regions --
    def region(self, data, group):
        regions = self.draft.groups[group]["regions"]
        r = {"name": f"r{len(regions) + 1}", "size": f"{data.draw(st.sampled_from(strategies.SIZES))} pages",
             "pattern": data.draw(strategies.patterns())}
        if self.vocab.thp and data.draw(st.booleans()):
            r["thp"] = data.draw(st.booleans())
        if len(self.vocab.nodes) > 1 and data.draw(st.booleans()):
            r["node"] = data.draw(st.sampled_from(self.vocab.nodes))
        regions.append(r)
        return group, r["name"]

    @precondition(lambda self: len(self.draft.groups) < MAX_GROUPS and not self.draft.steps)
    @rule(target=regions, data=st.data())
    @whole
    def add_group(self, data):
        return self.new_group(data)

    def new_group(self, data):
        name = f"g{len(self.draft.groups) + 1}"
        self.draft.groups[name] = {"name": name, "count": data.draw(st.integers(1, MAX_COUNT)), "regions": []}
        return self.region(data, name)

    @precondition(lambda self: not self.draft.groups)
    @rule(target=regions, data=st.data())
    @whole
    def add_ballast(self, data):
        """A group of many merged pages, which makes run=2 long.  The unmerge
        walks ksmd's list in order (mm/ksm.c unmerge_and_remove_all_rmap_items()
        walks ksm_mm_head from the start; __ksm_enter() adds at the tail, in
        the order setup maps the groups), so where the ballast stands decides
        which window stays open while it breaks the ballast's COW:
        - first: the groups after it are still merged, the window a fork
          must land in to catch part 2 of the seed fix;
        - last: the groups before it are already unmerged, the window a
          swap-in must land in to catch part 3 (do_swap_page() maps a KSM
          page from swapcache into an mm the unmerge has passed, and
          nothing unmerges it again; seed/swapin-during-unmerge.yaml puts
          its ballast last for this).
        Explore's small regions alone close either window in milliseconds.
        With the ballast always first, part 3 was never found (no failure
        in 54 examples, 900 s, on its kernel)."""
        name = "g1"
        region = {"name": "r1", "size": f"{BALLAST_PAGES} pages", "pattern": dict(BALLAST_PATTERN)}
        self.draft.groups[name] = {"name": name, "count": data.draw(st.integers(*BALLAST_COUNT)),
                                   "regions": [region]}
        self.draft.ballast = name
        if not data.draw(st.booleans()):  # the ballast first
            return name, region["name"]
        return multiple((name, region["name"]), *self.add_pair(data))

    def add_pair(self, data):
        """Before a last ballast (steps may start at once, and a ballast with
        nothing before it opens no window), a victim and a partner group as
        seed/swapin-during-unmerge.yaml has them: the same workers and region
        r1 of unique pages, the same seed, so worker i of each holds worker
        i's pages of the other (Pattern "unique" keys pages by worker index)
        and each page merges into a KSM page of two mappings, which the
        partner's COW leaves to the victim alone."""
        victim = self.new_group(data)[0]
        region = self.draft.groups[victim]["regions"][0]
        region["pattern"] = {"kind": "unique", "seed": region["pattern"]["seed"], "groups": 1}
        partner = f"g{len(self.draft.groups) + 1}"
        self.draft.groups[partner] = dict(copy.deepcopy(self.draft.groups[victim]), name=partner)
        self.draft.pair = (victim, partner)
        return (victim, "r1"), (partner, "r1")

    @rule(target=regions, data=st.data(), where=regions)
    @whole
    def add_region(self, data, where):
        group = where[0]
        if len(self.draft.groups[group]["regions"]) >= MAX_REGIONS or self.draft.steps:
            return where  # regions are mapped at setup: none added once steps exist (their order is kept)
        return self.region(data, group)

    def workers(self, data, group, region):
        """A selector of live workers of `group` that map `region`: the group,
        its first worker (which never exits), or all (where every group maps it)."""
        choices = [group, f"{group}[0]"]
        if all(any(r["name"] == region for r in g["regions"]) for g in self.draft.groups.values()):
            choices.append("all")
        return data.draw(st.sampled_from(choices))

    def npages(self, region):
        """The least size of `region` in any group (a selector may name several)."""
        return min(int(r["size"].split()[0]) for g in self.draft.groups.values() for r in g["regions"]
                   if r["name"] == region)

    def action(self, data, name, where, **extra):
        """The mapping of one `do: name` step on region `where` = (group, region)."""
        cls = steps.ACTIONS[name]
        group, region = where
        step = {"do": name, "workers": self.workers(data, group, region)}
        keys = {spec.key for _, spec in steps.specs(cls)}
        if "region" in keys:
            step["region"] = region
        if "pages" in keys and data.draw(st.booleans()):
            step["pages"] = data.draw(strategies.page_ranges(self.npages(region)))
        if "node" in keys:
            step["node"] = data.draw(st.sampled_from(self.vocab.nodes))
        step.update(strategies.action_fields(data.draw, cls))
        step.update(extra)
        return step

    # -- the bug shapes --
    @precondition(lambda self: self.draft.groups and self.vocab.knob_values("run"))
    @rule()
    @whole
    def merge(self):
        """run=1, and ksmd goes over everything twice (where anything is left to go over)."""
        self.merged()

    def merged(self):
        self.knob("run", "1")
        if self.draft.mergeable():
            self.draft.add(copy.deepcopy(MERGE_WAIT))

    @precondition(lambda self: self.vocab.has("pageout") and self.vocab.has("touch") and self.draft.can_page_out())
    @rule(data=st.data(), victim=regions, partner=regions)
    @whole
    def pageout_alone(self, data, victim, partner):
        """Merged pages to swapcache: MADV_PAGEOUT skips a page mapped by more
        than one process (mm/madvise.c madvise_cold_or_pageout_pte_range()), so
        the partner breaks its COW first and the victim pages out what it alone maps."""
        self.paged_out_alone(data, victim, partner)

    def paged_out_alone(self, data, victim, partner, whole_groups=False, failing_writes=False):
        """whole_groups: the steps name the victim's and the partner's whole
        groups, not a drawn selector (which may be "all").  failing_writes:
        the pageout runs under fail_make_request, after the partner's COW of
        all its pages (a page still shared would stay mapped, and be poisoned
        mapped).  Returns the pageout step."""
        if partner[0] != victim[0]:
            self.draft.add(self.action(data, "touch", partner, write=True, **self.group_of(partner, whole_groups),
                                       **({"pages": "all"} if failing_writes else {})))
        pageout = self.action(data, "pageout", victim, **self.group_of(victim, whole_groups))
        for step in ({"fault_injection": True}, pageout, {"fault_injection": False}) if failing_writes else (pageout,):
            self.draft.add(step)
        return pageout

    @staticmethod
    def group_of(where, whole_groups):
        return {"workers": where[0]} if whole_groups else {}

    @precondition(lambda self: self.draft.groups and self.vocab.has("pageout") and self.vocab.has("touch")
                  and self.draft.can_page_out() and {"1", "2"} <= set(self.vocab.knob_values("run")))
    @rule(data=st.data(), victim=regions, partner=regions)
    @whole
    def swap_in_during_unmerge(self, data, victim, partner):
        """The merge, pageout_alone and race rules in the order part 3 of the
        seed fix needs them: merged pages, paged out by the one process left mapping them
        (so KSM pages sit in swapcache), faulted back while run=2 is written
        (mm/memory.c do_swap_page() -> ksm_might_need_to_copy() must copy a
        KSM page that the unmerge has not reached).  Drawn one by one, that
        order came up too seldom: no failure in 54 examples (900 s) on the
        part-3 kernel.  Two conditions of seed/swapin-during-unmerge.yaml are
        kept, since drawing loses them: ksmd stopped (run=0) before the
        partner's COW, or it merges the unchanged copies back and the pageout
        skips pages mapped twice; and unpaced faults, which land while run=2
        is written (no failure in 19 examples, 420 s, without them).  Where
        add_ballast made a victim and a partner group, they are the victim
        and the partner, each named as a whole group."""
        victim, partner, paired = self.merged_alone(victim, partner)
        self.paged_out_alone(data, victim, partner, paired)
        self.raced(data, victim, "touch", "2", pace_us=0, **self.group_of(victim, paired))

    def merged_alone(self, victim, partner):
        """Merge, then stop ksmd: (victim, partner, paired), the pair
        add_ballast made where there is one, else the drawn regions."""
        paired = bool(self.draft.pair)
        if paired:
            victim, partner = ((g, "r1") for g in self.draft.pair)
        self.merged()
        if "0" in self.vocab.knob_values("run"):
            self.knob("run", "0")
        return victim, partner, paired

    @precondition(lambda self: self.draft.pair and self.vocab.lose and self.vocab.has("touch")
                  and self.draft.can_page_out() and {"1", "2"} <= set(self.vocab.knob_values("run")))
    @rule(data=st.data())
    @whole
    def lose_in_swapcache(self, data):
        """Part 4 of the seed fix's shape (seed/poisoned-swapcache.yaml):
        merged pages paged out by the one process left mapping them while
        the swap device fails every write, so end_swap_bio_write() redirties
        them and they stay in swapcache (mm/page_io.c); memory failure then
        takes their frames (me_swapcache_dirty() leaves them not up to date,
        mm/memory-failure.c); then run=2 and swapoff, whose unuse_pte()
        (mm/swapfile.c) must map a swapin error entry for them:
        ksm_might_need_to_copy() may not copy a KSM page that is not up to
        date, and with run=2 it copies every KSM page it is given (when the
        run=2 was drawn, the two shapes of the first 62 examples on the
        part-4 kernel did not catch it).  The runner's losses_kept check
        reads them at the end: a page that reads back without SIGBUS was
        made up.  Drawn only where damage
        is allowed (vocabulary.Vocabulary.lose: in a guest), and only on
        add_ballast's victim and partner: on drawn regions most pages stayed
        mapped by two processes, and the step poisoned them mapped (madvise),
        thousands of memory failure lines that lose kernel log records."""
        victim, partner, paired = self.merged_alone(None, None)  # always the pair (the precondition)
        pageout = self.paged_out_alone(data, victim, partner, paired, failing_writes=True)
        self.draft.add({"do": "hwpoison", **{k: v for k, v in pageout.items() if k in ("workers", "region", "pages")}})
        self.draft.lost |= {(g, victim[1]) for g in self.draft.named(pageout["workers"])}
        self.knob("run", "2")
        self.draft.add({"swapoff": True})
        self.draft.swapped_off = True
        self.draft.add(self.action(data, "touch", victim, **self.group_of(victim, paired)))

    @precondition(lambda self: self.draft.groups and self.vocab.has("fork")
                  and {"1", "2"} <= set(self.vocab.knob_values("run")))
    @rule(data=st.data(), where=regions)
    @whole
    def fork_during_unmerge(self, data, where):
        """The merge and race rules in the order part 2 of the seed fix needs
        them: merged pages, then a fork that starts when run reads 2.  mm/ksm.c
        __ksm_enter() puts the child's mm just behind ksmd's cursor, which the
        unmerge has passed, unless run=2 sends it to the tail (the fix's part
        2); the child then keeps the KSM pages it inherited.  The parent must
        still be merged when it forks: a group after a first ballast, whose
        unmerge holds the cursor meanwhile."""
        if self.draft.ballast and not self.draft.ballast_last and where[0] == self.draft.ballast:
            after = [(g, group["regions"][0]["name"]) for g, group in self.draft.groups.items()
                     if g != self.draft.ballast]
            where = data.draw(st.sampled_from(after)) if after else where
        self.merged()
        self.raced(data, where, "fork", "2")

    @precondition(lambda self: self.vocab.has("touch"))
    @rule(data=st.data(), where=regions)
    @whole
    def fault_back(self, data, where):
        """Read faults: pages come back from swap(cache) or are mapped again."""
        self.draft.add(self.action(data, "touch", where))

    @precondition(lambda self: self.draft.groups and "2" in self.vocab.knob_values("run"))
    @rule()
    @whole
    def unmerge(self):
        self.knob("run", "2")

    @precondition(lambda self: any(a in RACE_ACTIONS for a in self.vocab.actions) and self.vocab.knob_values("run"))
    @rule(data=st.data(), where=regions)
    @whole
    def race(self, data, where):
        """A concurrent block as the seed scenarios open their windows: a
        worker action waits for run to read the value (RACE_RUN), the harness writes it.
        window 0%: a race that missed is an attempt, not an ERROR to report."""
        value = data.draw(st.sampled_from([v for v in self.vocab.knob_values("run") if v in RACE_RUN]))
        names = [a for a in RACE_ACTIONS if self.vocab.has(a) and self.draft.allows(a, where[1])]
        if names:
            self.raced(data, where, data.draw(st.sampled_from(names)), value)

    def raced(self, data, where, name, value, **extra):
        act = self.action(data, name, where, wait_for={"knob": "run", "value": int(value)}, **extra)
        self.draft.add({"window": "0%", "concurrent": [act, {"knob": {"run": int(value)}}]})
        self.draft.wrote("run", value)

    @precondition(lambda self: self.draft.groups and self.vocab.knob_values("merge_across_nodes")
                  and not self.draft.merge_any)
    @rule()
    @whole
    def switch_trees(self):
        """merge_across_nodes both ways, after an unmerge if ksmd may have merged."""
        if self.draft.maybe_shared:
            self.knob("run", "2")
        for value in ("0", "1"):
            self.knob("merge_across_nodes", value)

    # -- anything else in the vocabulary --
    @precondition(lambda self: self.draft.groups and self.vocab.knobs)
    @rule(data=st.data())
    @whole
    def set_knob(self, data):
        knob = data.draw(st.sampled_from([k for k, _ in self.vocab.knobs
                                          if k not in NEED_UNSHARED or self.draft.unshared()]))
        self.knob(knob, data.draw(st.sampled_from(self.vocab.knob_values(knob))))

    @precondition(lambda self: self.draft.groups and self.draft.run == "1" and "wait" not in self.draft.steps[-1]
                  and self.draft.mergeable())
    @rule()
    @whole
    def let_ksmd_merge(self):
        self.draft.add(copy.deepcopy(MERGE_WAIT))

    @precondition(lambda self: any(strategies.drawable(steps.ACTIONS[a]) for a in self.vocab.actions
                                   if a != "exit"))
    @rule(data=st.data(), where=regions)
    @whole
    def act(self, data, where):
        names = [a for a in self.vocab.actions if a != "exit" and strategies.drawable(steps.ACTIONS[a])
                 and self.draft.allows(a, where[1])]
        if names:
            self.draft.add(self.action(data, data.draw(st.sampled_from(names)), where))

    @precondition(lambda self: self.vocab.has("exit"))
    @rule(data=st.data(), where=regions)
    @whole
    def exit_one(self, data, where):
        """A worker other than a group's first exits (the first stays, so
        every selector explore writes names a live worker)."""
        group = where[0]
        left = [f"{group}[{i}]" for i in range(1, self.draft.groups[group]["count"])
                if f"{group}[{i}]" not in self.draft.exited]
        if left:
            who = data.draw(st.sampled_from(left))
            self.draft.exited.add(who)
            self.draft.add({"do": "exit", "workers": who})

    def knob(self, name, value):
        self.draft.add({"knob": {name: int(value)}})
        self.draft.wrote(name, value)

    def teardown(self):
        if self.draft.steps and not self.draft.partial:
            self.session.run(self.draft)
