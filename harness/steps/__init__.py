"""The registry of step kinds: every scenario step and worker action is one
class here (harness/steps/machine.py, control.py, actions.py), a frozen
dataclass whose fields describe its YAML keys (fields.Spec).

    STEPS["knob"], ACTIONS["fork"]      the classes, by YAML key / `do:` value
    kinds()                             every class, steps then actions
    fields.specs(cls)                   (attribute, Spec) of each field: key, type, bounds, default, doc
    parse(p, m, where)                  the step of a YAML mapping (p: scenario.Parser)
    step.dump()                         the mapping back; step.run(scenario_run) carries it out

Adding an action is one Action subclass in actions.py, listed in ACTIONS,
and its worker half (zygote.py op_NAME) if the worker does the work.
"""
from typing import Dict, Iterator, Tuple, Type

from .. import yamlload
from ..errors import InputError
from . import actions, control, machine
from .base import Action, Order, Step
from .fields import Spec, specs

STEPS: Dict[str, Type[Step]] = {cls.kind: cls for cls in (
    machine.Knob, machine.Wait, Action, control.Concurrent, machine.Check, control.Repeat,
    machine.FaultInjection, machine.Cgroup, machine.Swapoff)}
ACTIONS: Dict[str, Type[Action]] = {cls.action: cls for cls in (
    actions.Write, actions.Advise, actions.Mprotect, actions.Userfaultfd, actions.Pageout, actions.Touch, actions.Verify, actions.Fork,
    actions.PrctlMerge, actions.Exec, actions.Remap, actions.Mremap, actions.Migrate, actions.Exit, actions.Hwpoison, actions.Provoke)}

__all__ = ["ACTIONS", "STEPS", "Action", "Order", "Spec", "Step", "kinds", "parse", "specs", "walk"]


def kinds() -> Tuple[Type[Step], ...]:
    """Every step class but the `do:` base, then every action class."""
    return tuple(cls for cls in STEPS.values() if cls is not Action) + tuple(ACTIONS.values())


def parse(p, m, where, in_concurrent=False) -> Step:
    """The step of mapping m: the one key of STEPS it has names its class."""
    # `repeat: N` beside `concurrent:` is how often the race runs, not a repeat step
    keys = set(m) & set(STEPS) if isinstance(m, yamlload.Map) else set()
    if "concurrent" in keys:
        keys.discard("repeat")
    if len(keys) != 1:
        raise InputError(f"a step is a mapping with exactly one of: {', '.join(STEPS)}", file=p.ctx.file,
                         line=p.ctx.line_at(m, where), field=where)
    (kind,) = keys
    if kind != "do":
        return STEPS[kind].parse(p, m, where, in_concurrent)
    action = m["do"]
    if not isinstance(action, str) or action not in ACTIONS:
        raise p.err(f"unknown action {action!r} (expected one of: {', '.join(ACTIONS)})", m, "do", f"{where}.do")
    return ACTIONS[action].parse(p, m, where, in_concurrent)


def walk(steps) -> Iterator[Step]:
    """Every step, and the steps inside it, in file order."""
    for s in steps:
        yield s
        yield from walk(s.children)
