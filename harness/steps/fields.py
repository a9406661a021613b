"""Fields of the scenario vocabulary: how a YAML value is checked, and what
the JSON schema, the reference and Hypothesis strategies read about it.

Every step and action class (harness/steps/) is a frozen dataclass whose
fields carry a Spec in their metadata: the YAML key, the value's type, its
bounds or choices, its default and one line saying what it is.  parse_fields()
turns a YAML mapping into the field values by these specs, with one
`file:line: field: message` InputError for the first thing wrong; dump_value()
turns a value back into YAML.
"""
import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .. import pages, yamlload
from ..errors import InputError

PAGE = pages.PAGE_SIZE  # the worker maps with the system's page size: sizes are counted in it
SIZE_RE = re.compile(r"^(\d+)\s*([KMGkmg]?)(i?[Bb])?$")
PAGES_SIZE_RE = re.compile(r"^\s*(\d+)\s*pages$", re.ASCII)  # "100 pages"
PATH_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

# the types a field can have (Spec.type), with the Python values they parse to
TYPES = {
    "int": "int",
    "number": "int or float",
    "bool": "bool",
    "str": "str",
    "choice": "str, one of Spec.choices",
    "size": "int (pages) from '4M', '512K', '1G', bytes or '100 pages'",
    "condition": "values.Condition from '[+]name op value[%]'",
    "workers": "tuple of values.Selector from NAME, NAME[i], NAME[i:j], all, or a list of them",
    "region": "str: a region every selected worker maps, or all",
    "pages": "values.PageRange from all, 10-19, 7, 50% or 'last 50%'",
    "pattern": "values.Pattern from a kind or {kind, seed, groups}",
    "wait_for": "values.WaitFor from {knob, value, timeout}",
    "knob_writes": "tuple of (name, value) str pairs from a mapping of knob names to values",
    "percent": "int 0..100 from '50%'",
    "steps": "tuple of steps",
    "flag": "int 0 or 1 from true/false/1/0",
    "limit": "int (pages) from {limit: SIZE}",
    # the document around the steps (document.py): parsed by scenario.py
    "name": "str: lower case letters, digits, - and _",
    "regex": "str: a Python regular expression",
    "strings": "list of str",
    "version": "str: a kernel version such as 3.9",
    "knob_value": "str from an int or a word",
    "matrix": "parameter names to lists of values, or a list of points",
    "requires": "the requires part",
    "setup": "the setup part",
    "swap": "the setup.swap part",
    "cgroup": "the setup.cgroup part",
    "cpuset": "the setup.cpuset part",
    "worker_groups": "a non-empty list of worker groups",
    "regions": "a non-empty list of regions",
    "expectations": "a list of expectations",
}


@dataclass(frozen=True)
class Spec:
    """What one field of a step or action is, machine-readable."""

    key: str  # the YAML key
    type: str  # one of TYPES
    doc: str  # one line: what it is (the schema's description, the reference's text)
    required: bool = False  # the mapping must have the key
    default: Any = None  # the value when the key is absent (None: nothing, or see doc)
    minimum: Optional[float] = None  # least value (int, number)
    maximum: Optional[float] = None  # greatest value (int, number); see limit
    limit: Optional[str] = None  # the harness.limits.Limits attribute that is the maximum on this machine
    exclusive_minimum: bool = False  # the minimum itself is not allowed ("> 0")
    excluded: Tuple[Any, ...] = ()  # values inside the bounds that are not allowed
    choices: Tuple[str, ...] = ()  # the allowed words (choice)
    pattern: Optional[str] = None  # a regex a str must match in full
    message: Optional[str] = None  # the error for a value out of bounds/choices/pattern: {value!r}, {key}

    @property
    def yaml_default(self):
        """The default as it would be written in YAML (None: no default)."""
        return None if self.default is None else dump_value(self, self.default)

    def bounds(self, limits=None):
        """(minimum, maximum) in force: the machine's limit where there is one."""
        high = getattr(limits, self.limit) if limits is not None and self.limit else self.maximum
        return self.minimum, high


def field(key, type, doc, **kw):
    """A dataclass field described by a Spec; absent keys take spec.default."""
    spec = Spec(key, type, doc, **kw)
    return dataclasses.field(default=spec.default, metadata={"spec": spec})


def measure_field():
    """The `measure` key a wait or an action step may carry."""
    return field("measure", "str", "Record this step's time, and MiB/s over the pages it covers, as a measurement "
                                   "of this name in the results (JSON, KTAP, LAVA).", pattern=r"[A-Za-z0-9_-]+",
                 message="a measurement name is letters, digits, _ and -; not {value!r}")


def specs(cls) -> Tuple[Tuple[str, Spec], ...]:
    """(attribute name, Spec) of every described field of a step or action class, in order."""
    return tuple((f.name, f.metadata["spec"]) for f in dataclasses.fields(cls) if "spec" in f.metadata)


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


def check_keys(ctx, m, where, allowed, required=()):
    """m is a mapping with only `allowed` keys and every `required` one."""
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


def typed(ctx, m, key, where, types, default=None):
    """m[key] if it is one of `types` (a bool is not an int), default if absent."""
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


def at_least(ctx, m, key, where, value, low, what=None):
    """value >= low, or an InputError naming the field."""
    if value is not None and value < low:
        raise ctx.error(f"must be {what or f'>= {low}'}, not {value!r}", m, key, f"{where}.{key}")
    return value


def within(ctx, m, key, where, value, low, high):
    if value is not None and not low <= value <= high:
        raise ctx.error(f"must be {low}..{high}, not {value!r}", m, key, f"{where}.{key}")
    return value


def parse_size(ctx, m, key, where):
    """'4M', '512K', '1G', 4096 (bytes) or '100 pages' -> pages."""
    v = m[key]
    field_ = f"{where}.{key}"
    if isinstance(v, str) and PAGES_SIZE_RE.match(v):
        n = int(PAGES_SIZE_RE.match(v).group(1))
    elif isinstance(v, int) and not isinstance(v, bool):
        n = v // PAGE if v % PAGE == 0 else -1
    elif isinstance(v, str) and SIZE_RE.match(v.strip()):
        num, unit, _ = SIZE_RE.match(v.strip()).groups()
        nbytes = int(num) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
        n = nbytes // PAGE if nbytes % PAGE == 0 else -1
    else:
        raise ctx.error(f"bad size {v!r} (use e.g. 4M, 512K, 1G or '100 pages')", m, key, field_)
    if n <= 0:
        raise ctx.error(f"size {v!r} must be a positive multiple of the {PAGE}-byte page", m, key, field_)
    return n


def dump_size(npages):
    return f"{npages} pages"


def _bounded(p, m, where, spec, value):
    """A number within the spec's bounds, or the error the spec names."""
    low, high = spec.bounds(p.limits)
    bad = value in spec.excluded or (low is not None and (value <= low if spec.exclusive_minimum else value < low)) \
        or (high is not None and value > high)
    if not bad:
        return value
    if spec.message:
        raise p.err(spec.message.format(value=value, key=spec.key), m, spec.key, f"{where}.{spec.key}")
    if low is not None and high is not None and value not in spec.excluded:
        what = f"{low}..{high}"
    elif spec.exclusive_minimum and value <= low:
        what = f"> {low}"
    elif low is not None and value < low:
        what = f">= {low}"
    elif high is not None and value > high:
        what = f"<= {high}"
    else:
        what = f"other than {value!r}"
    raise p.err(f"must be {what}, not {value!r}", m, spec.key, f"{where}.{spec.key}")


def _number(types):
    def parse(p, m, where, spec, values):
        return _bounded(p, m, where, spec, typed(p.ctx, m, spec.key, where, types))
    return parse


def _word(p, m, where, spec, values):
    v = m[spec.key]
    ok = v in spec.choices if spec.choices else isinstance(v, str)
    if ok and spec.pattern:
        ok = bool(re.fullmatch(spec.pattern, v))
    if not ok:
        if not spec.message:
            typed(p.ctx, m, spec.key, where, (str,))
        message = spec.message or f"must match {spec.pattern}, not {v!r}"
        raise p.err(message.format(value=v, key=spec.key), m, spec.key, f"{where}.{spec.key}")
    return v


def _size(p, m, where, spec, values):
    return parse_size(p.ctx, m, spec.key, where)


def _bool(p, m, where, spec, values):
    v = typed(p.ctx, m, spec.key, where, (bool,))
    if spec.choices and v not in spec.choices:
        raise p.err(spec.message.format(value=v, key=spec.key), m, spec.key, f"{where}.{spec.key}")
    return v


# type -> parse(p, m, where, spec, values so far) for the types parsed here;
# values.py adds the types whose values are classes of their own
PARSERS: Dict[str, Callable] = {
    "int": _number((int,)), "number": _number((int, float)), "bool": _bool, "str": _word, "choice": _word,
    "size": _size,
}
# type -> value -> its YAML form, for the types whose value is not already YAML
DUMPERS: Dict[str, Callable] = {"size": dump_size}


def parse_fields(cls, p, m, where, skip=()):
    """The field values of `cls` read from mapping m by their specs (absent
    keys take their defaults).  `skip`: attributes the caller fills itself."""
    values = {}
    for name, spec in specs(cls):
        if name in skip:
            continue
        if spec.key not in m:
            if spec.required:
                raise p.err(f"missing required key {spec.key!r}", m, None, f"{where}.{spec.key}")
            values[name] = spec.default
            continue
        values[name] = PARSERS[spec.type](p, m, where, spec, values)
    return values


def dump_value(spec, value):
    return DUMPERS.get(spec.type, lambda v: v)(value)


def dump_fields(obj, skip=()):
    """The YAML mapping of obj's described fields that differ from their defaults."""
    out = {}
    for name, spec in specs(type(obj)):
        value = getattr(obj, name)
        if name in skip or (value == spec.default and not spec.required):
            continue
        out[spec.key] = dump_value(spec, value)
    return out
