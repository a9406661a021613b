"""scenario.py: every shipped scenario loads, the matrix expands, and each kind
of broken input is one exact `FILE:LINE: FIELD: message` InputError (exit 2)."""
from pathlib import Path

import pytest

from harness import scenario
from harness.errors import EXIT_USAGE, InputError

REPO = Path(__file__).resolve().parents[2]
SCENARIO_FILES = sorted((REPO / "scenarios").rglob("*.yaml"))

# A valid scenario: 8 lines, so an appended line N is line 8 + N.
BASE = """\
name: t
workers:
  - name: a
    count: 2
    regions:
      - {name: r, size: 4M}
steps:
  - knob: {run: 1}
"""
SWAP = "setup:\n  swap: {kind: file, size: 64M}\n"  # 2 lines, prepended


RACE = BASE + """\
  - WINDOW
    concurrent:
      - do: touch
        workers: a
        region: r
        wait_for: {knob: run, value: 2}
      - knob: {run: 2}
"""


def load(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path, scenario.load_file(path)


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shipped_scenarios_load(path):
    loaded = scenario.load_file(path)
    assert loaded
    for s in loaded:
        assert s.file == str(path)
        assert s.workers and s.steps
        assert any(e.kind == "data" for e in s.expect)


def test_shipped_scenarios_found():
    assert len(SCENARIO_FILES) >= 5


def test_matrix_names_and_typed_substitution():
    (s1, s1far, s0, _) = scenario.load_file(REPO / "scenarios/seed/stale-stable-nodes.yaml")
    assert (s1.name, s0.name) == ("stale-stable-nodes[from=1,far=0]", "stale-stable-nodes[from=0,far=0]")
    assert s1.params == {"from": 1, "far": 0} and type(s1.params["from"]) is int
    assert dict(s1.knobs)["merge_across_nodes"] == "1"
    assert dict(s0.knobs)["merge_across_nodes"] == "0"
    assert next(g for g in s1far.workers if g.name == "farvictim").regions[0].node == 1


def test_matrix_list_of_points(tmp_path):
    text = ("matrix:\n  - {v: 0, c: 'a.r.ksm == 100%'}\n  - {v: 1, c: 'a.r.zero == 100%'}\n"
            + BASE + "  - wait: '${c}'\n")
    _, loaded = load(tmp_path, text)
    assert [s.params for s in loaded] == [{"v": 0, "c": "a.r.ksm == 100%"}, {"v": 1, "c": "a.r.zero == 100%"}]
    assert [s.steps[-1].until.name for s in loaded] == ["a.r.ksm", "a.r.zero"]


def test_matrix_points_must_share_names(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("matrix:\n  - {v: 0}\n  - {w: 1}\n" + BASE)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert str(info.value) == (f"{path}:3: matrix[1]: each point of a matrix list maps the same parameter "
                               "names to values")


def test_matrix_product_and_types(tmp_path):
    text = "matrix:\n  sz: [4M, 8192]\n  n: [3]\n  m: [false]\n" + BASE.replace(
        "      - {name: r, size: 4M}", "      - name: r\n        size: ${sz}\n        mergeable: ${m}"
    ).replace("count: 2", "count: ${n}")
    _, loaded = load(tmp_path, text)
    assert [s.name for s in loaded] == ["t[sz=4M,n=3,m=False]", "t[sz=8192,n=3,m=False]"]
    # a whole-string ${x} keeps the value's type: int count, bool mergeable, int bytes
    assert [s.workers[0].count for s in loaded] == [3, 3]
    assert [s.workers[0].regions[0].npages for s in loaded] == [1024, 2]
    assert [s.workers[0].regions[0].mergeable for s in loaded] == [False, False]


def test_substitution_inside_a_string(tmp_path):
    text = "matrix:\n  v: [7]\n" + BASE + "  - {knob: {run: 2}, name: 'step-${v}'}\n"
    _, (s,) = load(tmp_path, text)
    assert s.steps[1].name == "step-7"


def test_no_matrix_plain_name(tmp_path):
    _, (s,) = load(tmp_path, BASE)
    assert s.name == "t" and s.params == {}
    assert s.steps[0].writes == (("run", "1"),)


# (id, text, line, field, message); field None means the error has no field part
BROKEN = [
    # a scalar where a mapping belongs carries no line itself: the line is its key's
    ("scalar-for-setup", BASE + "setup: 5\n", 9, "setup", "must be a mapping, not int"),
    ("scalar-for-swap", BASE + "setup:\n  swap: file\n", 10, "setup.swap", "must be a mapping, not str"),
    ("scalar-for-region", BASE.replace("{name: r, size: 4M}", "r"), 6, "workers[0].regions[0]",
     "must be a mapping, not str"),
    ("scalar-for-wait", BASE + "  - wait: 5\n", 9, "steps[1].wait", "must be a mapping, not int"),
    ("unknown-top-level-key", BASE + "bogus: 1\n", 9, "scenario.bogus",
     "unknown key 'bogus' (expected one of: description, expect, matrix, name, requires, setup, steps, "
     "timeout, workers)"),
    ("unknown-region-key", BASE.replace("size: 4M}", "size: 4M, colour: red}"), 6,
     "workers[0].regions[0].colour",
     "unknown key 'colour' (expected one of: memfd, mergeable, name, node, pattern, size, thp)"),
    ("wrong-type", BASE.replace("count: 2", 'count: "two"'), 4, "workers[0].count",
     "must be int, not str 'two'"),
    ("bad-size", BASE.replace("size: 4M", "size: 4Q"), 6, "workers[0].regions[0].size",
     "bad size '4Q' (use e.g. 4M, 512K, 1G or '100 pages')"),
    ("size-not-page-multiple", BASE.replace("size: 4M", "size: 1000"), 6, "workers[0].regions[0].size",
     "size 1000 must be a positive multiple of the 4096-byte page"),
    ("unknown-pattern", BASE.replace("size: 4M", "size: 4M, pattern: stripes"), 6,
     "workers[0].regions[0].pattern.kind",
     "unknown pattern 'stripes' (expected one of: same, groups, unique, zero)"),
    ("unknown-worker-group", BASE + "  - do: touch\n    workers: b\n    region: r\n", 10, "steps[1].workers",
     "bad worker selector 'b' (groups: a; use NAME, NAME[i], NAME[i:j] or all)"),
    ("worker-index-out-of-range", BASE + "  - do: touch\n    workers: 'a[5]'\n    region: r\n", 10,
     "steps[1].workers", "'a[5]': group 'a' has only 2 workers"),
    ("region-not-in-group", BASE + "  - do: touch\n    workers: a\n    region: q\n", 11, "steps[1].region",
     "region 'q' is not mapped by every worker of 'a'"),
    ("bad-condition", BASE + '  - wait: "pages_shared >> 3"\n', 9, "steps[1].wait.until",
     "bad condition 'pages_shared >> 3' (want e.g. 'pages_sharing >= 100', '+full_scans >= 2', "
     "'a.r.ksm == 0')"),
    ("unknown-metric", BASE + '  - check: "a.r.bogus == 0"\n', 9, "steps[1].check.until",
     "unknown metric 'bogus' (expected one of: ksm, swapped, swapcache, present, zero, thp, sigbus, bad, "
     "processes, ksm_pages, max_sharing, uffd_wp, uffd_minor, vmas, poisoned, lost_in_swapcache, nodeN)"),
    ("percent-of-page-frames", BASE + '  - check: "a.r.ksm_pages >= 50%"\n', 9, "steps[1].check.until",
     "ksm_pages counts page frames, not a share of the region: drop the %"),
    ("unknown-group-metric", BASE + '  - check: "a.bogus == 0"\n', 9, "steps[1].check.until",
     "unknown metric 'bogus' (expected one of: merging_pages, processes, sigbus, rmap_items)"),
    ("metric-unknown-region", BASE + "expect:\n  - 'a.q.ksm == 0'\n", 10, "expect[0].that",
     "no region 'q' in worker group 'a'"),
    ("percentage-on-global-counter", BASE + '  - check: "pages_shared >= 50%"\n', 9, "steps[1].check.until",
     "a percentage needs a per-region metric (GROUP.REGION.ksm)"),
    ("pageout-without-swap", BASE + "  - do: pageout\n    workers: a\n    region: r\n", 9, "steps",
     "pageout needs setup.swap (no swap device to page out to)"),
    ("fault-injection-without-requires", SWAP + BASE + "  - fault_injection: true\n", 11, "steps",
     "fault_injection steps need requires.fault_injection: true (so that kernels without "
     "CONFIG_FAIL_MAKE_REQUEST skip)"),
    ("fault-injection-without-swap", BASE + "  - fault_injection: true\n", 9, "steps",
     "fault_injection needs setup.swap (it fails reads of the swap device)"),
    ("hwpoison-without-requires", BASE + "  - do: hwpoison\n    workers: a\n    region: r\n", 9, "steps",
     "hwpoison steps need requires.memory_failure: true (so that kernels without CONFIG_MEMORY_FAILURE skip)"),
    ("swapoff-without-swap", BASE + "  - swapoff: true\n", 9, "steps",
     "swapoff needs setup.swap (no swap device to swap off)"),
    ("pageout-after-swapoff", SWAP + BASE + "  - swapoff: true\n  - do: pageout\n    workers: a\n    region: r\n",
     12, "steps", "pageout needs setup.swap (no swap device to page out to)"),
    ("swapoff-false", SWAP + BASE + "  - swapoff: false\n", 11, "steps[1].swapoff", "swapoff: true is the only form"),
    ("action-on-exited-worker",
     BASE + "  - do: exit\n    workers: a\n  - do: touch\n    workers: a\n    region: r\n", 11, "steps",
     "touch acts on workers that exited in an earlier step"),
    ("concurrent-with-one-child", BASE + "  - concurrent:\n      - knob: {run: 2}\n", 9, "steps[1].concurrent",
     "concurrent: needs a list of at least two steps"),
    ("concurrent-without-worker-action",
     BASE + "  - concurrent:\n      - knob: {run: 2}\n      - check: 'pages_shared == 0'\n", 9,
     "steps[1].concurrent",
     "concurrent: needs worker actions (do) and harness steps (knob/wait/...) to race against each other"),
    ("until-done-outside-concurrent", BASE + "  - do: fork\n    workers: a\n    until_done: true\n", 11,
     "steps[1].until_done", "until_done only makes sense inside a concurrent step"),
    ("fork-unbounded", BASE + "  - do: fork\n    workers: a\n", 9, "steps[1].do",
     "fork needs count, duration or until_done"),
    ("unknown-action", BASE + "  - do: dance\n", 9, "steps[1].do",
     "unknown action 'dance' (expected one of: write, advise, mprotect, userfaultfd, pageout, touch, verify, fork, "
     "prctl_merge, exec, remap, mremap, migrate, exit, hwpoison, provoke)"),
    ("knob-write-expect", BASE + "  - knob: {run: 2}\n    expect: EAGAIN\n", 10, "steps[1].expect",
     "expect must be one of ok, EBUSY, EINVAL"),
    ("duplicate-key", BASE + "name: u\n", 9, "name", "duplicate key 'name'"),
    ("yaml-syntax-error", BASE.replace("    count: 2", "    count: 2\n   bad: ["), 5, None,
     "not valid YAML: expected <block end>, but found '<block mapping start>'"),
    ("missing-required", BASE.replace("steps:\n  - knob: {run: 1}\n", ""), 1, "scenario.steps",
     "missing required key 'steps'"),
    ("bad-regex", BASE + "expect:\n  - crash: '('\n", 10, "expect[0].crash",
     "bad regex: missing ), unterminated subpattern at position 0"),
    ("not-a-mapping", "- 1\n", 1, None, "a scenario file is a YAML mapping"),
    ("window-not-a-share", RACE.replace("WINDOW", "window: 150%"), 9, "steps[1].window",
     "window is a percentage 0%..100%, not '150%'"),
    ("window-without-knob", BASE + "  - window: 10%\n    concurrent:\n      - do: touch\n        workers: a\n"
     "        region: r\n      - wait: {until: 'a.r.ksm == 0', timeout: 1}\n", 9, "steps[1].window",
     "window needs a knob write in the concurrent step (the window is its span)"),
]


@pytest.mark.parametrize("text,line,field,message", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_input(tmp_path, text, line, field, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    exc = info.value
    assert exc.exit_code == EXIT_USAGE == 2
    where = f"{field}: " if field else ""
    assert str(exc) == f"{path}:{line}: {where}{message}"
    assert "\n" not in str(exc)


def test_python_object_tag_rejected_safely(tmp_path):
    marker = tmp_path / "pwned"
    text = BASE + f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert str(info.value) == (f"{path}:9: not valid YAML: could not determine a constructor for the tag "
                               f"'tag:yaml.org,2002:python/object/apply:os.system'")
    assert info.value.exit_code == 2
    assert not marker.exists()


def test_unknown_param(tmp_path):
    text = "matrix:\n  sz: [4M]\n" + BASE.replace("      - {name: r, size: 4M}",
                                                   "      - name: r\n        size: ${nope}")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert info.value.exit_code == 2
    assert info.value.file == str(path)
    assert info.value.field == "matrix"
    assert info.value.message == "${nope} is not a matrix parameter"


def test_unknown_param_names_its_line(tmp_path):
    text = "matrix:\n  sz: [4M]\n" + BASE.replace("      - {name: r, size: 4M}",
                                                   "      - name: r\n        size: ${nope}")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert info.value.line == 9


def test_non_string_action(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - do: [touch]\n")
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert info.value.line == 9


def test_action_on_exited_worker_by_index(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - do: exit\n    workers: a\n  - do: touch\n    workers: 'a[0]'\n    region: r\n")
    with pytest.raises(InputError):
        scenario.load_file(path)


def test_find_files_missing_path(tmp_path):
    with pytest.raises(InputError) as info:
        scenario.find_files([tmp_path / "nope"])
    assert str(info.value) == f"{tmp_path / 'nope'}: no such file or directory"


def test_load_all_keyword():
    names = [s.name for s in scenario.load_all([REPO / "scenarios"], keyword="stale")]
    assert names == ["stale-stable-nodes[from=1,far=0]", "stale-stable-nodes[from=1,far=1]",
                     "stale-stable-nodes[from=0,far=0]", "stale-stable-nodes[from=0,far=1]"]


@pytest.mark.parametrize("line,want", [("window: 75%", 75), ("window: 0%", 0), ("name: race", 50)])
def test_race_window(tmp_path, line, want):
    _, (sc,) = load(tmp_path, RACE.replace("WINDOW", line))
    assert sc.steps[1].kind == "concurrent" and sc.steps[1].window == want


ROUND_TRIP = sorted(p for d in ("scenarios", "tests/data/scenarios") for p in (REPO / d).rglob("*.yaml")
                    if p.name != "broken.yaml")


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: p.relative_to(REPO).as_posix())
def test_dump_loads_back_equal(tmp_path, path):
    """Every scenario (each matrix point) dumps to a file that loads back to an
    equal Scenario: what `ksm-harness explore` writes as a reproducer means the same."""
    for i, sc in enumerate(scenario.load_file(path)):
        dumped = tmp_path / f"{i}.yaml"
        dumped.write_text(scenario.dump_text(sc))
        (again,) = scenario.load_file(dumped)
        assert again == sc, dumped.read_text()
