"""The typed values inside steps: conditions, worker selectors, page ranges,
patterns and knob waits, each parsed once at load (and checked against the
scenario's worker groups and regions) and dumped back to the YAML it came from."""
import re
from dataclasses import dataclass
from typing import Optional

from .. import yamlload
from .fields import DUMPERS, PARSERS, check_keys, typed

COND_RE = re.compile(r"^\s*(\+)?([A-Za-z_][\w.\[\]:]*)\s*(==|!=|>=|<=|>|<)\s*(-?\d+)(%?)\s*$")
# GROUP.REGION.METRIC: summed over the group's workers and all their live descendants (metrics.py)
PROCESS_METRIC_DOCS = {
    "ksm": "pages that are KSM pages (KPF_KSM, or the judge where this kernel's KPF_KSM lies)",
    "swapped": "pages swapped out (pagemap PM_SWAP)",
    "swapcache": "pages in swap cache: mapped ones with KPF_SWAPCACHE, swapped-out ones by the worker's own "
                 "mincore(2) (a descendant's swapped-out pages are not seen)",
    "present": "pages present in memory",
    "zero": "pages mapped to the zero page",
    "thp": "pages inside a transparent huge page",
    "sigbus": "pages whose access raised SIGBUS",
    "bad": "pages found with wrong data by a verify step",
    "processes": "processes counted (workers and live descendants)",
    "ksm_pages": "distinct KSM page frames backing the region (across the group's processes)",
    "max_sharing": "the most mappings of one KSM page frame (what max_page_sharing caps)",
    "uffd_wp": "pages whose PTE is userfaultfd write-protected (pagemap PM_UFFD_WP)",
    "uffd_minor": "pages inside a VMA registered for userfaultfd minor faults (smaps VmFlags ui: VM_UFFD_MINOR)",
    "vmas": "VMAs the region spans, summed over the processes (1 each where the kernel merged its neighbours)",
    "poisoned": "pages a hwpoison step saw the kernel mark KPF_HWPOISON",
    "lost_in_swapcache": "frames recorded at pageout that are now poisoned, unmapped, in swapcache and not up "
                         "to date (what me_swapcache_dirty() leaves)",
}
PROCESS_METRICS = tuple(PROCESS_METRIC_DOCS)
NODE_METRIC_RE = re.compile(r"^node(\d+)$")  # GROUP.REGION.node1: pages on NUMA node 1
# GROUP.METRIC
GROUP_METRIC_DOCS = {
    "merging_pages": "ksm_merging_pages from /proc/PID/ksm_stat, summed",
    "processes": "processes counted (workers and live descendants)",
    "sigbus": "pages whose access raised SIGBUS, over all regions",
    "rmap_items": "ksm_rmap_items from /proc/PID/ksm_stat, summed",
}
GROUP_METRICS = tuple(GROUP_METRIC_DOCS)
PATTERNS = ("same", "groups", "unique", "zero")
WORKER_SEL_RE = re.compile(r"^(all|[a-z][a-z0-9_-]*)(\[(\d+)?(:)?(\d+)?\])?$")
PAGES_RE = re.compile(r"^(all|(\d+)-(\d+)|(\d+)|(last )?(\d+)%)$")
WINDOW_RE = re.compile(r"^(\d+)%$")
# the JSON schema's forms of the same (schema.py)
PAGES_SCHEMA_RE = r"^(all|\d+-\d+|\d+|(last )?(100|[1-9]\d?)%)$"
SELECTOR_SCHEMA_RE = r"^(all|[a-z][a-z0-9_-]*(\[(\d+|\d*:\d*)\])?)$"


@dataclass(frozen=True)
class Condition:
    """`[+]name op value[%]`: a counter (+ = change since the reference point)
    or a per-process metric GROUP.REGION.metric / GROUP.metric."""

    text: str  # as written
    delta: bool  # leading +
    name: str  # counter name, or dotted per-process metric
    op: str
    value: int
    percent: bool  # value is a percentage of the region's pages x processes


@dataclass(frozen=True)
class Pattern:
    kind: str  # same | groups | unique | zero
    seed: int = 1  # different seeds never merge with each other
    groups: int = 1  # for kind=groups: pages i and j are equal when i % groups == j % groups

    def command(self):
        """The worker's form (zygote.Region.set_keys)."""
        return {"kind": self.kind, "seed": self.seed, "groups": self.groups}


@dataclass(frozen=True)
class Selector:
    """Workers by name: all, NAME, NAME[i] or NAME[lo:hi]."""

    text: str  # as written
    group: str  # a worker group's name, or "all"
    index: Optional[int] = None  # NAME[i]
    sliced: bool = False  # NAME[lo:hi]
    lo: Optional[int] = None
    hi: Optional[int] = None

    def indexes(self, count):
        """The indexes of the workers of a group of `count` this selects."""
        if self.sliced:
            return range(count)[self.lo or 0: self.hi]
        return range(count) if self.index is None else [self.index]


@dataclass(frozen=True)
class PageRange:
    """Pages of a region: all, 10-19 (both included), 7, 50% (the first half), 'last 50%'."""

    text: str  # as written
    first: Optional[int] = None  # first page (ranges and single pages)
    last: Optional[int] = None  # last page, included
    percent: Optional[int] = None  # a share of the region
    from_end: bool = False  # the share is taken from the region's end

    def span(self, npages):
        """(start, count) within a region of npages."""
        if self.percent is not None:
            count = npages * self.percent // 100
            return (npages - count, count) if self.from_end else (0, count)
        if self.first is None:
            return 0, npages
        return self.first, min(self.last, npages - 1) - self.first + 1


ALL_PAGES = PageRange("all")


@dataclass(frozen=True)
class WaitFor:
    """Wait in the worker until a KSM file reads a value: the start of a race window."""

    knob: str  # a file in the KSM directory
    value: str  # the value it must read
    timeout: float = 60  # seconds

    def command(self, ksm_root):
        return {"wait_file": str(ksm_root / self.knob), "wait_value": self.value, "wait_timeout": self.timeout}


def parse_condition(ctx, m, key, where):
    text = m[key]
    match = COND_RE.match(str(text)) if isinstance(text, str) else None
    if not match:
        raise ctx.error(f"bad condition {text!r} (want e.g. 'pages_sharing >= 100', '+full_scans >= 2', "
                        f"'a.r.ksm == 0')", m, key, f"{where}.{key}")
    delta, name, op, value, pct = match.groups()
    return Condition(text.strip(), bool(delta), name, op, int(value), bool(pct))


def check_metric(ctx, cond, groups, m, key, where):
    """A dotted name must name a worker group (or all), a region and a metric."""
    if "." not in cond.name:
        if cond.percent:
            raise ctx.error("a percentage needs a per-region metric (GROUP.REGION.ksm)", m, key, where)
        return
    parts = cond.name.split(".")
    group = parts[0]
    if group != "all" and group not in groups:
        raise ctx.error(f"no worker group {group!r} (groups: {', '.join(groups) or 'none'})", m, key, where)
    if len(parts) == 2:
        if parts[1] not in GROUP_METRICS:
            raise ctx.error(f"unknown metric {parts[1]!r} (expected one of: {', '.join(GROUP_METRICS)})",
                            m, key, where)
        return
    if len(parts) != 3:
        raise ctx.error(f"bad metric {cond.name!r}: use GROUP.REGION.metric or GROUP.metric", m, key, where)
    region, metric = parts[1], parts[2]
    regions = {r for g in groups.values() for r in g} if group == "all" else groups[group]
    if region not in regions and region != "all":
        raise ctx.error(f"no region {region!r} in worker group {group!r}", m, key, where)
    if metric not in PROCESS_METRICS and not NODE_METRIC_RE.match(metric):
        raise ctx.error(f"unknown metric {metric!r} (expected one of: {', '.join(PROCESS_METRICS)}, nodeN)",
                        m, key, where)
    if cond.percent and metric in ("ksm_pages", "max_sharing", "vmas"):
        raise ctx.error(f"{metric} counts {'VMAs' if metric == 'vmas' else 'page frames'}, not a share of the "
                        f"region: drop the %", m, key, where)


def condition(p, m, where, spec, values):
    cond = parse_condition(p.ctx, m, spec.key, where)
    check_metric(p.ctx, cond, p.groups, m, spec.key, f"{where}.{spec.key}")
    return cond


def parse_pattern(p, m, key, where):
    """A pattern: a kind, or {kind, seed, groups}, at m[key]."""
    v = m[key]
    where = f"{where}.{key}"
    if isinstance(v, str):
        v = yamlload.Map(kind=v)
        v.line = m.line_of(key)
    check_keys(p.ctx, v, where, {"kind", "seed", "groups"}, ("kind",))
    kind = v["kind"]
    if kind not in PATTERNS:
        raise p.err(f"unknown pattern {kind!r} (expected one of: {', '.join(PATTERNS)})", v, "kind",
                    f"{where}.kind")
    groups = typed(p.ctx, v, "groups", where, (int,), 1)
    if groups < 1:
        raise p.err("groups must be >= 1", v, "groups", f"{where}.groups")
    return Pattern(kind, typed(p.ctx, v, "seed", where, (int,), 1), groups)


def dump_pattern(pat):
    return pat.kind if (pat.seed, pat.groups) == (1, 1) else {"kind": pat.kind, "seed": pat.seed,
                                                               "groups": pat.groups}


def workers(p, m, where, spec, values):
    v = m[spec.key]
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        match = WORKER_SEL_RE.match(str(item))
        # an index names workers of one group: 'all[0]' and an empty 'a[]' name none
        if not match or (match.group(1) != "all" and match.group(1) not in p.groups) or \
                (match.group(2) and (match.group(1) == "all" or match.group(3) is match.group(4) is None)):
            raise p.err(f"bad worker selector {item!r} (groups: {', '.join(p.groups)}; "
                        f"use NAME, NAME[i], NAME[i:j] or all)", m, spec.key, f"{where}.{spec.key}")
        group, _, lo, colon, hi = match.groups()
        if lo is not None and group != "all" and not colon and int(lo) >= p.group_sizes[group]:
            raise p.err(f"{item!r}: group {group!r} has only {p.group_sizes[group]} workers", m, spec.key,
                        f"{where}.{spec.key}")
        if colon:
            out.append(Selector(str(item), group, sliced=True, lo=int(lo) if lo else None,
                                hi=int(hi) if hi else None))
        else:
            out.append(Selector(str(item), group, index=int(lo) if lo is not None else None))
    return tuple(out)


ALL_WORKERS = (Selector("all", "all"),)


def dump_workers(selectors):
    texts = [s.text for s in selectors]
    return texts[0] if len(texts) == 1 else texts


def worker_names(selectors, group_sizes):
    """The workers ("a[0]", ...) that selectors name, in a scenario whose groups have these sizes."""
    out = set()
    for sel in selectors:
        for g in (group_sizes if sel.group == "all" else [sel.group]):
            out |= {f"{g}[{i}]" for i in sel.indexes(group_sizes[g])}
    return out


def region(p, m, where, spec, values):
    name = typed(p.ctx, m, spec.key, where, (str,))
    if name in spec.excluded:
        raise p.err(spec.message.format(value=name, key=spec.key), m, spec.key, f"{where}.{spec.key}")
    for sel in values.get("workers") or ():
        groups = p.groups.values() if sel.group == "all" else [p.groups[sel.group]]
        if name != "all" and any(name not in g for g in groups):
            raise p.err(f"region {name!r} is not mapped by every worker of {sel.text!r}", m, spec.key,
                        f"{where}.{spec.key}")
    return name


def page_range(p, m, where, spec, values):
    """A `pages:` value checked against the region it applies to."""
    text = str(m[spec.key])
    field = f"{where}.{spec.key}"
    match = PAGES_RE.match(text)
    if not match:
        raise p.err(f"bad page range {text!r} (all, 10-19, 7, 50%, 'last 50%')", m, spec.key, field)
    _, lo, hi, single, last, pct = match.groups()
    if pct is not None and not 1 <= int(pct) <= 100:
        raise p.err(f"{text!r}: a share of the region is 1% to 100%", m, spec.key, field)
    if lo is not None and int(lo) > int(hi):
        raise p.err(f"{text!r}: the first page comes after the last", m, spec.key, field)
    first = lo if lo is not None else single
    name = values.get("region")
    if first is not None and name not in (None, "all"):
        named = {sel.group for sel in values.get("workers") or ()}
        groups = p.group_sizes if "all" in named else named
        # (no group at all: `workers: []` selects nobody, and nothing is out of range)
        npages = min((p.group_pages[g][name] for g in groups if name in p.group_pages[g]), default=None)
        if npages is not None and int(first) >= npages:
            raise p.err(f"{text!r}: the region {name!r} has only {npages} pages (0..{npages - 1})",
                        m, spec.key, field)
    if pct is not None:
        return PageRange(text, percent=int(pct), from_end=bool(last))
    if first is None:
        return ALL_PAGES
    return PageRange(text, int(first), int(hi if hi is not None else first))


def wait_for(p, m, where, spec, values):
    w = m[spec.key]
    wf = f"{where}.{spec.key}"
    check_keys(p.ctx, w, wf, {"knob", "value", "timeout"}, ("knob", "value"))
    knob = typed(p.ctx, w, "knob", wf, (str,))
    why = p.knobs.why_not_readable(knob)
    if why:
        raise p.err(f"{knob!r} {why}", w, "knob", f"{wf}.knob")
    timeout = typed(p.ctx, w, "timeout", wf, (int, float), 60)
    if timeout <= 0:
        raise p.err(f"must be > 0, not {timeout!r}", w, "timeout", f"{wf}.timeout")
    return WaitFor(knob, str(w["value"]), timeout)


def dump_wait_for(w):
    return {"knob": w.knob, "value": w.value, "timeout": w.timeout}


def knob_writes(p, m, where, spec, values):
    """(name, value) pairs of knobs to write: plain names of settings only."""
    k = m[spec.key]
    where = f"{where}.{spec.key}"
    if not isinstance(k, yamlload.Map) or not k:
        raise p.err(f"{spec.key}: must map knob names to values", m, spec.key, where)
    return parse_knob_writes(p, k, where)


def parse_knob_writes(p, m, where):
    for n in m:
        why = p.knobs.why_not_writable(str(n))
        if why:
            raise p.err(f"{n!r} {why}", m, n, f"{where}.{n}")
    for n, v in m.items():
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise p.err(f"knob values are integers or words, not {v!r}", m, n, f"{where}.{n}")
    return tuple((str(n), str(v)) for n, v in m.items())


def percent(p, m, where, spec, values):
    match = WINDOW_RE.match(str(m[spec.key]).strip())
    if not match or int(match.group(1)) > 100:
        raise p.err(f"{spec.key} is a percentage 0%..100%, not {m[spec.key]!r}", m, spec.key,
                    f"{where}.{spec.key}")
    return int(match.group(1))


def flag(p, m, where, spec, values):
    """true/false or 1/0 (prctl's argument)."""
    v = typed(p.ctx, m, spec.key, where, (bool, int))
    if v not in (0, 1):
        raise p.err(f"must be true, false, 1 or 0, not {v!r}", m, spec.key, f"{where}.{spec.key}")
    return int(v)


def steps(p, m, where, spec, values):
    return p.steps(m[spec.key], f"{where}.{spec.key}")


PARSERS.update(condition=condition, pattern=lambda p, m, where, spec, values: parse_pattern(p, m, spec.key, where), workers=workers, region=region, pages=page_range,
               wait_for=wait_for, knob_writes=knob_writes, percent=percent, steps=steps, flag=flag)
DUMPERS.update(condition=lambda c: c.text, pattern=dump_pattern, workers=dump_workers, pages=lambda r: r.text,
               wait_for=dump_wait_for, knob_writes=dict, percent=lambda n: f"{n}%",
               steps=lambda steps: [s.dump() for s in steps])
