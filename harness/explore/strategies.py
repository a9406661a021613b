"""Hypothesis strategies for the fields of a worker action, read from the
registry's Specs (harness/steps/fields.py): the type says the strategy, the
bounds and choices say its range.  Explore adds only what a Spec cannot say:
which worker group and region an action is about (the state machine's
bundles), page ranges inside that region, and tighter bounds where the
registry's would make one example cost minutes (CAPS, NUMBERS)."""
from hypothesis import strategies as st

from ..steps import fields, values

# (action, key) -> (least, greatest): where the registry's bound is what the
# machine can hold, explore keeps an example small (a fork tree of depth 16
# is 16 generations of processes; 64 touch threads per worker)
CAPS = {("fork", "count"): (1, 8), ("fork", "depth"): (1, 2), ("fork", "live_cap"): (0, 16),
        ("touch", "threads"): (1, 4)}
# (action, key) -> values: numbers (microseconds, seconds) with no upper bound
# in the registry, at the few values that make a different kernel path likely
NUMBERS = {("touch", "pace_us"): (0, 20), ("fork", "interval_us"): (0, 100), ("fork", "lifetime_us"): (0, 1000),
           ("fork", "duration"): (0.5,)}
# (action, key) -> choices explore never writes: MADV_DONTNEED gives the
# pages back, and the end's data check (runner.verify_data) has no notion of
# content that was dropped on purpose, so it would read zeros as wrong data
EXCLUDED = {("advise", "advice"): ("dontneed",)}
# (action, key) drawn every time although optional: a fork needs one of
# count, duration or until_done (steps.actions.Fork.ENDS)
ALWAYS = {("fork", "count")}
# keys explore fills itself: the worker selector, the region, the race's
# wait_for and until_done (concurrent blocks only), migrate's node (a node
# with memory); `name` is a title, not behaviour
OWN = {"workers", "region", "wait_for", "until_done", "name", "node", "pages"}
SIZES = (64, 16, 256, 512, 1024)  # region sizes in pages: up to 4 MiB, two THP-sized
SEEDS = (1, 2, 3)  # pattern seeds: groups with one seed hold the same content (they merge)


def patterns():
    """A pattern mapping: a kind of values.PATTERNS, a seed, and for groups a count."""
    kind = st.sampled_from(values.PATTERNS)
    return st.builds(lambda k, s, g: {"kind": k, "seed": s, "groups": g if k == "groups" else 1},
                     kind, st.sampled_from(SEEDS), st.integers(1, 8))


def page_ranges(npages):
    """The forms of a `pages:` value, inside a region of npages."""
    return st.one_of(
        st.just("all"),
        st.sampled_from(("50%", "last 50%", "10%")),
        st.integers(0, npages - 1).flatmap(lambda lo: st.integers(lo, npages - 1).map(lambda hi: f"{lo}-{hi}")))


def for_spec(action, spec):
    """The strategy of one field, or None where the Spec's type is one explore
    cannot draw (a free string such as provoke's crash type)."""
    key = (action, spec.key)
    low, high = spec.bounds()
    if spec.type == "int":
        low, high = CAPS.get(key, (low or 0, min(high if high is not None else 16, (low or 0) + 16)))
        return st.integers(low, high)
    if spec.type == "number":
        return st.sampled_from(NUMBERS.get(key, (low or 0,)))
    if spec.type == "bool":
        return st.booleans() if not spec.choices else st.sampled_from(spec.choices)
    if spec.type == "choice":
        return st.sampled_from([c for c in spec.choices if c not in EXCLUDED.get(key, ())])
    if spec.type == "flag":
        return st.sampled_from((1, 0))
    if spec.type == "pattern":
        return patterns()
    return None


def drawable(cls):
    """Explore can make every required field of this action."""
    return all(spec.key in OWN or for_spec(cls.action, spec) is not None
               for _, spec in fields.specs(cls) if spec.required)


def action_fields(draw, cls):
    """The YAML keys of one action of class cls, drawn from its Specs (the
    keys explore fills itself left out): required ones always, optional ones
    or their default."""
    out = {}
    for _, spec in fields.specs(cls):
        strategy = None if spec.key in OWN else for_spec(cls.action, spec)
        if strategy is None:
            continue
        if spec.required or (cls.action, spec.key) in ALWAYS or draw(st.booleans()):
            out[spec.key] = draw(strategy)
    return out
