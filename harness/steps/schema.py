"""The JSON schema of a scenario file, generated from the vocabulary: the
step and action classes (harness/steps/) and the document parts
(document.py).  `ksm-harness schema` prints it; harness/schema/
scenario.schema.json is that output, committed (a unit test keeps them equal).

A schema describes the file as written, before the matrix is substituted: so
every value that is not a free string may also be a ${param}.  What a schema
cannot say (that a region exists in the selected workers' group, that pageout
comes after setup.swap, that until_done is inside a concurrent step) the
loader checks, at file:line.
"""
import json
from typing import Any, Dict

from . import ACTIONS, STEPS, document
from .base import Action
from .fields import PAGE, Spec, specs
from .values import PAGES_SCHEMA_RE, SELECTOR_SCHEMA_RE

DRAFT = "https://json-schema.org/draft/2020-12/schema"
PARAM = {"$ref": "#/$defs/param"}


def ref(name):
    return {"$ref": f"#/$defs/{name}"}


def array(items, min_items=0):
    out: Dict[str, Any] = {"type": "array", "items": items}
    if min_items:
        out["minItems"] = min_items
    return out


def bounded(out, spec):
    """out with spec's bounds (the static ones: a machine's limit may be lower)."""
    if spec.minimum is not None:
        out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if spec.excluded:
        out["not"] = {"enum": list(spec.excluded)}
    return out


# type -> the schema of a value of that type, before ${param} is allowed
VALUE_SCHEMAS = {
    "int": lambda s: bounded({"type": "integer"}, s),
    "number": lambda s: bounded({"type": "number"}, s),
    "bool": lambda s: {"const": s.choices[0]} if s.choices else {"type": "boolean"},
    "flag": lambda s: {"type": ["boolean", "integer"], "minimum": 0, "maximum": 1},
    "str": lambda s: dict({"type": "string"}, **({"pattern": f"^{s.pattern}$"} if s.pattern else {})),
    "choice": lambda s: {"type": "string", "enum": list(s.choices)},
    "name": lambda s: {"type": "string", "pattern": f"^{document.NAME_PATTERN}$"},
    "regex": lambda s: {"type": "string"},
    "region": lambda s: bounded({"type": "string"}, s),
    "strings": lambda s: array({"type": "string"}),
    "version": lambda s: {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+){0,2}$"}, {"type": "number"}]},
    "knob_value": lambda s: {"type": ["integer", "string"]},
    "pages": lambda s: {"anyOf": [{"type": "string", "pattern": PAGES_SCHEMA_RE}, {"type": "integer", "minimum": 0}]},
    "percent": lambda s: {"type": "string", "pattern": r"^\s*(100|[0-9]{1,2})%\s*$"},
    "size": lambda s: ref("size"),
    "condition": lambda s: ref("condition"),
    "workers": lambda s: ref("workerSelector"),
    "pattern": lambda s: ref("pattern"),
    "wait_for": lambda s: ref("waitFor"),
    "knob_writes": lambda s: ref("knobValues"),
    "requires": lambda s: ref("requires"),
    "setup": lambda s: ref("setup"),
    "swap": lambda s: ref("swap"),
    "cgroup": lambda s: ref("cgroup"),
    "cpuset": lambda s: ref("cpuset"),
    "limit": lambda s: {"type": "object", "additionalProperties": False, "properties": {"limit": ref("size")},
                        "required": ["limit"]},
    "steps": lambda s: array(ref("step")),
    "worker_groups": lambda s: array(ref("workerGroup"), 1),
    "regions": lambda s: array(ref("region"), 1),
    "expectations": lambda s: array(ref("expectation")),
    "matrix": lambda s: {"oneOf": [
        {"type": "object", "description": "Parameter names mapped to lists of values: one scenario per "
                                          "combination.", "additionalProperties": {"type": "array", "minItems": 1}},
        {"type": "array", "minItems": 1, "description": "A list of points, each mapping the same parameter names "
                                                        "to values that go together.",
         "items": {"type": "object", "minProperties": 1}}]},
}
# types whose values a ${param} cannot stand for in a schema (any string already matches, or structure)
NO_PARAM = {"str", "regex", "region", "name", "strings", "steps", "worker_groups", "regions", "expectations",
            "matrix", "requires", "setup", "swap", "cgroup", "cpuset", "limit", "knob_writes", "size", "condition",
            "workers", "pattern", "wait_for"}


def describe(spec):
    """The field's line, with its default (and the machine's limit) where it has one."""
    text = spec.doc
    if spec.default is not None and not spec.required:
        text += f" Default: {json.dumps(spec.yaml_default)}."
    if spec.limit:
        text += f" At most this machine's limits.{spec.limit}."
    return text


def field_schema(spec: Spec):
    value = VALUE_SCHEMAS[spec.type](spec)
    out = {"description": describe(spec)}
    if spec.type in NO_PARAM:
        out.update(value)
    else:
        out["anyOf"] = [value, PARAM]
    return out


def object_schema(fields, description, extra=None):
    out: Dict[str, Any] = {"type": "object", "additionalProperties": False,
                           "properties": dict(extra or {}, **{s.key: field_schema(s) for s in fields})}
    required = [s.key for s in fields if s.required] + [k for k in (extra or {}) if k == "do"]
    if required:
        out["required"] = sorted(set(required), key=required.index)
    out["description"] = description
    return out


def step_schema(cls):
    fields = [spec for _, spec in specs(cls)]
    if cls.body:  # wait: COND, or wait: {until, timeout}
        body = object_schema(fields, f"{cls.kind}: with a timeout")
        return {"type": "object", "additionalProperties": False,
                "properties": {cls.kind: {"description": "A condition, or {until, timeout}.",
                                          "anyOf": [ref("condition"), body]}},
                "required": [cls.kind], "description": cls.summary}
    if issubclass(cls, Action):
        out = object_schema(fields, cls.summary, {"do": {"const": cls.action, "description": cls.summary}})
        if cls.needs_one_of:
            out["anyOf"] = [{"required": [k]} for k in cls.needs_one_of]
        return out
    out = object_schema(fields, cls.summary)
    if cls.kind == "concurrent":
        out["properties"]["concurrent"]["minItems"] = 2
    return out


def defs():
    out = {
        "param": {"type": "string", "pattern": r"^\$\{\w+\}$",
                  "description": "A matrix parameter, replaced with its value (keeping its type)."},
        "size": {"description": f"A size: bytes (integer, a multiple of the {PAGE}-byte page), '4M', '512K', "
                                f"'1G', or '100 pages'.",
                 "anyOf": [{"type": "integer", "minimum": PAGE, "multipleOf": PAGE},
                           {"type": "string", "pattern": r"^(\d+\s*[KMGkmg]?(i?[Bb])?|\d+\s*pages|\$\{\w+\})$"}]},
        "condition": {"type": "string", "description": (
            "`[+]NAME OP VALUE[%]`. NAME is a /sys/kernel/mm/ksm counter or /proc/vmstat field (a leading + "
            "means the change since the scenario started; a knob that ksmd changes itself, such as "
            "pages_to_scan, reads too), GROUP.METRIC or GROUP.REGION.METRIC (see the reference's metrics); "
            "GROUP and REGION may be 'all'. OP is one of == != >= <= > <. A % value (per-region page metrics "
            "only) is a percentage of the region's pages times its processes. A ${param} anywhere is checked "
            "after substitution. Examples: 'pages_sharing >= 100', '+full_scans >= 2', 'a.r.ksm == 100%'."),
            "anyOf": [{"pattern": r"^\s*\+?[A-Za-z_][\w.\[\]:]*\s*(==|!=|>=|<=|>|<)\s*-?\d+%?\s*$"},
                      {"pattern": r"\$\{\w+\}"}]},
        "knobValues": {"type": "object", "minProperties": 1,
                       "description": "/sys/kernel/mm/ksm knob names mapped to the values to write, in order.",
                       "additionalProperties": {"type": ["integer", "string"]}},
        "workerSelector": {"description": "Which workers: 'all', NAME, NAME[i] or NAME[i:j], or a list of these.",
                           "anyOf": [{"type": "string", "pattern": SELECTOR_SCHEMA_RE},
                                     array({"type": "string", "pattern": SELECTOR_SCHEMA_RE})]},
    }
    for name, (fields, description) in document.PARTS.items():
        if name != "scenario":
            out[name] = object_schema(fields, description)
    kinds_ = document.PATTERN[0].choices
    out["pattern"] = {"description": out["pattern"].pop("description"),
                      "anyOf": [{"type": "string", "enum": list(kinds_)}, out["pattern"]]}
    expectation = document.PARTS["expectation"]
    out["expectation"] = {"description": expectation[1],
                          "anyOf": [ref("condition")] + [object_schema([s], s.doc) | {"required": [s.key]}
                                                         for s in expectation[0]]}
    out["step"] = {"description": f"One step: exactly one of {', '.join(STEPS)}.",
                   "oneOf": [step_schema(cls) if cls is not Action else ref("doStep") for cls in STEPS.values()]}
    out["doStep"] = {"description": f"A worker action: do: one of {', '.join(ACTIONS)}.",
                     "oneOf": [step_schema(cls) for cls in ACTIONS.values()]}
    return out


def schema():
    """The JSON schema of a scenario file."""
    fields, description = document.PARTS["scenario"]
    top = object_schema(fields, description + " (harness/scenario.py also checks what a schema cannot: that a "
                                              "region exists in a worker group, that pageout has setup.swap, ...)")
    return {"$schema": DRAFT, "$id": "https://ksm-harness/schema/scenario.schema.json",
            "title": "ksm-harness scenario", **top, "$defs": defs()}


def text():
    """The schema as committed: indented JSON, one final newline."""
    return json.dumps(schema(), indent=2) + "\n"

