"""The two bases of the vocabulary: a harness step and a worker action.

A step kind is a frozen dataclass whose described fields (fields.field) are
its YAML keys.  The class parses its mapping, dumps itself back to it, says
which knobs it needs from the machine and what it must come after (swap, a
live worker), and runs on a ScenarioRun (harness/runner.py).  A worker action
(`do: NAME`) also says which command the worker runs (harness/zygote.py's
op_NAME, its worker half) and reads the reply.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from ..errors import InputError
from . import values
from .fields import check_keys, dump_fields, field, measure_field, parse_fields, specs


@dataclass
class Order:
    """What the steps before this one left, for the load-time order checks."""

    file: str
    requires: Any  # scenario.Requirements
    group_sizes: Dict[str, int]  # worker group -> count
    swap: bool  # a swap device is there (setup.swap, and no swapoff since)
    memfd: set = dataclasses.field(default_factory=set)  # (group, region) of the regions mapped from a memfd
    exited: set = dataclasses.field(default_factory=set)  # workers ("a[0]") an exit step ended
    forked: set = dataclasses.field(default_factory=set)  # workers ("a[0]") a fork step acted on

    def refuse(self, step, message):
        return InputError(message, file=self.file, line=step.line, field="steps")


@dataclass(frozen=True)
class Step:
    """Base of every step kind; `kind` is the key that names it."""

    kind: ClassVar[str]  # the YAML key that makes a mapping this step ("knob", "do", ...)
    summary: ClassVar[str]  # one line for the schema and the reference
    body: ClassVar[Optional[str]] = None  # the key whose mapping holds the fields (wait: {until, timeout})
    line: int = dataclasses.field(default=0, compare=False)  # where it is in the file (not its meaning)

    @classmethod
    def parse(cls, p, m, where, in_concurrent=False):
        """The step of mapping m (a step mapping at `where`), checked."""
        check_keys(p.ctx, m, where, cls.keys(), cls.required())
        return cls(line=m.line, **parse_fields(cls, p, m, where))

    @classmethod
    def keys(cls):
        return {spec.key for _, spec in specs(cls)}

    @classmethod
    def required(cls):
        return tuple(spec.key for _, spec in specs(cls) if spec.required)

    def dump(self) -> Dict[str, Any]:
        """The YAML mapping this step came from (defaults left out)."""
        return dump_fields(self)

    @property
    def title(self):
        return getattr(self, "name", None) or self.kind

    @property
    def children(self) -> Tuple["Step", ...]:
        """Steps inside this one (repeat, concurrent)."""
        return ()

    def knobs_needed(self) -> Tuple[str, ...]:
        """KSM files the step writes or waits on: the kernel must have them (requirements.py)."""
        return ()

    def check_order(self, order: Order):
        """Raise an InputError if the steps before it make this step impossible."""

    def measured_pages(self, run) -> Optional[int]:
        """The pages a `measure:` of this step covers, counted before it runs
        (None: no page count, so no speed)."""
        return None

    def run(self, run) -> bool:
        """Carry it out on a ScenarioRun; False when the scenario cannot go on."""
        raise NotImplementedError


@dataclass(frozen=True)
class Action(Step):
    """`do: NAME`: an action of the selected workers.  send() starts it in a
    worker (a command to the zygote's op_NAME) and receive() collects its
    reply; an action the harness does itself (verify, migrate, exit,
    hwpoison) sends nothing and does its work in receive()."""

    kind: ClassVar[str] = "do"
    action: ClassVar[str]  # the `do:` value
    op: ClassVar[Optional[str]] = None  # the worker's command (zygote.py op_NAME); None: the harness acts
    damaging: ClassVar[bool] = False  # damages the running kernel for good (harness/damage.py)
    explorable: ClassVar[bool] = True  # `ksm-harness explore` may draw it (false: random steps after it would hang)
    needs_one_of: ClassVar[Tuple[str, ...]] = ()  # keys of which the mapping must have one (the schema's anyOf)
    workers: Tuple[values.Selector, ...] = field("workers", "workers", "Which workers (default all).",
                                                 default=values.ALL_WORKERS)
    name: Optional[str] = field("name", "str", "Step title in results.")
    measure: Optional[str] = measure_field()

    @classmethod
    def keys(cls):
        return super().keys() | {"do"}

    @classmethod
    def required(cls):
        return ("do",) + super().required()

    @classmethod
    def parse(cls, p, m, where, in_concurrent=False):
        step = super().parse(p, m, where, in_concurrent)
        if cls.needs_one_of and not any(k in m for k in cls.needs_one_of):
            raise p.err(f"{cls.action} needs {', '.join(cls.needs_one_of[:-1])} or {cls.needs_one_of[-1]}", m,
                        "do", f"{where}.do")
        if in_concurrent and step.measure:
            raise p.err("the steps of a concurrent block run at once, so one of them has no time of its "
                        "own; measure the block's neighbours instead", m, "measure", f"{where}.measure")
        step.validate(p, m, where, in_concurrent)
        return step

    def validate(self, p, m, where, in_concurrent):
        """Rules across fields (the fields' own bounds are checked already)."""

    def dump(self):
        out = {"do": self.action, **super().dump()}
        if self.needs_one_of and not any(k in out for k in self.needs_one_of):
            # at its default, but the mapping must say it
            name, spec = next((n, s) for n, s in specs(type(self)) if s.key == self.needs_one_of[0])
            out[spec.key] = getattr(self, name)
        return out

    @property
    def title(self):
        return f"{self.action} {[s.text for s in self.workers]}"

    def knobs_needed(self):
        wait = getattr(self, "wait_for", None)
        return (wait.knob,) if wait else ()

    def check_order(self, order):
        names = values.worker_names(self.workers, order.group_sizes)
        if names and names <= order.exited:
            raise order.refuse(self, f"{self.action} acts on workers that exited in an earlier step")

    def run(self, run):
        workers = run.state.select(self.workers)
        self.begin(run)
        for w in workers:
            self.send(run, w)
        for w in workers:
            run.receive(self, w, None)
        run.acted(workers, [self])
        return True

    def begin(self, run):
        """Once before the action is sent to its workers."""

    def send(self, run, w):
        """Start the action in worker w (nothing for the harness's own actions)."""

    def receive(self, run, w, reply, windows):
        """Take w's reply (None for the harness's own actions); `windows`: the
        knob writes of the race it is in, or None.  Returns (events inside a
        window, events) inside a race."""

    @property
    def stops_when_told(self):
        """It goes on until the harness says stop (fork's until_done)."""
        return False

    @property
    def drops_pages(self):
        """It unmaps pages (MADV_DONTNEED): the page truth forgets them."""
        return False

    @property
    def ends_processes(self):
        """Processes exit during it (a fork storm's children, an exit)."""
        return False
