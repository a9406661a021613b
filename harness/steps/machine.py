"""Steps the harness carries out itself: knob writes, waits and checks on
counters and metrics, fault injection, the cgroup limit, swapoff."""
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

from .. import faultinject, yamlload
from ..errors import DeadlineExceeded
from ..wait import wait_until
from .base import Step
from .fields import PARSERS, DUMPERS, check_keys, dump_size, field, measure_field, parse_fields, parse_size
from .values import Condition

WRITE_RESULTS = ("ok", "EBUSY", "EINVAL")
# a memcg limit write may also be "any": the result is reported, not checked
# (what v1 does over merged pages differs between kernel versions)
LIMIT_RESULTS = WRITE_RESULTS + ("any",)


@dataclass(frozen=True)
class Knob(Step):
    kind: ClassVar[str] = "knob"
    summary: ClassVar[str] = "Write knobs in order; each write must give `expect`."
    writes: Tuple[Tuple[str, str], ...] = field("knob", "knob_writes", "Knob names (files in /sys/kernel/mm/ksm) "
                                                "and the values to write, in order.", required=True)
    expect: str = field("expect", "choice", "What each write must give.", default="ok", choices=WRITE_RESULTS,
                        message="expect must be one of " + ", ".join(WRITE_RESULTS))
    name: Optional[str] = field("name", "str", "Step title in results.")

    @property
    def title(self):
        return "knob " + " ".join(f"{k}={v}" for k, v in self.writes)

    def knobs_needed(self):
        return tuple(n for n, _ in self.writes)

    def run(self, run):
        run.write_knobs(self.writes, self.expect)
        return True


@dataclass(frozen=True)
class Wait(Step):
    kind: ClassVar[str] = "wait"
    summary: ClassVar[str] = ("Wait (polling, with a deadline) until a condition holds; the scenario fails at "
                              "the deadline.")
    body: ClassVar[Optional[str]] = "until"  # `wait: COND` is `wait: {until: COND}`
    until: Condition = field("until", "condition", "The condition.", required=True)
    timeout: float = field("timeout", "number", "Seconds.", default=60, minimum=0, exclusive_minimum=True)
    measure: Optional[str] = measure_field()

    @classmethod
    def parse(cls, p, m, where, in_concurrent=False):
        check_keys(p.ctx, m, where, {cls.kind})
        body = m[cls.kind]
        if isinstance(body, str):
            body = yamlload.Map(until=body)
            body.line = m.line_of(cls.kind)
        where = f"{where}.{cls.kind}"
        check_keys(p.ctx, body, where, cls.keys(), cls.required())
        return cls(line=m.line, **parse_fields(cls, p, body, where))

    def dump(self):
        body = super().dump()
        return {self.kind: body["until"] if set(body) == {"until"} else body}

    @property
    def title(self):
        return f"{self.kind} {self.until.text}"

    def measured_pages(self, run):
        """A condition on GROUP.REGION.metric covers that region in every
        process of the group (forked children too)."""
        parts = self.until.name.split(".")
        if len(parts) != 3:
            return None
        return sum(n for *_, n in run.metrics.each_region(parts[0], parts[1], lambda pid, w, name, info:
                                                           info["npages"]))

    def run(self, run):
        cond = self.until
        reference = run.ctx.counters.read() if cond.delta else None
        timeout = min(self.timeout, run.left())
        last = {}

        def holds():
            last["ok"], last["detail"] = run.metrics.holds(cond, reference)
            return last["ok"]

        try:
            wait_until(holds, timeout, cond.text)
            return True
        except DeadlineExceeded:
            # still undecidable (None) at the deadline: cannot check, not failed
            run.check(f"wait {cond.text} within {timeout:g}s (line {self.line})",
                      None if last["ok"] is None else False, last["detail"])
            return False


@dataclass(frozen=True)
class Check(Wait):
    kind: ClassVar[str] = "check"
    summary: ClassVar[str] = "The condition must hold now."

    def run(self, run):
        ok, detail = run.metrics.holds(self.until, run.reference)
        run.check(f"{self.until.text} (line {self.line})", ok, detail)
        return True


@dataclass(frozen=True)
class FaultInjection(Step):
    kind: ClassVar[str] = "fault_injection"
    summary: ClassVar[str] = ("Turn fail_make_request on the scenario's swap device on or off (needs setup.swap); "
                              "every worker first reads its own memory back in, so that only the test regions "
                              "meet the failing reads.")
    on: bool = field("fault_injection", "bool", "On (true) or off (false).", required=True)
    times: int = field("times", "int", "How many reads fail (-1: no limit).", default=-1, minimum=-1,
                       excluded=(0,), message="times must be -1 (no limit) or >= 1, not {value}")

    def check_order(self, order):
        if not order.swap:
            raise order.refuse(self, "fault_injection needs setup.swap (it fails reads of the swap device)")
        if not order.requires.fault_injection:
            raise order.refuse(self, "fault_injection steps need requires.fault_injection: true (so that "
                                     "kernels without CONFIG_FAIL_MAKE_REQUEST skip)")

    def run(self, run):
        if self.on:
            for w in run.state.select(["all"]):
                w.call("fault_in_own", timeout=run.left())
            run.injector = run.journaled("faultinject", faultinject.to_journal, run.ctx.faults.remove_stale,
                                         run.ctx.cleanup)
            run.ctx.faults.arm(run.ctx.swap.block_device_name(run.swap_dev), times=self.times,
                               journal=run.injector.record)
        elif run.injector is not None:
            run.injector.undo()
        run.truth.changed(run.state.select(["all"]))
        return True


def cgroup_limit(p, m, where, spec, values):
    c = m[spec.key]
    where = f"{where}.{spec.key}"
    check_keys(p.ctx, c, where, {"limit"}, ("limit",))
    return parse_size(p.ctx, c, "limit", where)


PARSERS["limit"] = cgroup_limit
DUMPERS["limit"] = lambda npages: {"limit": dump_size(npages)}


@dataclass(frozen=True)
class Cgroup(Step):
    kind: ClassVar[str] = "cgroup"
    summary: ClassVar[str] = "Change the memory cgroup's limit (needs setup.cgroup)."
    limit_pages: int = field("cgroup", "limit", "{limit: SIZE}: the new memory limit.", required=True)
    expect: str = field("expect", "choice", "What the write must give (any: report it, check nothing).",
                        default="ok", choices=LIMIT_RESULTS,
                        message="expect must be one of " + ", ".join(LIMIT_RESULTS))

    def run(self, run):
        run.cgroup_limit(self.limit_pages, self.expect)
        run.truth.changed(run.state.select(["all"]))  # reclaim swaps pages out
        return True


@dataclass(frozen=True)
class Swapoff(Step):
    kind: ClassVar[str] = "swapoff"
    summary: ClassVar[str] = ("Swap the scenario's device off now: try_to_unuse() maps every page back, from "
                              "swapcache or the device.")
    on: bool = field("swapoff", "bool", "true (the only form).", required=True, choices=(True,),
                     message="swapoff: true is the only form")

    def check_order(self, order):
        if not order.swap:
            raise order.refuse(self, "swapoff needs setup.swap (no swap device to swap off)")
        order.swap = False  # nothing to page out to, or inject into, after it

    def run(self, run):
        # swapoff: try_to_unuse() -> unuse_pte() maps every page back, from swapcache or the device
        run.ctx.swap.remove(run.swap_dev)
        run.swap_dev = None
        run.truth.changed(run.state.select(["all"]))
        return True
