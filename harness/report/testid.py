"""Stable test identifiers for engines that keep a history per test (LAVA,
KernelCI's KCIDB, kselftest-style KTAP readers, Jenkins).

An identifier is the scenario's name plus its matrix point, never a reason or
a measurement, so "numa-nodes" is the same test whether it passed on a
2-node machine or skipped on a 1-node one:

    stale-stable-nodes[from=1,far=0]   (name)
    stale-stable-nodes_from_1_far_0    (case_id: KTAP, LAVA)
    ksm.seed.stale_stable_nodes.from_1.far_0   (kcidb_path)
    seed.stale-stable-nodes            (classname: JUnit)

case_id uses only [A-Za-z0-9_-] and never starts or ends with "_": LAVA's
test shell refuses ids with spaces and splits its signals at "=" and ">"
(lava_dispatcher/actions/test/shell.py handle_testcase()), and kselftest
output parsers turn every other character into "_"; an id made of those
characters alone comes out of them unchanged.
"""
import re
from pathlib import PurePath

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_BASE = re.compile(r"^[^\[#]*")  # the name before "[matrix]" and "#repeat"
_REPEAT = re.compile(r"#(\d+)$")  # `run --repeat N` names copies NAME#1 .. NAME#N


def slug(text) -> str:
    """`text` with every run of characters outside [A-Za-z0-9_-] as one "_",
    none at either end ("a.r.ksm == 100%" -> "a_r_ksm_100"); "x" if nothing is left."""
    return _UNSAFE.sub("_", str(text)).strip("_") or "x"


def base(s) -> str:
    """The scenario's own name, without matrix point or repeat number."""
    match = _BASE.match(s.name)  # matches every name, if only with ""
    return match.group(0) if match else s.name


def point(s) -> list:
    """The matrix point (and repeat number) as ["from_1", "far_0", "run_2"]."""
    parts = [f"{slug(k)}_{slug(v)}" for k, v in s.params.items()]
    repeat = _REPEAT.search(s.name)
    return parts + ([f"run_{repeat.group(1)}"] if repeat else [])


def case_id(s) -> str:
    """The KTAP / LAVA test case id: "stale-stable-nodes_from_1_far_0"."""
    return "_".join([slug(base(s))] + point(s))


def suite(s) -> str:
    """The directory of the scenario's file: "seed", "core"."""
    return slug(PurePath(s.file).parent.name or "scenarios")


def classname(s) -> str:
    """The JUnit classname, directory.stem: "seed.stale-stable-nodes"."""
    return f"{suite(s)}.{slug(PurePath(s.file).stem)}"


def kcidb_path(s, prefix: str = "ksm") -> str:
    """The KCIDB test path, dot-separated [a-zA-Z0-9_-]+ components (kcidb-io
    schema v5 test_path_re): "ksm.seed.stale_stable_nodes.from_1.far_0"."""
    return ".".join([prefix, suite(s), slug(base(s)).replace("-", "_")] + point(s))
