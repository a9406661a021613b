"""truth.py: the arithmetic of the counter checks, on fake /sys/kernel/mm/ksm
and /proc trees in tmp_path (the real kernel: tests/kernel/test_verdicts.py)."""
from types import SimpleNamespace

import pytest

from harness import truth
from harness.knobs import Knobs
from harness.pages import PAGE_SIZE, ProcessPages
from harness.truth import Seen, Truth, other_users, rmap_item_size

ITEM = 64  # sizeof(struct ksm_rmap_item) on x86_64 6.x


def stat(merging, items, zero=0, size=ITEM):
    return {"ksm_rmap_items": items, "ksm_merging_pages": merging, "ksm_zero_pages": zero,
            "ksm_process_profit": (merging + zero) * PAGE_SIZE - items * size}


def seen(label, st, ksm=(), zero=(), zero_in_regions=0, worker=None):
    return Seen(label, worker or label, st, ProcessPages(1, tuple(ksm), tuple(zero), 100), zero_in_regions)


@pytest.fixture
def ksm(tmp_path):
    """Knob tree with a settled merge of 4 processes: 2 KSM frames, 8 mappings."""
    root = tmp_path / "ksm"
    root.mkdir()
    values = {"run": 0, "full_scans": 9, "pages_shared": 2, "pages_sharing": 6, "pages_unshared": 5,
              "pages_volatile": 3, "ksm_zero_pages": 1, "stable_node_chains": 0, "stable_node_dups": 0}
    values["general_profit"] = (6 + 1) * PAGE_SIZE - (2 + 6 + 5 + 3) * ITEM
    for name, value in values.items():
        (root / name).write_text(f"{value}\n")
    return Knobs(root)


def set_knob(knobs, name, value):
    (knobs.root / name).write_text(f"{value}\n")


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    (root / "self").mkdir(parents=True)
    (root / "self" / "status").write_text("Name:\tpython\nNSpid:\t4242\n")
    (root / "sys" / "kernel").mkdir(parents=True)
    (root / "sys" / "kernel" / "osrelease").write_text("6.18.44-fc-v1045\n")
    return root


def merged(n_items=4):
    """4 processes, two KSM frames mapped 4 times each; one zero page in a[0]."""
    out = []
    for i in range(4):
        out.append(seen(f"a[{i}]", stat(2, n_items, zero=int(i == 0)),
                        ksm=[(0x1000, 500), (0x2000, 501)], zero=[0x3000] * (i == 0), zero_in_regions=int(i == 0)))
    return out


def test_rmap_item_size_from_process_profit():
    assert rmap_item_size(merged()) == {ITEM: ["a[0]", "a[1]", "a[2]", "a[3]"]}
    odd = seen("b", {**stat(2, 3), "ksm_process_profit": 2 * PAGE_SIZE - 100})
    assert rmap_item_size([odd]) == {None: ["b"]}
    assert rmap_item_size([seen("c", stat(0, 0))]) == {}  # no rmap items: nothing to derive


def test_settled_books_agree(ksm, proc):
    checks, notes = Truth(ksm, proc).check("after run=0", merged(), {1})
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    by = {c.what.split(" (")[0]: c.detail for c in checks}
    assert by["ksm_merging_pages == KSM pages mapped, per process"].startswith("a[0] 2=2, a[1] 2=2")
    assert by["pages_shared == distinct KSM frames mapped"].startswith("pages_shared=2 (sysfs), 2 distinct KPF_KSM PFNs")
    assert by["general_profit =="].startswith("general_profit=27648, computed 27648")
    assert by["ksm_zero_pages == sum over the processes"] == ("ksm_zero_pages=1 (sysfs), sum of per-process "
                                                              "ksm_zero_pages=1 (ksm_stat)")
    assert notes == []


def test_a_counter_that_disagrees_is_named_with_both_numbers(ksm, proc):
    procs = merged()
    procs[2] = seen("a[2]", stat(3, 4), ksm=[(0x1000, 500), (0x2000, 501)])
    checks, _ = Truth(ksm, proc).check("after run=0", procs, {1})
    failed = {c.what.split(" (")[0]: c.detail for c in checks if not c.passed}
    assert failed["ksm_merging_pages == KSM pages mapped, per process"].startswith("a[2] 3=2 (ksm_stat")
    assert "sum of ksm_merging_pages=9" in failed["pages_shared + pages_sharing == KSM pages mapped == sum of "
                                                  "ksm_merging_pages"]


def test_fork_shared_pages_made_ksm_after_the_last_visit_may_be_uncounted(ksm, proc):
    """A child maps its parent's two pages, which ksmd made KSM in place after
    it visited the child (traced on 6.18): counted only at the next scan."""
    procs = merged() + [seen("a[0] child 7", stat(0, 2), ksm=[(0x1000, 500), (0x2000, 501)], worker="a[0]")]
    checks, notes = Truth(ksm, proc).check("after run=0", procs, {1})
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    by = {c.what.split(" (")[0]: c.detail for c in checks}
    assert "a[0] child 7 0=2 (2 fork-shared not yet counted)" in by["ksm_merging_pages == KSM pages mapped, "
                                                                      "per process"]
    assert ("10 entries mapping KPF_KSM pages (pagemap) less 2 fork-shared ones not counted yet, sum of "
            "ksm_merging_pages=8") in by["pages_shared + pages_sharing == KSM pages mapped == sum of ksm_merging_pages"]
    assert notes == ["page truth after run=0: 2 KSM entries of 1 processes not yet counted in ksm_merging_pages: "
                     "each maps a page a fork relative shares at the same address, which ksmd made KSM in place "
                     "after its last visit to that process (counted at the next one, stable_tree_search(): "
                     "\"ksm page forked\")"]


@pytest.mark.parametrize("worker, ksm_entries", [
    ("b", [(0x1000, 500), (0x2000, 501)]),  # no fork relative maps them
    ("a[0]", [(0x5000, 500), (0x2000, 501)]),  # one is at another address than the relatives'
])
def test_a_shortfall_beyond_fork_shared_entries_fails(ksm, proc, worker, ksm_entries):
    procs = merged() + [seen("c", stat(0, 2), ksm=ksm_entries, worker=worker)]
    checks, _ = Truth(ksm, proc).check("after run=0", procs, {1})
    failed = {c.what.split(" (")[0]: c.detail for c in checks if not c.passed}
    assert failed["ksm_merging_pages == KSM pages mapped, per process"].startswith("c 0=2 (ksm_stat")


def test_wrong_general_profit_fails(ksm, proc):
    set_knob(ksm, "general_profit", 12345)
    checks, _ = Truth(ksm, proc).check("after run=0", merged(), {1})
    (bad,) = [c for c in checks if not c.passed]
    assert bad.detail.startswith("general_profit=12345, computed 27648 from pages_sharing=6, ksm_zero_pages=1, "
                                 "16 rmap items")


def test_zero_pages_between_regions_and_all_mapped(ksm, proc):
    procs = merged()
    procs[1] = seen("a[1]", stat(2, 4, zero=3), ksm=[(0x1000, 500), (0x2000, 501)], zero=[0x3000])
    checks, _ = Truth(ksm, proc).check("after run=0", procs, {1})
    (bad,) = [c for c in checks if not c.passed and "between" in c.what]
    assert bad.detail.startswith("a[1] 0<=3<=1")


def test_unsettled_processes_are_said_not_checked(ksm, proc):
    t = Truth(ksm, proc)
    t.changed([SimpleNamespace(name="a[1]")])  # at full_scans=9: settled from 11 on
    checks, notes = t.check("after run=0 (line 7)", merged(), {1})
    assert notes == [
        "page truth after run=0 (line 7): ksm_merging_pages not checked for a[1] and their children: their pages "
        "changed fewer than 2 full scans ago (full_scans=9)",
        "global counters after run=0 (line 7): not checked against page truth: pages changed or processes exited "
        "fewer than 2 full scans ago"]
    assert [c.detail.split(" (")[0] for c in checks if "per process" in c.what][0] == "a[0] 2=2, a[2] 2=2, a[3] 2=2"
    set_knob(ksm, "full_scans", 11)
    assert t.check("later", merged(), {1})[1] == []
    t.unmerged()  # run=2 resets full_scans: no mark stays
    assert t.changed_at == {} and t.exited_at is None


def test_other_ksm_users_are_reported_instead_of_checked(ksm, proc):
    (proc / "77").mkdir()
    (proc / "77" / "comm").write_text("qemu-system-x86\n")
    (proc / "77" / "ksm_stat").write_text("ksm_rmap_items 10\nksm_merging_pages 8\n")
    (proc / "78").mkdir()
    (proc / "78" / "comm").write_text("idle\n")
    (proc / "78" / "ksm_stat").write_text("ksm_rmap_items 0\nksm_merging_pages 0\n")
    assert other_users({1}, proc) == ["pid 77 (qemu-system-x86): ksm_rmap_items=10, ksm_merging_pages=8"]
    checks, notes = Truth(ksm, proc).check("after run=0", merged(), {1})
    assert notes == ["global counters after run=0: not checked against page truth: other KSM users: "
                     "pid 77 (qemu-system-x86): ksm_rmap_items=10, ksm_merging_pages=8"]
    assert not [c for c in checks if c.what.startswith("pages_shared ==")]
    assert other_users({1, 77}, proc) == []


def test_child_pid_namespace_cannot_see_every_user(proc):
    (proc / "self" / "status").write_text("NSpid:\t4242\t7\n")
    assert other_users({1}, proc) is None


def test_after_unmerge_everything_is_zero(ksm, proc):
    set_knob(ksm, "run", 2)
    for name in truth.UNMERGED_COUNTERS:
        set_knob(ksm, name, 0)
    zeroed = [seen(f"a[{i}]", stat(0, 0)) for i in range(2)]
    assert all(c.passed for c in Truth(ksm, proc).check("after run=2", zeroed, {1})[0])
    zeroed[1] = seen("a[1] child 99", stat(0, 3), worker="a[1]")
    set_knob(ksm, "pages_unshared", 3)
    failed = {c.what: c.detail for c in Truth(ksm, proc).check("after run=2", zeroed, {1})[0] if not c.passed}
    assert failed["ksm_rmap_items == 0 in every process after run=2 (after run=2)"] == (
        "a[1] child 99 ksm_rmap_items=3 (/proc/PID/ksm_stat)")
    assert failed["global counters 0 after run=2 (after run=2)"] == "pages_unshared=3 (/sys/kernel/mm/ksm)"


def test_a_drift_left_before_the_scenario_is_counted_from_not_blamed(ksm, proc):
    """A ksm_zero_pages that no run=2 brings back (leaked earlier on this boot:
    2 x 230 seen on 6.18 after children with KSM zero pages exited) is read
    right after setup's run=2; the checks count from it and say so."""
    set_knob(ksm, "run", 2)
    for name in truth.UNMERGED_COUNTERS:
        set_knob(ksm, name, 0)
    set_knob(ksm, "ksm_zero_pages", 460)
    set_knob(ksm, "general_profit", 460 * PAGE_SIZE)
    t = Truth(ksm, proc)
    t.begin()
    assert t.residue == {"ksm_zero_pages": 460, "general_profit": 460 * PAGE_SIZE}
    checks, notes = t.check("after run=2", [seen("a[0]", stat(0, 0))], {1})
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert notes == ["global counters after run=2: checked against what setup's run=2 left before any worker "
                     "existed, not 0: ksm_zero_pages=460, general_profit=1884160 (the kernel's books drifted "
                     "earlier on this boot; they stay so until reboot)"]
    set_knob(ksm, "ksm_zero_pages", 461)  # one more leaked by this scenario: its FAIL
    (bad,) = [c for c in t.check("after run=2", [seen("a[0]", stat(0, 0))], {1})[0] if not c.passed]
    assert bad.detail.startswith("ksm_zero_pages=461")
    # at run=0 the global sum counts from the drift too
    for name, value in (("run", 0), ("ksm_zero_pages", 461), ("general_profit", 27648 + 460 * PAGE_SIZE)):
        set_knob(ksm, name, value)
    for name, value in (("pages_shared", 2), ("pages_sharing", 6), ("pages_unshared", 5), ("pages_volatile", 3)):
        set_knob(ksm, name, value)
    checks, notes = t.check("after run=0", merged(), {1})
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert "ksm_zero_pages=1 (sysfs, less what setup's run=2 left)" in {c.detail.split(", sum")[0] for c in checks}
    assert notes[0].startswith("global counters after run=0: checked against what setup's run=2 left")


def test_running_ksmd_is_no_quiet_point(ksm, proc):
    set_knob(ksm, "run", 1)
    assert Truth(ksm, proc).check("at the end", merged(), {1}) == (
        [], ["page truth at the end: not checked, ksmd is running (run=1)"])


def test_counters_back_where_they_started(ksm, proc):
    t = Truth(ksm, proc)
    t.begin()
    assert t.back_to_start().passed
    set_knob(ksm, "stable_node_dups", 2)
    check = t.back_to_start()
    assert not check.passed and check.detail.startswith("stable_node_dups 0 -> 2 (")


def test_children_inherit_their_parents_counters_before_6_2(ksm, proc):
    """6.1's ksm_fork() leaves a child with its parent's ksm_merging_pages and
    ksm_rmap_items: named as a known defect there, checked elsewhere."""
    set_knob(ksm, "run", 2)
    for name in truth.UNMERGED_COUNTERS:
        set_knob(ksm, name, 0)
    six_one = {"ksm_rmap_items": 512, "ksm_merging_pages": 512}  # 6.1 ksm_stat + ksm_merging_pages
    procs = [seen("a[0]", {"ksm_rmap_items": 0, "ksm_merging_pages": 0}), seen("a[0] child 99", six_one, worker="a[0]")]
    checks, _ = Truth(ksm, proc).check("after run=2", procs, {1})
    assert "a[0] child 99 ksm_rmap_items=512" in [c for c in checks if not c.passed][0].detail
    (proc / "sys" / "kernel" / "osrelease").write_text("6.1.192\n")
    checks, notes = Truth(ksm, proc).check("after run=2", procs, {1})
    assert all(c.passed for c in checks)
    assert notes == ["page truth after run=2: known kernel defect, not checked: the ksm_merging_pages and "
                     "ksm_rmap_items of 1 children (before Linux 6.2 ksm_fork() leaves them as copied from the parent)"]


def test_merge_any_scenarios_are_found():
    from harness.steps import actions, control
    plain = SimpleNamespace(workers=[SimpleNamespace(prctl_merge=False)],
                            steps=(control.Repeat(times=3, steps=(actions.Touch(region="r"),)),))
    assert not truth.uses_merge_any(plain)
    nested = SimpleNamespace(workers=plain.workers,
                             steps=(control.Repeat(times=3, steps=(actions.PrctlMerge(value=1),)),))
    assert truth.uses_merge_any(nested)
    assert truth.uses_merge_any(SimpleNamespace(workers=[SimpleNamespace(prctl_merge=True)], steps=()))


def test_zero_pages_of_regions_thps_may_back_are_not_counted_as_ksm(ksm, proc):
    """A THP split maps zero-filled subpages to the shared zero page (6.12+)."""
    advised, opted_out, plain = {"thp": True}, {"thp": False}, {"thp": None}
    assert [Truth(ksm, proc, thp_mode="madvise").huge(r) for r in (advised, opted_out, plain)] == [True, False, False]
    assert [Truth(ksm, proc, thp_mode="always").huge(r) for r in (advised, opted_out, plain)] == [True, False, True]
    assert not any(Truth(ksm, proc, thp_mode=m).huge(advised) for m in ("never", None))
