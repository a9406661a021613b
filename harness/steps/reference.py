"""The scenario reference (docs/reference.md), generated from the vocabulary:
`ksm-harness schema --reference` prints it and a unit test keeps the
committed file equal to it."""
import json

from . import ACTIONS, document, kinds
from .base import Action
from .fields import TYPES, specs
from .values import GROUP_METRIC_DOCS, PROCESS_METRIC_DOCS

HEADER = """\
# Scenario reference

Generated from the step classes (harness/steps/) by `ksm-harness schema --reference`; do not edit
by hand. README.md's "Writing scenarios" shows a whole scenario; this lists every key. Every value
that is not a free string may also be a matrix parameter `${name}`. Bounds marked *limit* are
lowered to what this machine can hold (harness/limits.py). Bad input is one line
`file:line: field: message` and exit 2, before anything touches the kernel.
"""

CONDITIONS = """\
## Conditions

`wait`, `check` and `expect` take a condition `[+]NAME OP VALUE[%]`, OP one of `== != >= <= > <`.
NAME is a counter in /sys/kernel/mm/ksm (`pages_shared`, `full_scans`, ...; a knob ksmd changes
itself, such as `pages_to_scan` under the advisor, reads too) or a /proc/vmstat field; a leading
`+` means its change since the steps began. A dotted NAME is a metric of the workers:
`GROUP.REGION.METRIC` or `GROUP.METRIC`, GROUP and REGION may be `all`. A `%` VALUE (per-region
page metrics only) is a share of the region's pages times the processes counted.
"""


def words(value):
    """A default as YAML shows it."""
    return "" if value is None else f"`{value if isinstance(value, str) else json.dumps(value)}`"


def bounds(spec):
    parts = []
    if spec.choices:
        parts.append(" \\| ".join(f"`{c}`" for c in spec.choices))
    if spec.minimum is not None:
        parts.append(f"{'>' if spec.exclusive_minimum else '>='} {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}" + (f" (*limit* {spec.limit})" if spec.limit else ""))
    if spec.excluded:
        parts.append("not " + ", ".join(str(v) for v in spec.excluded))
    if spec.pattern:
        parts.append(f"`{spec.pattern}`")
    return ", ".join(parts)


def table(fields):
    rows = ["| key | type | required | default | bounds | what |", "| --- | --- | --- | --- | --- | --- |"]
    for s in fields:
        rows.append(f"| `{s.key}` | {s.type} | {'yes' if s.required else ''} | {words(s.yaml_default)} | "
                    f"{bounds(s)} | {s.doc} |")
    return "\n".join(rows)


def step_section(cls):
    fields = [s for _, s in specs(cls)]
    if issubclass(cls, Action):
        title = f"### do: {cls.action}"
        fields = [s for s in fields if s.key not in ("workers", "name")]
        extra = f"\n\nOne of {', '.join(f'`{k}`' for k in cls.needs_one_of)} is required." if cls.needs_one_of else ""
        worker = "zygote.py `op_" + cls.op + "`" if cls.op else "the harness itself"
        head = f"{title}\n\n{cls.summary} Done by {worker}.{extra}"
    else:
        body = f" (`{cls.kind}: CONDITION` is short for `{cls.kind}: {{until: CONDITION}}`)" if cls.body else ""
        head = f"### {cls.kind}\n\n{cls.summary}{body}"
    return f"{head}\n\n{table(fields)}\n" if fields else f"{head}\n"


def text():
    out = [HEADER, "## The file\n"]
    for name, (fields, description) in document.PARTS.items():
        out.append(f"### {name}\n\n{description}\n\n{table(fields)}\n")
    out.append("## Steps\n\nA step is a mapping with exactly one of the keys below.\n")
    out += [step_section(cls) for cls in kinds() if not issubclass(cls, Action)]
    common = [s for _, s in specs(Action)]
    out.append(f"## Worker actions\n\n`do: NAME` runs an action in the selected workers; every action "
               f"takes these keys:\n\n{table(common)}\n")
    out += [step_section(cls) for cls in ACTIONS.values()]
    out.append(CONDITIONS)
    out.append("### Metrics of a region: GROUP.REGION.METRIC\n\n| metric | what |\n| --- | --- |\n" +
               "\n".join(f"| `{k}` | {v} |" for k, v in PROCESS_METRIC_DOCS.items()) +
               "\n| `nodeN` | pages on NUMA node N (move_pages) |\n")
    out.append("### Metrics of a group: GROUP.METRIC\n\n| metric | what |\n| --- | --- |\n" +
               "\n".join(f"| `{k}` | {v} |" for k, v in GROUP_METRIC_DOCS.items()) + "\n")
    out.append("## Field types\n\n| type | value |\n| --- | --- |\n" +
               "\n".join(f"| {k} | {v} |" for k, v in TYPES.items()) + "\n")
    return "\n".join(out)
