"""What explore may generate on this machine: the registry's worker actions
and the KSM knobs this kernel has, narrowed by the scenario files given as
PATHS (only the actions and knobs they use).  Detected, never assumed: a knob
is in the vocabulary when its file is in /sys/kernel/mm/ksm, prctl_merge when
PR_GET_MEMORY_MERGE answers, placements on the nodes that have memory."""
from dataclasses import dataclass
from typing import Tuple

from .. import numa, scenario, steps
from .._mem import lib
from ..steps import machine as step_kinds

# knob -> the values worth writing (the registry says which files are knobs,
# not which values make a KSM path run): run's three modes; both
# merge_across_nodes trees; max_page_sharing at its least (2: chains of stable
# node dups at once) and at its default; zero pages on and off; a slow and a
# fast scan; smart_scan on and off
KNOB_VALUES = {
    "run": ("1", "2", "0"),
    "merge_across_nodes": ("0", "1"),
    "max_page_sharing": ("2", "256"),
    "use_zero_pages": ("1", "0"),
    "pages_to_scan": ("5000", "100"),
    "smart_scan": ("0", "1"),
}


@dataclass(frozen=True)
class Vocabulary:
    actions: Tuple[str, ...]  # `do:` names (steps.ACTIONS keys) explore may generate
    knobs: Tuple[Tuple[str, Tuple[str, ...]], ...]  # (knob, values) explore may write
    nodes: Tuple[int, ...]  # NUMA nodes with memory: region placements and migrate targets
    thp: bool  # regions may ask for MADV_HUGEPAGE / MADV_NOHUGEPAGE
    swap: bool  # a swap file can be made: setup.swap, so that pageout keeps pages in swapcache
    # pages may be lost in swapcache (machine.lose_in_swapcache): swap, fail_make_request
    # and memory failure are here, and damage is allowed (a guest, or --allow-kernel-damage)
    lose: bool = False

    def knob_values(self, name):
        return dict(self.knobs).get(name, ())

    def has(self, action):
        return action in self.actions


def prctl_merge_works():
    """PR_GET_MEMORY_MERGE (Linux 6.4+) answers in this process."""
    return lib.ksmh_prctl_memory_merge(0, 0) >= 0


def detect(knobs, swap_available, thp, lose=False, prctl=prctl_merge_works, nodes=numa.nodes_with_memory):
    """The whole vocabulary of this machine: every registry action that does
    not damage the kernel for good (hwpoison, provoke: hwpoison is drawn only
    in the one rule that knows the pages' state, where `lose` allows it) and that random steps
    after it cannot hang or refuse (not userfaultfd, exec, mprotect: steps.Action.explorable), prctl_merge where the
    kernel has it, pageout where swap can be made; every knob of KNOB_VALUES
    this kernel has."""
    actions = []
    for name, cls in steps.ACTIONS.items():
        if cls.damaging or not cls.explorable or (name == "prctl_merge" and not prctl()):
            continue
        if name == "pageout" and not swap_available:
            continue
        actions.append(name)
    present = set(knobs.settings())
    return Vocabulary(actions=tuple(actions),
                      knobs=tuple((k, v) for k, v in KNOB_VALUES.items() if k in present),
                      nodes=tuple(nodes()), thp=thp, swap=swap_available, lose=lose and swap_available)


def used_by(scenarios):
    """(actions, knobs) the steps of these scenarios use."""
    actions, knobs = set(), set()
    for sc in scenarios:
        for s in steps.walk(sc.steps):
            if isinstance(s, steps.Action):
                actions.add(s.action)
            elif isinstance(s, step_kinds.Knob):
                knobs |= {name for name, _ in s.writes}
    return actions, knobs


def narrowed(vocab, paths, limits=None, knobs=None):
    """The vocabulary restricted to what the scenario files under `paths` use
    (run stays: nothing merges or unmerges without it)."""
    actions, used = used_by(scenario.load_all(paths, limits=limits, knobs=knobs))
    return Vocabulary(actions=tuple(a for a in vocab.actions if a in actions),
                      knobs=tuple((k, v) for k, v in vocab.knobs if k in used | {"run"}),
                      nodes=vocab.nodes, thp=vocab.thp, swap=vocab.swap and "pageout" in actions,
                      lose=vocab.lose and {"pageout", "hwpoison"} <= actions)
