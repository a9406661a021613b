"""Scenario files: load, validate, expand the parameter matrix.

Everything is checked here, before anything touches the kernel: an unknown
key, a wrong type, a bad size or an impossible order is an InputError naming
file:line and the field (exit code 2).  The format is documented in README.md
("Writing scenarios") and described by harness/schema/scenario.schema.json.
"""
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from . import limits as limits_mod, pages, yamlload
from .errors import InputError
from .knobs import Knobs

PAGE = pages.PAGE_SIZE  # the worker maps with the system's page size: sizes are counted in it
MAX_NODE = 127  # mem.c ksmh_mbind() passes a 128-bit node mask
SIZE_RE = re.compile(r"^(\d+)\s*([KMGkmg]?)(i?[Bb])?$")
PAGES_SIZE_RE = re.compile(r"^\s*(\d+)\s*pages$", re.ASCII)  # "100 pages"
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
COND_RE = re.compile(r"^\s*(\+)?([A-Za-z_][\w.\[\]:]*)\s*(==|!=|>=|<=|>|<)\s*(-?\d+)(%?)\s*$")
PROCESS_METRICS = ("ksm", "swapped", "swapcache", "present", "zero", "thp", "sigbus", "bad", "processes",
                   "ksm_pages", "max_sharing", "poisoned", "lost_in_swapcache")
NODE_METRIC_RE = re.compile(r"^node(\d+)$")  # GROUP.REGION.node1: pages on NUMA node 1
GROUP_METRICS = ("merging_pages", "processes", "sigbus", "rmap_items")
PATTERNS = ("same", "groups", "unique", "zero")
ADVICE = ("mergeable", "unmergeable", "pageout", "cold", "dontneed", "hugepage", "nohugepage")
WRITE_RESULTS = ("ok", "EBUSY", "EINVAL")
# a memcg limit write may also be "any": the result is reported, not checked
# (what v1 does over merged pages differs between kernel versions)
LIMIT_RESULTS = WRITE_RESULTS + ("any",)
# a race (concurrent step with a knob write) that hit less of its window than
# this share of its worker events is an ERROR, not a PASS: the path was not tested
DEFAULT_WINDOW_PERCENT = 50
WINDOW_RE = re.compile(r"^(\d+)%$")
SWAP_KINDS = ("file", "zram")


@dataclass(frozen=True)
class Pattern:
    kind: str  # same | groups | unique | zero
    seed: int  # different seeds never merge with each other
    groups: int  # for kind=groups: pages i and j are equal when i % groups == j % groups


@dataclass(frozen=True)
class Region:
    name: str  # region name, unique within its worker group
    npages: int  # size in pages
    pattern: Pattern  # the content it is filled with
    mergeable: bool  # madvise(MADV_MERGEABLE) after the fill
    node: Optional[int]  # NUMA node to place it on (mbind), or None
    thp: Optional[bool]  # MADV_HUGEPAGE (True) / MADV_NOHUGEPAGE (False) / leave (None)
    line: int


@dataclass(frozen=True)
class WorkerGroup:
    name: str  # group name: workers are NAME[0] .. NAME[count-1]
    count: int  # how many workers
    regions: Tuple[Region, ...]
    prctl_merge: bool  # PR_SET_MEMORY_MERGE=1 before mapping (6.4+)
    line: int


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
class Step:
    kind: str  # knob | wait | do | concurrent | check | repeat | fault_injection | cgroup | swapoff
    args: Mapping[str, Any]  # validated arguments of that kind
    line: int
    children: Tuple["Step", ...] = ()  # for concurrent and repeat

    @property
    def title(self):
        if self.kind == "knob":
            return "knob " + " ".join(f"{k}={v}" for k, v in self.args["writes"])
        if self.kind == "do":
            return f"{self.args['do']} {self.args.get('workers', 'all')}"
        if self.kind in ("wait", "check"):
            return f"{self.kind} {self.args['until'].text}"
        return self.args.get("name") or self.kind


@dataclass(frozen=True)
class Expectation:
    kind: str  # that | data | crash | no_ksm_after_unmerge
    args: Mapping[str, Any]
    line: int
    text: str  # as shown in results


@dataclass(frozen=True)
class Requirements:
    kernel: Optional[str]  # minimum kernel version, "3.9"
    knobs: Tuple[str, ...]  # /sys/kernel/mm/ksm files that must exist
    numa_nodes: int  # nodes with memory
    swap: Optional[str]  # swap kind that must be creatable
    thp: bool
    fault_injection: bool  # fail_make_request
    memcg: bool
    ksm_stat: bool  # /proc/PID/ksm_stat
    vmstat: Tuple[str, ...]  # /proc/vmstat fields that must exist
    memory_failure: bool = False  # CONFIG_MEMORY_FAILURE + the hwpoison injector (hwpoison steps)
    lkdtm: bool = False  # debugfs provoke-crash/DIRECT (CONFIG_LKDTM); implied by do: provoke


@dataclass(frozen=True)
class Scenario:
    name: str  # with matrix values: "stale-stable-nodes[merge_across_nodes=0]"
    description: str
    file: str
    line: int
    params: Mapping[str, Any]  # this point of the matrix
    requires: Requirements
    knobs: Tuple[Tuple[str, str], ...]  # setup.knobs, written in order after run=2
    swap: Optional[Mapping[str, Any]]  # setup.swap: kind, npages
    cgroup: Optional[Mapping[str, Any]]  # setup.cgroup: limit (bytes)
    workers: Tuple[WorkerGroup, ...]
    steps: Tuple[Step, ...]
    expect: Tuple[Expectation, ...]
    timeout: float  # seconds for the whole scenario


PATH_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class Ctx:
    """Where we are in the file, for error messages."""

    def __init__(self, file, doc=None):
        self.file = file
        self.doc = doc  # the document, to find the line of a scalar by its field path

    def line_at(self, node, where):
        """The line of `node`, or, for a scalar (which carries no line), the
        line of the key or item that holds it, found by its path
        ("workers[0].regions[1]") from the document root."""
        if hasattr(node, "line"):
            return node.line
        parent, last = None, None
        current = self.doc
        for name, index in PATH_PART_RE.findall(where):
            key = int(index) if index else name
            if not isinstance(current, (yamlload.Map, yamlload.Seq)):
                break
            try:
                parent, last, current = current, key, current[key]
            except (KeyError, IndexError, TypeError):
                break
        return parent.line_of(last) if parent is not None else None

    def error(self, msg, node, key=None, field=None):
        line = node.line_of(key) if key is not None and hasattr(node, "line_of") else getattr(node, "line", None)
        return InputError(msg, file=self.file, line=line, field=field)


def _keys(ctx, m, where, allowed, required=()):
    if not isinstance(m, yamlload.Map):
        raise InputError(f"must be a mapping, not {type(m).__name__}", file=ctx.file,
                         line=ctx.line_at(m, where), field=where)
    for k in m:
        if k not in allowed:
            hint = ", ".join(sorted(allowed))
            raise ctx.error(f"unknown key {k!r} (expected one of: {hint})", m, k, f"{where}.{k}")
    for k in required:
        if k not in m:
            raise ctx.error(f"missing required key {k!r}", m, None, f"{where}.{k}")


def _typed(ctx, m, key, where, types, default=None):
    if key not in m:
        return default
    v = m[key]
    if isinstance(v, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(v, types)
    if not ok:
        names = "/".join(t.__name__ for t in types)
        raise ctx.error(f"must be {names}, not {type(v).__name__} {v!r}", m, key, f"{where}.{key}")
    return v


def parse_size(ctx, m, key, where):
    """'4M', '512K', '1G', 4096 (bytes) or '100 pages' -> pages."""
    v = m[key]
    field = f"{where}.{key}"
    if isinstance(v, str) and PAGES_SIZE_RE.match(v):
        n = int(PAGES_SIZE_RE.match(v).group(1))
    elif isinstance(v, int) and not isinstance(v, bool):
        n = v // PAGE if v % PAGE == 0 else -1
    elif isinstance(v, str) and SIZE_RE.match(v.strip()):
        num, unit, _ = SIZE_RE.match(v.strip()).groups()
        nbytes = int(num) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
        n = nbytes // PAGE if nbytes % PAGE == 0 else -1
    else:
        raise ctx.error(f"bad size {v!r} (use e.g. 4M, 512K, 1G or '100 pages')", m, key, field)
    if n <= 0:
        raise ctx.error(f"size {v!r} must be a positive multiple of the {PAGE}-byte page", m, key, field)
    return n


def parse_condition(ctx, m, key, where):
    text = m[key]
    match = COND_RE.match(str(text)) if isinstance(text, str) else None
    if not match:
        raise ctx.error(f"bad condition {text!r} (want e.g. 'pages_sharing >= 100', '+full_scans >= 2', "
                        f"'a.r.ksm == 0')", m, key, f"{where}.{key}")
    delta, name, op, value, pct = match.groups()
    return Condition(text.strip(), bool(delta), name, op, int(value), bool(pct))


def _check_metric(ctx, cond, groups, m, key, where):
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
    if cond.percent and metric in ("ksm_pages", "max_sharing"):
        raise ctx.error(f"{metric} counts page frames, not a share of the region: drop the %", m, key, where)


WORKER_SEL_RE = re.compile(r"^(all|[a-z][a-z0-9_-]*)(\[(\d+)?(:)?(\d+)?\])?$")
PAGES_RE = re.compile(r"^(all|(\d+)-(\d+)|(\d+)|(last )?(\d+)%)$")


def _at_least(ctx, m, key, where, value, low, what=None):
    """value >= low, or an InputError naming the field."""
    if value is not None and value < low:
        raise ctx.error(f"must be {what or f'>= {low}'}, not {value!r}", m, key, f"{where}.{key}")
    return value


def _within(ctx, m, key, where, value, low, high):
    if value is not None and not low <= value <= high:
        raise ctx.error(f"must be {low}..{high}, not {value!r}", m, key, f"{where}.{key}")
    return value


class Parser:
    def __init__(self, file, doc, params, limits, knobs):
        self.ctx = Ctx(file, doc)
        self.doc = doc
        self.params = params
        self.limits = limits  # harness.limits.Limits: what this machine can hold
        self.knobs = knobs  # the KSM directory, to tell knobs from counters and paths
        self.groups = {}  # group name -> set of region names
        self.group_sizes = {}  # group name -> worker count
        self.group_pages = {}  # group name -> {region name: pages}

    def err(self, msg, node, key=None, field=None):
        return self.ctx.error(msg, node, key, field)

    def requirements(self, m):
        where = "requires"
        if m is None:
            m = yamlload.Map()
        _keys(self.ctx, m, where, {"kernel", "knobs", "numa_nodes", "swap", "thp", "fault_injection",
                                   "memcg", "ksm_stat", "vmstat", "memory_failure", "lkdtm"})
        kernel = _typed(self.ctx, m, "kernel", where, (str, float, int))
        if kernel is not None and not re.match(r"^\d+(\.\d+){0,2}$", str(kernel)):
            raise self.err(f"bad kernel version {kernel!r} (want e.g. '3.9')", m, "kernel", f"{where}.kernel")
        knobs = _typed(self.ctx, m, "knobs", where, (list,), [])
        for i, k in enumerate(knobs):
            why = self.knobs.why_not_readable(str(k))
            if why:
                raise InputError(f"{k!r} {why}", file=self.ctx.file, line=m.line_of("knobs"),
                                 field=f"{where}.knobs[{i}]")
        vmstat = _typed(self.ctx, m, "vmstat", where, (list,), [])
        swap = _typed(self.ctx, m, "swap", where, (str,))
        if swap is not None and swap not in SWAP_KINDS + ("any",):
            raise self.err(f"swap must be one of file, zram, any; not {swap!r}", m, "swap", f"{where}.swap")
        return Requirements(
            kernel=str(kernel) if kernel is not None else None,
            knobs=tuple(str(k) for k in knobs),
            numa_nodes=_within(self.ctx, m, "numa_nodes", where, _typed(self.ctx, m, "numa_nodes", where, (int,), 1),
                               1, MAX_NODE + 1),
            swap=swap,
            thp=_typed(self.ctx, m, "thp", where, (bool,), False),
            fault_injection=_typed(self.ctx, m, "fault_injection", where, (bool,), False),
            memcg=_typed(self.ctx, m, "memcg", where, (bool,), False),
            ksm_stat=_typed(self.ctx, m, "ksm_stat", where, (bool,), False),
            vmstat=tuple(str(v) for v in vmstat),
            memory_failure=_typed(self.ctx, m, "memory_failure", where, (bool,), False),
            lkdtm=_typed(self.ctx, m, "lkdtm", where, (bool,), False),
        )

    def pattern(self, m, key, where):
        v = m[key]
        if isinstance(v, str):
            v = yamlload.Map(kind=v)
            v.line = m.line_of(key)
        _keys(self.ctx, v, where, {"kind", "seed", "groups"}, ("kind",))
        kind = v["kind"]
        if kind not in PATTERNS:
            raise self.err(f"unknown pattern {kind!r} (expected one of: {', '.join(PATTERNS)})", v, "kind",
                           f"{where}.kind")
        groups = _typed(self.ctx, v, "groups", where, (int,), 1)
        if groups < 1:
            raise self.err("groups must be >= 1", v, "groups", f"{where}.groups")
        return Pattern(kind, _typed(self.ctx, v, "seed", where, (int,), 1), groups)

    def workers(self, seq):
        if not isinstance(seq, yamlload.Seq) or not seq:
            raise InputError("must be a non-empty list of worker groups", file=self.ctx.file,
                             line=self.ctx.line_at(seq, "workers"), field="workers")
        out, mapped = [], 0
        for i, m in enumerate(seq):
            where = f"workers[{i}]"
            _keys(self.ctx, m, where, {"name", "count", "regions", "prctl_merge"}, ("name", "regions"))
            name = _typed(self.ctx, m, "name", where, (str,))
            if not NAME_RE.match(name) or name == "all":
                raise self.err(f"bad worker group name {name!r} (lower case, not 'all')", m, "name", f"{where}.name")
            if name in self.groups:
                raise self.err(f"worker group {name!r} defined twice", m, "name", f"{where}.name")
            count = _typed(self.ctx, m, "count", where, (int,), 1)
            if not 1 <= count <= 1000:
                raise self.err("count must be 1..1000", m, "count", f"{where}.count")
            regions = []
            rseq = m["regions"]
            if not isinstance(rseq, yamlload.Seq) or not rseq:
                raise self.err("must be a non-empty list", m, "regions", f"{where}.regions")
            for j, r in enumerate(rseq):
                rw = f"{where}.regions[{j}]"
                _keys(self.ctx, r, rw, {"name", "size", "pattern", "mergeable", "node", "thp"},
                      ("name", "size"))
                rname = _typed(self.ctx, r, "name", rw, (str,))
                if not NAME_RE.match(rname) or rname == "all":
                    raise self.err(f"bad region name {rname!r}", r, "name", f"{rw}.name")
                if any(x.name == rname for x in regions):
                    raise self.err(f"region {rname!r} defined twice", r, "name", f"{rw}.name")
                pattern = self.pattern(r, "pattern", f"{rw}.pattern") if "pattern" in r else Pattern("same", 1, 1)
                node = _within(self.ctx, r, "node", rw, _typed(self.ctx, r, "node", rw, (int,)), 0, MAX_NODE)
                regions.append(Region(rname, parse_size(self.ctx, r, "size", rw), pattern,
                                      _typed(self.ctx, r, "mergeable", rw, (bool,), True), node,
                                      _typed(self.ctx, r, "thp", rw, (bool,)), r.line))
            self.groups[name] = {r.name for r in regions}
            self.group_sizes[name] = count
            self.group_pages[name] = {r.name: r.npages for r in regions}
            mapped += count * sum(r.npages for r in regions)
            if mapped > self.limits.memory_pages:
                raise self.err(f"the workers map {mapped * PAGE >> 20} MiB in all, more than this machine's "
                               f"memory plus swap ({self.limits.memory_pages * PAGE >> 20} MiB): make regions "
                               f"smaller or fewer", m, "count" if "count" in m else "regions", f"{where}.count")
            out.append(WorkerGroup(name, count, tuple(regions),
                                   _typed(self.ctx, m, "prctl_merge", where, (bool,), False), m.line))
        return tuple(out)

    def worker_selector(self, m, key, where):
        v = m.get(key, "all")
        items = v if isinstance(v, list) else [v]
        for item in items:
            match = WORKER_SEL_RE.match(str(item))
            # an index names workers of one group: 'all[0]' and an empty 'a[]' name none
            if not match or (match.group(1) != "all" and match.group(1) not in self.groups) or \
                    (match.group(2) and (match.group(1) == "all" or match.group(3) is match.group(4) is None)):
                raise self.err(f"bad worker selector {item!r} (groups: {', '.join(self.groups)}; "
                               f"use NAME, NAME[i], NAME[i:j] or all)", m, key, f"{where}.{key}")
            if match.group(3) is not None and match.group(1) != "all" and not match.group(4):
                if int(match.group(3)) >= self.group_sizes[match.group(1)]:
                    raise self.err(f"{item!r}: group {match.group(1)!r} has only "
                                   f"{self.group_sizes[match.group(1)]} workers", m, key, f"{where}.{key}")
        return [str(i) for i in items]

    def worker_names(self, selectors):
        """The workers ("a[0]", ...) that selectors name."""
        out = set()
        for sel in selectors:
            group, index, lo, colon, hi = WORKER_SEL_RE.match(sel).groups()
            for g in (self.group_sizes if group == "all" else [group]):
                n = self.group_sizes[g]
                if index is None:
                    picked = range(n)
                elif colon:
                    picked = range(n)[int(lo or 0): int(hi) if hi else None]
                else:
                    picked = [int(lo)]
                out |= {f"{g}[{i}]" for i in picked}
        return out

    def region_ref(self, m, where, workers, required=True):
        if "region" not in m:
            if required:
                raise self.err("missing required key 'region'", m, None, f"{where}.region")
            return None
        name = _typed(self.ctx, m, "region", where, (str,))
        for sel in workers:
            group = WORKER_SEL_RE.match(sel).group(1)
            groups = self.groups.values() if group == "all" else [self.groups[group]]
            if name != "all" and any(name not in g for g in groups):
                raise self.err(f"region {name!r} is not mapped by every worker of {sel!r}", m, "region",
                               f"{where}.region")
        return name

    def wait_for(self, m, where):
        if "wait_for" not in m:
            return None
        w = m["wait_for"]
        wf = f"{where}.wait_for"
        _keys(self.ctx, w, wf, {"knob", "value", "timeout"}, ("knob", "value"))
        knob = _typed(self.ctx, w, "knob", wf, (str,))
        why = self.knobs.why_not_readable(knob)
        if why:
            raise self.err(f"{knob!r} {why}", w, "knob", f"{wf}.knob")
        timeout = _typed(self.ctx, w, "timeout", wf, (int, float), 60)
        return {"knob": knob, "value": str(w["value"]), "timeout": _at_least(self.ctx, w, "timeout", wf, timeout,
                                                                               1e-3, "> 0")}

    def page_range(self, m, where, region, workers):
        """A `pages:` value checked against the region it applies to."""
        spec = str(m["pages"])
        match = PAGES_RE.match(spec)
        if not match:
            raise self.err(f"bad page range {spec!r} (all, 10-19, 7, 50%, 'last 50%')", m, "pages", f"{where}.pages")
        _, lo, hi, single, _, pct = match.groups()
        field = f"{where}.pages"
        if pct is not None and not 1 <= int(pct) <= 100:
            raise self.err(f"{spec!r}: a share of the region is 1% to 100%", m, "pages", field)
        if lo is not None and int(lo) > int(hi):
            raise self.err(f"{spec!r}: the first page comes after the last", m, "pages", field)
        first = lo if lo is not None else single
        if first is not None and region not in (None, "all"):
            named = {WORKER_SEL_RE.match(w).group(1) for w in workers}
            groups = self.group_sizes if "all" in named else named
            # (no group at all: `workers: []` selects nobody, and nothing is out of range)
            npages = min((self.group_pages[g][region] for g in groups if region in self.group_pages[g]), default=None)
            if npages is not None and int(first) >= npages:
                raise self.err(f"{spec!r}: the region {region!r} has only {npages} pages (0..{npages - 1})",
                               m, "pages", field)
        return spec

    ACTIONS = {
        # action: (allowed keys besides do/workers, required)
        "write": ({"region", "pages", "pattern"}, ("region",)),
        "advise": ({"region", "pages", "advice"}, ("region", "advice")),
        "pageout": ({"region", "pages"}, ("region",)),
        "touch": ({"region", "pages", "write", "threads", "pace_us", "wait_for"}, ("region",)),
        "verify": ({"region"}, ()),
        "fork": ({"count", "duration", "depth", "live", "live_cap", "lifetime_us", "interval_us", "wait_for",
                  "until_done"}, ()),
        "prctl_merge": ({"value"}, ("value",)),
        "migrate": ({"region", "node"}, ("region", "node")),
        "exit": (set(), ()),
        "hwpoison": ({"region", "pages"}, ("region",)),
        # LKDTM: the worker writes `crash` to provoke-crash/DIRECT (harness/lkdtm.py)
        "provoke": ({"crash"}, ("crash",)),
    }

    def step(self, m, where, in_concurrent=False):
        # `repeat: N` beside `concurrent:` is how often the race runs, not a repeat step
        kinds = set(m) & {"knob", "wait", "do", "concurrent", "check", "repeat", "fault_injection", "cgroup",
                          "swapoff"} if isinstance(m, yamlload.Map) else set()
        if "concurrent" in kinds:
            kinds.discard("repeat")
        if len(kinds) != 1:
            raise InputError("a step is a mapping with exactly one of: knob, wait, do, concurrent, check, "
                             "repeat, fault_injection, cgroup, swapoff", file=self.ctx.file,
                             line=self.ctx.line_at(m, where), field=where)
        if "knob" in m:
            _keys(self.ctx, m, where, {"knob", "expect", "name"})
            k = m["knob"]
            if not isinstance(k, yamlload.Map) or not k:
                raise self.err("knob: must map knob names to values", m, "knob", f"{where}.knob")
            expect = m.get("expect", "ok")
            if expect not in WRITE_RESULTS:
                raise self.err(f"expect must be one of {', '.join(WRITE_RESULTS)}", m, "expect", f"{where}.expect")
            writes = self.knob_writes(k, f"{where}.knob")
            return Step("knob", {"writes": writes, "expect": expect, "name": m.get("name")}, m.line)
        if "wait" in m or "check" in m:
            kind = "wait" if "wait" in m else "check"
            body = m[kind]
            if isinstance(body, str):
                body = yamlload.Map(until=body)
                body.line = m.line_of(kind)
            _keys(self.ctx, body, f"{where}.{kind}", {"until", "timeout"}, ("until",))
            cond = parse_condition(self.ctx, body, "until", f"{where}.{kind}")
            _check_metric(self.ctx, cond, self.groups, body, "until", f"{where}.{kind}.until")
            timeout = _at_least(self.ctx, body, "timeout", f"{where}.{kind}",
                                _typed(self.ctx, body, "timeout", f"{where}.{kind}", (int, float), 60), 1e-3, "> 0")
            return Step(kind, {"until": cond, "timeout": timeout}, m.line)
        if "do" in m:
            action = m["do"]
            if not isinstance(action, str) or action not in self.ACTIONS:
                raise self.err(f"unknown action {action!r} (expected one of: {', '.join(self.ACTIONS)})",
                               m, "do", f"{where}.do")
            allowed, required = self.ACTIONS[action]
            _keys(self.ctx, m, where, allowed | {"do", "workers", "name"}, required)
            args = {"do": action, "workers": self.worker_selector(m, "workers", where), "name": m.get("name")}
            args["region"] = self.region_ref(m, where, args["workers"], required="region" in required)
            if "pages" in m:
                args["pages"] = self.page_range(m, where, args["region"], args["workers"])
            if "pattern" in m:
                args["pattern"] = self.pattern(m, "pattern", f"{where}.pattern")
            if "advice" in m and m["advice"] not in ADVICE:
                raise self.err(f"unknown advice {m['advice']!r} ({', '.join(ADVICE)})", m, "advice",
                               f"{where}.advice")
            for key, types in (("advice", (str,)), ("write", (bool,)), ("threads", (int,)),
                               ("pace_us", (int, float)), ("count", (int,)), ("duration", (int, float)),
                               ("depth", (int,)), ("live", (bool,)), ("live_cap", (int,)),
                               ("interval_us", (int, float)), ("lifetime_us", (int, float)),
                               ("until_done", (bool,)), ("value", (bool, int)), ("crash", (str,)),
                               ("node", (int,))):
                if key in m:
                    args[key] = _typed(self.ctx, m, key, where, types)
            for key, low, high in (("threads", 1, self.limits.threads), ("count", 1, 1 << 40),
                                   ("depth", 1, self.limits.fork_depth), ("live_cap", 0, 1 << 20),
                                   ("node", 0, MAX_NODE)):
                _within(self.ctx, m, key, where, args.get(key), low, high)
            for key in ("pace_us", "interval_us", "lifetime_us"):
                _at_least(self.ctx, m, key, where, args.get(key), 0)
            _at_least(self.ctx, m, "duration", where, args.get("duration"), 1e-3, "> 0")
            if args.get("until_done") and not in_concurrent:
                raise self.err("until_done only makes sense inside a concurrent step", m, "until_done",
                               f"{where}.until_done")
            if action == "provoke" and not re.match(r"^[A-Z][A-Z0-9_]*$", args["crash"]):
                raise self.err(f"crash must be an LKDTM crash type such as BUG, WARNING, HUNG_TASK, PANIC; "
                               f"not {args['crash']!r}", m, "crash", f"{where}.crash")
            if action == "fork" and not any(k in m for k in ("count", "duration", "until_done")):
                raise self.err("fork needs count, duration or until_done", m, "do", f"{where}.do")
            args["wait_for"] = self.wait_for(m, where)
            return Step("do", args, m.line)
        if "fault_injection" in m:
            _keys(self.ctx, m, where, {"fault_injection", "times"})
            on = _typed(self.ctx, m, "fault_injection", where, (bool,))
            times = _typed(self.ctx, m, "times", where, (int,), -1)
            if times == 0 or times < -1:
                raise self.err(f"times must be -1 (no limit) or >= 1, not {times}", m, "times", f"{where}.times")
            return Step("fault_injection", {"on": on, "times": times}, m.line)
        if "swapoff" in m:
            _keys(self.ctx, m, where, {"swapoff"})
            if _typed(self.ctx, m, "swapoff", where, (bool,)) is not True:
                raise self.err("swapoff: true is the only form", m, "swapoff", f"{where}.swapoff")
            return Step("swapoff", {}, m.line)
        if "cgroup" in m:
            _keys(self.ctx, m, where, {"cgroup", "expect"})
            c = m["cgroup"]
            _keys(self.ctx, c, f"{where}.cgroup", {"limit"}, ("limit",))
            expect = m.get("expect", "ok")
            if expect not in LIMIT_RESULTS:
                raise self.err(f"expect must be one of {', '.join(LIMIT_RESULTS)}", m, "expect", f"{where}.expect")
            return Step("cgroup", {"limit_pages": parse_size(self.ctx, c, "limit", f"{where}.cgroup"),
                                   "expect": expect}, m.line)
        if "concurrent" in m:
            _keys(self.ctx, m, where, {"concurrent", "name", "repeat", "window"})
            seq = m["concurrent"]
            if not isinstance(seq, yamlload.Seq) or len(seq) < 2:
                raise self.err("concurrent: needs a list of at least two steps", m, "concurrent",
                               f"{where}.concurrent")
            children = tuple(self.step(s, f"{where}.concurrent[{i}]", True) for i, s in enumerate(seq))
            for c in children:
                if c.kind in ("concurrent", "repeat"):
                    raise InputError("concurrent steps cannot nest", file=self.ctx.file, line=c.line, field=where)
            if not any(c.kind == "do" for c in children) or not any(c.kind != "do" for c in children):
                raise self.err("concurrent: needs worker actions (do) and harness steps (knob/wait/...) to "
                               "race against each other", m, "concurrent", f"{where}.concurrent")
            repeat = _at_least(self.ctx, m, "repeat", where, _typed(self.ctx, m, "repeat", where, (int,), 1), 1)
            return Step("concurrent", {"name": m.get("name"), "repeat": repeat,
                                       "window": self.window(m, where, children)}, m.line, children)
        _keys(self.ctx, m, where, {"repeat", "steps", "name"}, ("steps",))
        times = _typed(self.ctx, m, "repeat", where, (int,))
        if times < 1:
            raise self.err("repeat must be >= 1", m, "repeat", f"{where}.repeat")
        return Step("repeat", {"times": times, "name": m.get("name")}, m.line,
                    self.steps(m["steps"], f"{where}.steps"))

    def knob_writes(self, m, where):
        """(name, value) pairs of knobs to write: plain names of settings only."""
        for n in m:
            why = self.knobs.why_not_writable(str(n))
            if why:
                raise self.err(f"{n!r} {why}", m, n, f"{where}.{n}")
        return tuple((str(n), self.knob_value(m, n, where)) for n in m)

    def window(self, m, where, children):
        """`window: 50%`: the least share of the worker events (faults,
        forks) that must fall inside the race's knob writes."""
        if "window" not in m:
            return DEFAULT_WINDOW_PERCENT
        match = WINDOW_RE.match(str(m["window"]).strip())
        if not match or int(match.group(1)) > 100:
            raise self.err(f"window is a percentage 0%..100%, not {m['window']!r}", m, "window", f"{where}.window")
        if not any(c.kind == "knob" for c in children):
            raise self.err("window needs a knob write in the concurrent step (the window is its span)", m,
                           "window", f"{where}.window")
        return int(match.group(1))

    def knob_value(self, m, name, where):
        v = m[name]
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise self.err(f"knob values are integers or words, not {v!r}", m, name, f"{where}.{name}")
        return str(v)

    def steps(self, seq, where="steps"):
        if seq is None:
            return ()
        if not isinstance(seq, yamlload.Seq):
            raise InputError("must be a list of steps", file=self.ctx.file, line=self.ctx.line_at(seq, where),
                             field=where)
        return tuple(self.step(s, f"{where}[{i}]") for i, s in enumerate(seq))

    def expectations(self, seq):
        out = []
        if seq is None:
            seq = yamlload.Seq()
        if not isinstance(seq, yamlload.Seq):
            raise InputError("must be a list", file=self.ctx.file, line=self.ctx.line_at(seq, "expect"),
                             field="expect")
        for i, m in enumerate(seq):
            where = f"expect[{i}]"
            if isinstance(m, str):
                m = yamlload.Map(that=m)
                m.line = seq.line_of(i)
            _keys(self.ctx, m, where, {"that", "data", "crash", "knob_writes"})
            if len(m) != 1:
                raise self.err("an expectation has exactly one of: that, data, crash", m, None, where)
            kind = next(iter(m))
            if kind == "that":
                cond = parse_condition(self.ctx, m, "that", where)
                _check_metric(self.ctx, cond, self.groups, m, "that", f"{where}.that")
                out.append(Expectation("that", {"cond": cond}, m.line, cond.text))
            elif kind == "data":
                if m["data"] not in ("intact", "sigbus-or-intact"):
                    raise self.err("data: must be 'intact' or 'sigbus-or-intact'", m, "data", f"{where}.data")
                out.append(Expectation("data", {"mode": m["data"]}, m.line, f"data {m['data']}"))
            elif kind == "crash":
                title = m["crash"]
                if not isinstance(title, str):
                    raise self.err("crash: wants a title regex, e.g. 'WARNING in remove_stable_node'", m,
                                   "crash", f"{where}.crash")
                try:
                    re.compile(title)
                except re.error as exc:
                    raise self.err(f"bad regex: {exc}", m, "crash", f"{where}.crash") from None
                out.append(Expectation("crash", {"title": title}, m.line, f"crash /{title}/"))
            else:
                raise self.err("knob_writes is not an expectation; use a knob step with expect:", m, kind, where)
        if not any(e.kind == "data" for e in out):
            # every scenario verifies every page at the end, unless it says how
            out.append(Expectation("data", {"mode": "intact"}, seq.line, "data intact"))
        return tuple(out)

    def scenario(self):
        doc = self.doc
        _keys(self.ctx, doc, "scenario", {"name", "description", "requires", "matrix", "setup", "workers",
                                          "steps", "expect", "timeout"}, ("name", "workers", "steps"))
        name = _typed(self.ctx, doc, "name", "scenario", (str,))
        if not NAME_RE.match(name):
            raise self.err(f"bad scenario name {name!r} (lower case letters, digits, - and _)", doc, "name", "name")
        requires = self.requirements(doc.get("requires"))
        workers = self.workers(doc["workers"])
        setup = doc.get("setup") or yamlload.Map()
        _keys(self.ctx, setup, "setup", {"knobs", "swap", "cgroup"})
        knobs = ()
        if "knobs" in setup:
            k = setup["knobs"]
            _keys(self.ctx, k, "setup.knobs", set(k) if isinstance(k, yamlload.Map) else set())
            knobs = self.knob_writes(k, "setup.knobs")
        swap = None
        if "swap" in setup:
            s = setup["swap"]
            _keys(self.ctx, s, "setup.swap", {"kind", "size"}, ("kind", "size"))
            if s["kind"] not in SWAP_KINDS:
                raise self.err(f"swap kind must be file or zram, not {s['kind']!r}", s, "kind", "setup.swap.kind")
            swap = {"kind": s["kind"], "npages": parse_size(self.ctx, s, "size", "setup.swap")}
            # both kinds keep their pages in memory: a loop file on tmpfs, or zram
            if swap["npages"] > self.limits.memory_pages:
                raise self.err(f"{s['size']} is more than this machine's memory plus swap "
                               f"({self.limits.memory_pages * PAGE >> 20} MiB)", s, "size", "setup.swap.size")
        cgroup = None
        if "cgroup" in setup:
            c = setup["cgroup"]
            _keys(self.ctx, c, "setup.cgroup", {"limit", "oom_kill"}, ("limit",))
            cgroup = {"limit_pages": parse_size(self.ctx, c, "limit", "setup.cgroup"),
                      "oom_kill": _typed(self.ctx, c, "oom_kill", "setup.cgroup", (bool,), True)}
        steps = self.steps(doc["steps"])
        self.check_order(steps, swap, requires)
        timeout = _at_least(self.ctx, doc, "timeout", "scenario",
                            _typed(self.ctx, doc, "timeout", "scenario", (int, float), 300), 1e-3, "> 0")
        suffix = ",".join(f"{k}={v}" for k, v in self.params.items())
        return Scenario(
            name=f"{name}[{suffix}]" if suffix else name,
            description=str(doc.get("description", "")).strip(),
            file=self.ctx.file, line=doc.line_of("name"), params=dict(self.params), requires=requires,
            knobs=knobs, swap=swap, cgroup=cgroup, workers=workers, steps=steps,
            expect=self.expectations(doc.get("expect")), timeout=float(timeout),
        )

    def check_order(self, steps, swap, requires):
        """Impossible orders: paging out with no swap, fault injection with no
        swap device to inject into, acting on a worker after it exited."""
        exited = set()
        for step in _walk(steps):
            if step.kind == "swapoff" and swap is None:
                raise InputError("swapoff needs setup.swap (no swap device to swap off)",
                                 file=self.ctx.file, line=step.line, field="steps")
            if step.kind == "swapoff":
                swap = None  # nothing to page out to, or inject into, after it
            if step.kind == "do":
                act = step.args["do"]
                if act in ("pageout",) and swap is None:
                    raise InputError("pageout needs setup.swap (no swap device to page out to)",
                                     file=self.ctx.file, line=step.line, field="steps")
                if act == "hwpoison" and not requires.memory_failure:
                    raise InputError("hwpoison steps need requires.memory_failure: true (so that kernels "
                                     "without CONFIG_MEMORY_FAILURE skip)", file=self.ctx.file, line=step.line,
                                     field="steps")
                workers = self.worker_names(step.args["workers"])
                if act != "exit" and workers and workers <= exited:
                    raise InputError(f"{act} acts on workers that exited in an earlier step",
                                     file=self.ctx.file, line=step.line, field="steps")
                if act == "exit":
                    exited |= workers
            if step.kind == "fault_injection" and swap is None:
                raise InputError("fault_injection needs setup.swap (it fails reads of the swap device)",
                                 file=self.ctx.file, line=step.line, field="steps")
            if step.kind == "fault_injection" and not requires.fault_injection:
                raise InputError("fault_injection steps need requires.fault_injection: true (so that kernels "
                                 "without CONFIG_FAIL_MAKE_REQUEST skip)", file=self.ctx.file, line=step.line,
                                 field="steps")


def _walk(steps):
    for s in steps:
        yield s
        yield from _walk(s.children)


def substitute(value, params, file, line=None):
    """${name} in any string: a whole-string reference keeps the value's type."""
    if isinstance(value, yamlload.Map):
        # a key may be a parameter too ({"${knob}": 1}); a key is always a string
        keys = {k: substitute(k, params, file, value.line_of(k)) if isinstance(k, str) else k for k in value}
        if len(set(map(str, keys.values()))) < len(keys):
            raise InputError("two keys of this mapping are the same once parameters are substituted", file=file,
                             line=value.line, field="matrix")
        out = yamlload.Map((str(keys[k]) if keys[k] is not k else k, substitute(v, params, file, value.line_of(k)))
                           for k, v in value.items())
        out.line = value.line
        out.key_lines = {str(keys[k]) if keys[k] is not k else k: line for k, line in (value.key_lines or {}).items()}
        return out
    if isinstance(value, yamlload.Seq):
        out = yamlload.Seq(substitute(v, params, file, value.line_of(i)) for i, v in enumerate(value))
        out.line, out.item_lines = value.line, value.item_lines
        return out
    if isinstance(value, str) and "${" in value:
        whole = re.fullmatch(r"\$\{(\w+)\}", value)
        for ref in re.findall(r"\$\{(\w+)\}", value):
            if ref not in params:
                raise InputError(f"${{{ref}}} is not a matrix parameter", file=file, line=line, field="matrix")
        if whole:
            return params[whole.group(1)]
        return re.sub(r"\$\{(\w+)\}", lambda mo: str(params[mo.group(1)]), value)
    return value


def matrix_points(doc, file, limits):
    """The parameter sets of a file's matrix: a mapping of names to lists is
    their product; a list of mappings names each point (values that go
    together, such as a knob value and the metric it makes true)."""
    matrix = doc.get("matrix") or yamlload.Map()
    too_many = f"more than {limits.matrix_points} points: split the file or list the points that matter"
    if isinstance(matrix, yamlload.Seq):
        if len(matrix) > limits.matrix_points:
            raise InputError(too_many, file=file, line=matrix.line, field="matrix")
        keys = None
        for i, point in enumerate(matrix):
            if not isinstance(point, yamlload.Map) or not point or (keys is not None and set(point) != keys):
                raise InputError("each point of a matrix list maps the same parameter names to values",
                                 file=file, line=matrix.line_of(i), field=f"matrix[{i}]")
            keys = set(point)
        return [dict(point) for point in matrix] or [{}]
    if not isinstance(matrix, yamlload.Map):
        raise InputError("matrix: must map parameter names to lists of values, or list points", file=file,
                         line=doc.line_of("matrix"), field="matrix")
    for k, v in matrix.items():
        if not isinstance(v, list) or not v:
            raise InputError("must be a non-empty list of values", file=file, line=matrix.line_of(k),
                             field=f"matrix.{k}")
    names = list(matrix)
    if math.prod(len(matrix[n]) for n in names) > limits.matrix_points:
        raise InputError(too_many, file=file, line=doc.line_of("matrix"), field="matrix")
    return [dict(zip(names, values)) for values in itertools.product(*(matrix[n] for n in names))]


def load_file(path, limits=None, knobs=None):
    """All scenarios of one file: one per point of its matrix.  `limits`
    (default: this machine's) bound what it may ask for; `knobs` is the KSM
    directory the knob names are checked against."""
    limits = limits or limits_mod.machine()
    knobs = knobs or Knobs()
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=file) from None
    doc = yamlload.load(text, file, limits.yaml_nodes, limits.yaml_depth)
    if not isinstance(doc, yamlload.Map):
        raise InputError("a scenario file is a YAML mapping", file=file, line=1)
    out = []
    for params in matrix_points(doc, file, limits):
        body = substitute(yamlload.Map((k, v) for k, v in doc.items() if k != "matrix"), params, file)
        body.line, body.key_lines = doc.line, doc.key_lines
        out.append(Parser(file, body, params, limits, knobs).scenario())
    return out


def find_files(paths):
    """Scenario files under the given files/directories, sorted; InputError if none."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.yaml")))
        elif p.exists():
            files.append(p)
        else:
            raise InputError("no such file or directory", file=str(p))
    return files


def load_all(paths, keyword=None, limits=None, knobs=None):
    """Every scenario under paths (validated), filtered by -k substring."""
    limits = limits or limits_mod.machine()
    scenarios = [s for f in find_files(paths) for s in load_file(f, limits, knobs)]
    if keyword:
        scenarios = [s for s in scenarios if keyword in s.name]
    return scenarios
