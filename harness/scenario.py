"""Scenario files: load, validate, expand the parameter matrix.

Everything is checked here, before anything touches the kernel: an unknown
key, a wrong type, a bad size or an impossible order is an InputError naming
file:line and the field (exit code 2).  The format is documented in README.md
("Writing scenarios") and described by harness/schema/scenario.schema.json.
"""
import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import yaml

from . import limits as limits_mod, steps as steps_mod, yamlload
from .steps import document
from .steps.document import SWAP_KINDS
from .errors import InputError
from .knobs import Knobs
from .steps import Step
from .steps.actions import MAX_NODE
from .steps.fields import (PAGE, Ctx, at_least as _at_least, check_keys as _keys, dump_size, parse_size,
                           typed as _typed, within as _within)
from .steps.values import (NODE_METRIC_RE, Condition, Pattern, check_metric, dump_pattern, parse_condition,
                           parse_knob_writes, parse_pattern)

__all__ = ["Condition", "NODE_METRIC_RE", "PAGE", "Pattern", "Step", "Scenario", "dump", "dump_text", "load_file",
           "load_all"]

NAME_RE = re.compile(f"^{document.NAME_PATTERN}$")


@dataclass(frozen=True)
class Region:
    name: str  # region name, unique within its worker group
    npages: int  # size in pages
    pattern: Pattern  # the content it is filled with
    mergeable: bool  # madvise(MADV_MERGEABLE) after the fill
    node: Optional[int]  # NUMA node to place it on (mbind), or None
    thp: Optional[bool]  # MADV_HUGEPAGE (True) / MADV_NOHUGEPAGE (False) / leave (None)
    memfd: bool = False  # MAP_PRIVATE of a memfd (shmem) instead of anonymous memory
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class WorkerGroup:
    name: str  # group name: workers are NAME[0] .. NAME[count-1]
    count: int  # how many workers
    regions: Tuple[Region, ...]
    prctl_merge: bool  # PR_SET_MEMORY_MERGE=1 before mapping (6.4+)
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Expectation:
    kind: str  # that | data | crash
    text: str  # as shown in results
    line: int = field(default=0, compare=False)
    cond: Optional[Condition] = None  # that: the condition that must hold at the end
    mode: Optional[str] = None  # data: intact | sigbus-or-intact
    title: Optional[str] = None  # crash: a regex of the kernel report's title the scenario provokes


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
    file: str = field(compare=False)  # where it was loaded from (not its meaning)
    line: int = field(compare=False)
    params: Mapping[str, Any]  # this point of the matrix
    requires: Requirements
    knobs: Tuple[Tuple[str, str], ...]  # setup.knobs, written in order after run=2
    swap: Optional[Mapping[str, Any]]  # setup.swap: kind, npages
    cgroup: Optional[Mapping[str, Any]]  # setup.cgroup: limit (bytes)
    workers: Tuple[WorkerGroup, ...]
    steps: Tuple[Step, ...]
    expect: Tuple[Expectation, ...]
    timeout: float  # seconds for the whole scenario
    cpuset: Optional[Mapping[str, Any]] = None  # setup.cpuset: mems, cpus (None: the parent's)


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
        self.memfd_regions = set()  # (group name, region name) of the regions mapped from a memfd

    def err(self, msg, node, key=None, field=None):
        return self.ctx.error(msg, node, key, field)

    def requirements(self, m):
        where = "requires"
        if m is None:
            m = yamlload.Map()
        _keys(self.ctx, m, where, *document.keys("requires"))
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

    def workers(self, seq):
        if not isinstance(seq, yamlload.Seq) or not seq:
            raise InputError("must be a non-empty list of worker groups", file=self.ctx.file,
                             line=self.ctx.line_at(seq, "workers"), field="workers")
        out, mapped = [], 0
        for i, m in enumerate(seq):
            where = f"workers[{i}]"
            _keys(self.ctx, m, where, *document.keys("workerGroup"))
            name = _typed(self.ctx, m, "name", where, (str,))
            if not NAME_RE.match(name) or name == "all":
                raise self.err(f"bad worker group name {name!r} (lower case, not 'all')", m, "name", f"{where}.name")
            if name in self.groups:
                raise self.err(f"worker group {name!r} defined twice", m, "name", f"{where}.name")
            count = _typed(self.ctx, m, "count", where, (int,), 1)
            if not 1 <= count <= document.MAX_WORKERS:
                raise self.err(f"count must be 1..{document.MAX_WORKERS}", m, "count", f"{where}.count")
            regions = []
            rseq = m["regions"]
            if not isinstance(rseq, yamlload.Seq) or not rseq:
                raise self.err("must be a non-empty list", m, "regions", f"{where}.regions")
            for j, r in enumerate(rseq):
                rw = f"{where}.regions[{j}]"
                _keys(self.ctx, r, rw, *document.keys("region"))
                rname = _typed(self.ctx, r, "name", rw, (str,))
                if not NAME_RE.match(rname) or rname == "all":
                    raise self.err(f"bad region name {rname!r}", r, "name", f"{rw}.name")
                if any(x.name == rname for x in regions):
                    raise self.err(f"region {rname!r} defined twice", r, "name", f"{rw}.name")
                pattern = parse_pattern(self, r, "pattern", rw) if "pattern" in r else Pattern("same", 1, 1)
                node = _within(self.ctx, r, "node", rw, _typed(self.ctx, r, "node", rw, (int,)), 0, MAX_NODE)
                regions.append(Region(rname, parse_size(self.ctx, r, "size", rw), pattern,
                                      _typed(self.ctx, r, "mergeable", rw, (bool,), True), node,
                                      _typed(self.ctx, r, "thp", rw, (bool,)),
                                      _typed(self.ctx, r, "memfd", rw, (bool,), False), r.line))
            self.groups[name] = {r.name for r in regions}
            self.group_sizes[name] = count
            self.group_pages[name] = {r.name: r.npages for r in regions}
            self.memfd_regions |= {(name, r.name) for r in regions if r.memfd}
            mapped += count * sum(r.npages for r in regions)
            if mapped > self.limits.memory_pages:
                raise self.err(f"the workers map {mapped * PAGE >> 20} MiB in all, more than this machine's "
                               f"memory plus swap ({self.limits.memory_pages * PAGE >> 20} MiB): make regions "
                               f"smaller or fewer", m, "count" if "count" in m else "regions", f"{where}.count")
            out.append(WorkerGroup(name, count, tuple(regions),
                                   _typed(self.ctx, m, "prctl_merge", where, (bool,), False), m.line))
        return tuple(out)

    def step(self, m, where, in_concurrent=False):
        return steps_mod.parse(self, m, where, in_concurrent)

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
                check_metric(self.ctx, cond, self.groups, m, "that", f"{where}.that")
                out.append(Expectation("that", cond.text, m.line, cond=cond))
            elif kind == "data":
                if m["data"] not in ("intact", "sigbus-or-intact"):
                    raise self.err("data: must be 'intact' or 'sigbus-or-intact'", m, "data", f"{where}.data")
                out.append(Expectation("data", f"data {m['data']}", m.line, mode=m["data"]))
            elif kind == "crash":
                title = m["crash"]
                if not isinstance(title, str):
                    raise self.err("crash: wants a title regex, e.g. 'WARNING in remove_stable_node'", m,
                                   "crash", f"{where}.crash")
                try:
                    re.compile(title)
                except re.error as exc:
                    raise self.err(f"bad regex: {exc}", m, "crash", f"{where}.crash") from None
                out.append(Expectation("crash", f"crash /{title}/", m.line, title=title))
            else:
                raise self.err("knob_writes is not an expectation; use a knob step with expect:", m, kind, where)
        if not any(e.kind == "data" for e in out):
            # every scenario verifies every page at the end, unless it says how
            out.append(Expectation("data", "data intact", seq.line, mode="intact"))
        return tuple(out)

    def scenario(self):
        doc = self.doc
        _keys(self.ctx, doc, "scenario", *document.keys("scenario"))
        name = _typed(self.ctx, doc, "name", "scenario", (str,))
        if not NAME_RE.match(name):
            raise self.err(f"bad scenario name {name!r} (lower case letters, digits, - and _)", doc, "name", "name")
        requires = self.requirements(doc.get("requires"))
        workers = self.workers(doc["workers"])
        setup = doc.get("setup") or yamlload.Map()
        _keys(self.ctx, setup, "setup", *document.keys("setup"))
        knobs = ()
        if "knobs" in setup:
            k = setup["knobs"]
            _keys(self.ctx, k, "setup.knobs", set(k) if isinstance(k, yamlload.Map) else set())
            knobs = parse_knob_writes(self, k, "setup.knobs")
        swap = None
        if "swap" in setup:
            s = setup["swap"]
            _keys(self.ctx, s, "setup.swap", *document.keys("swap"))
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
            _keys(self.ctx, c, "setup.cgroup", *document.keys("cgroup"))
            cgroup = {"limit_pages": parse_size(self.ctx, c, "limit", "setup.cgroup"),
                      "oom_kill": _typed(self.ctx, c, "oom_kill", "setup.cgroup", (bool,), True)}
        cpuset = self.cpuset(setup["cpuset"]) if "cpuset" in setup else None
        steps = self.steps(doc["steps"])
        self.check_order(steps, swap, requires)
        timeout = _at_least(self.ctx, doc, "timeout", "scenario",
                            _typed(self.ctx, doc, "timeout", "scenario", (int, float), document.DEFAULT_TIMEOUT),
                            1e-3, "> 0")
        suffix = ",".join(f"{k}={v}" for k, v in self.params.items())
        return Scenario(
            name=f"{name}[{suffix}]" if suffix else name,
            description=str(doc.get("description", "")).strip(),
            file=self.ctx.file, line=doc.line_of("name"), params=dict(self.params), requires=requires,
            knobs=knobs, swap=swap, cgroup=cgroup, workers=workers, steps=steps,
            expect=self.expectations(doc.get("expect")), timeout=float(timeout), cpuset=cpuset,
        )

    def cpuset(self, c):
        """setup.cpuset: node and CPU lists as the kernel reads them ("0-1,3")."""
        where = "setup.cpuset"
        _keys(self.ctx, c, where, *document.keys("cpuset"))
        out = {}
        for spec in document.CPUSET:
            value = _typed(self.ctx, c, spec.key, where, (str, int))
            if value is not None and not re.fullmatch(spec.pattern, str(value)):
                raise self.err(spec.message.format(value=value), c, spec.key, f"{where}.{spec.key}")
            out[spec.key] = None if value is None else str(value)
        return out

    def check_order(self, steps, swap, requires):
        """Impossible orders: paging out with no swap, fault injection with no
        swap device to inject into, acting on a worker after it exited."""
        order = steps_mod.Order(self.ctx.file, requires, self.group_sizes, swap is not None, self.memfd_regions)
        for step in steps_mod.walk(steps):
            step.check_order(order)


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


def dump(sc):
    """The YAML mapping sc came from, defaults left out: load_file() of it
    gives a Scenario equal to sc (a matrix point is a matrix of that one point)."""
    out = {"name": sc.name.partition("[")[0] if sc.params else sc.name}
    if sc.description:
        out["description"] = sc.description
    requires = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(sc.requires).items()
                if v not in (None, False, ()) and not (k == "numa_nodes" and v == 1)}
    if requires:
        out["requires"] = requires
    if sc.params:
        out["matrix"] = [dict(sc.params)]
    setup = {}
    if sc.knobs:
        setup["knobs"] = dict(sc.knobs)
    if sc.swap:
        setup["swap"] = {"kind": sc.swap["kind"], "size": dump_size(sc.swap["npages"])}
    if sc.cgroup:
        setup["cgroup"] = {"limit": dump_size(sc.cgroup["limit_pages"]), "oom_kill": sc.cgroup["oom_kill"]}
    if sc.cpuset:
        setup["cpuset"] = {k: v for k, v in sc.cpuset.items() if v is not None}
    if setup:
        out["setup"] = setup
    out["workers"] = [{"name": g.name, "count": g.count, "prctl_merge": g.prctl_merge,
                       "regions": [dump_region(r) for r in g.regions]} for g in sc.workers]
    out["steps"] = [step.dump() for step in sc.steps]
    out["expect"] = [e.text if e.kind == "that" else {e.kind: e.mode if e.kind == "data" else e.title}
                     for e in sc.expect]
    out["timeout"] = sc.timeout
    return out


def dump_region(r):
    out = {"name": r.name, "size": dump_size(r.npages), "pattern": dump_pattern(r.pattern), "mergeable": r.mergeable}
    if r.node is not None:
        out["node"] = r.node
    if r.thp is not None:
        out["thp"] = r.thp
    if r.memfd:
        out["memfd"] = r.memfd
    return out


def dump_text(sc):
    """dump(sc) as YAML text: a scenario file of its own."""
    return yaml.safe_dump(dump(sc), sort_keys=False)


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
