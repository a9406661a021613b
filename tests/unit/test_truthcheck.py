"""truthcheck.KsmJudge and metrics.decide on a fake /proc whose kpageflags
lies the way Linux 6.12.117's does (KPF_KSM on every anonymous page), and
the run-level finding in every report format.  The self-check itself drives
KSM: it runs on the real kernel in tests/kernel and in the 6.12 guest
(tests/vm/test_kernel_612.py)."""
import json
import xml.etree.ElementTree as ET

import pytest

from harness import truthcheck
from harness.errors import WorkerError
from harness.metrics import Between, decide
from harness.pages import KPF_ANON, KPF_KSM, PAGE_SIZE, PM_PRESENT, region_pages
from harness.report import html, json_report, junit, ktap, terminal
from harness.results import PASS, RunResult, ScenarioResult
from test_pages import ADDR, put

LYING_ANON = 1 << KPF_ANON | 1 << KPF_KSM  # what 6.12's stable_page_flags() gives any anonymous page
LYING = truthcheck.Truth(kpf_ksm=False, findings=(truthcheck.KPF_KSM_ON_ANON,))


def fake_proc(tmp_path, maps, merging=None):
    """maps: pid -> PFNs of its region at ADDR; every frame reads KPF_ANON|KPF_KSM.
    merging: pid -> ksm_merging_pages for /proc/PID/ksm_stat."""
    for pid, pfns in maps.items():
        (tmp_path / str(pid)).mkdir(exist_ok=True)
        put(tmp_path / str(pid) / "pagemap", ADDR // PAGE_SIZE, [PM_PRESENT | p if p else 0 for p in pfns])
        if merging and pid in merging:
            (tmp_path / str(pid) / "ksm_stat").write_text(f"ksm_rmap_items 4\nksm_merging_pages {merging[pid]}\n")
    for pfn in {p for pfns in maps.values() for p in pfns if p}:
        put(tmp_path / "kpageflags", pfn, [LYING_ANON])
    return tmp_path


def judged(judge, proc, placement):
    """placement: [(lineage, pid)] -> [(KSM page indexes, unsure)]."""
    placed = [(lineage, region_pages(pid, ADDR, 4, proc)) for lineage, pid in placement]
    return [(v.ksm, unsure) for v, unsure in judge.judge(placed)]


def test_kpageflags_taken_at_its_word_when_trusted(tmp_path):
    proc = fake_proc(tmp_path, {100: [10, 11, 12, 13]})
    judge = truthcheck.KsmJudge(truthcheck.TRUSTED, proc)
    assert judged(judge, proc, [("a[0]", 100)]) == [((0, 1, 2, 3), 0)]


def test_lying_kpageflags_ksm_only_where_independent_pages_share_a_frame(tmp_path):
    proc = fake_proc(tmp_path, {
        100: [10, 11, 20, 21],  # a[0]
        200: [10, 31, 32, 0],   # b[0]: page 0 shares a[0]'s frame 10 (merged)
        300: [40, 11, 20, 21],  # a[0]'s forked child: pages 1-3 still share the parent's frames by COW
        400: [50, 50, 51, 0],   # c[0]: pages 0 and 1 hold one frame at two addresses (merged "same" pages)
    })
    judge = truthcheck.KsmJudge(LYING, proc)
    got = judged(judge, proc, [("a[0]", 100), ("b[0]", 200), ("a[0]", 300), ("c[0]", 400)])
    assert got == [((0,), 0), ((0,), 0), ((), 0), ((0, 1), 0)]


def test_a_ksm_page_left_with_one_mapping_is_unsure_while_ksm_stat_counts_it(tmp_path):
    proc = fake_proc(tmp_path, {100: [10, 11, 0, 0], 200: [10, 11, 0, 0]})
    judge = truthcheck.KsmJudge(LYING, proc)
    assert judged(judge, proc, [("a[0]", 100), ("b[0]", 200)]) == [((0, 1), 0), ((0, 1), 0)]
    # b[0] exits: a[0] keeps frames 10 and 11 at the same addresses, mapped once;
    # ksm_stat still counts 2 merged pages for a[0] (mm/ksm.c keeps the stable node)
    fake_proc(tmp_path, {100: [10, 11, 0, 0]}, merging={100: 2})
    assert judged(judge, proc, [("a[0]", 100)]) == [((), 2)]
    # after a full scan ksmd drops the rmap items of what it no longer merges: a copy, not KSM
    fake_proc(tmp_path, {100: [10, 11, 0, 0]}, merging={100: 0})
    assert judged(judge, proc, [("a[0]", 100)]) == [((), 0)]


def test_a_copy_at_a_new_frame_is_never_unsure(tmp_path):
    proc = fake_proc(tmp_path, {100: [10, 11, 0, 0], 200: [10, 11, 0, 0]})
    judge = truthcheck.KsmJudge(LYING, proc)
    judged(judge, proc, [("a[0]", 100), ("b[0]", 200)])
    # MADV_UNMERGEABLE gave a[0] copies (new frames); ksm_stat still counts its stale rmap items
    fake_proc(tmp_path, {100: [60, 61, 0, 0], 200: [10, 11, 0, 0]}, merging={100: 2, 200: 2})
    assert judged(judge, proc, [("a[0]", 100), ("b[0]", 200)]) == [((), 0), ((), 2)]


@pytest.mark.parametrize("op, low, high, want, verdict", [
    ("==", 0, 0, 0, True),
    ("==", 3, 3, 0, False),
    ("==", 0, 5, 0, None),      # might be 0, might not
    ("==", 2, 5, 0, False),     # at least 2 KSM pages: certainly not 0
    ("==", 2, 5, 9, False),
    ("!=", 2, 5, 0, True),
    ("!=", 2, 5, 3, None),
    (">=", 2, 5, 2, True),
    (">=", 2, 5, 4, None),
    (">=", 2, 5, 6, False),
    ("<=", 2, 5, 1, False),
    ("<", 2, 5, 6, True),
])
def test_decide_over_the_range_of_possible_counts(op, low, high, want, verdict):
    assert decide(op, Between(low, high), want) is verdict


def test_decide_plain_numbers():
    assert decide("==", 4, 4) is True and decide(">", 4, 4) is False


def run_with_finding():
    s = ScenarioResult(name="merge-unmerge", file="scenarios/core/merge-unmerge.yaml", line=3, status=PASS,
                       duration=1.0)
    return RunResult(kernel="6.12.117", started="2026-12-01T00:00:00+00:00", duration=2.0, scenarios=(s,),
                     findings=(truthcheck.KPF_KSM_ON_ANON,))


def test_the_finding_is_in_every_report(tmp_path):
    run = run_with_finding()
    said = "kernel finding: this kernel's /proc/kpageflags sets KPF_KSM on plain anonymous pages"
    assert terminal.summary(run).count(said) == 1
    assert ktap.render(run).count(f"# {said}") == 1
    assert "fs/proc/page.c stable_page_flags()" in ktap.render(run)
    props = ET.fromstring(junit.render(run)).find("testsuite/properties")
    assert [p.get("value") for p in props if p.get("name") == "kernel_finding"] == [truthcheck.KPF_KSM_ON_ANON]
    assert html.render(run).count("Kernel finding:") == 1
    assert json.loads(json_report.dumps(run))["findings"] == [truthcheck.KPF_KSM_ON_ANON]
    json_report.write(run, tmp_path / "r.json")
    assert json_report.load(tmp_path / "r.json") == run


def test_a_result_file_without_findings_still_loads(tmp_path):
    doc = json_report.to_dict(run_with_finding())
    del doc["findings"]
    assert json_report.from_dict(doc).findings == ()


def test_ksm_merging_pages_checked_only_where_ksm_stat_has_it(tmp_path):
    from types import SimpleNamespace
    workers = [SimpleNamespace(pid=100)]
    (tmp_path / "100").mkdir()
    (tmp_path / "100" / "ksm_stat").write_text("ksm_rmap_items 128\n")  # 6.1: no ksm_merging_pages line
    assert truthcheck._merging_counted(workers, tmp_path)
    (tmp_path / "100" / "ksm_stat").write_text(f"ksm_rmap_items 128\nksm_merging_pages {truthcheck.NPAGES - 1}\n")
    assert not truthcheck._merging_counted(workers, tmp_path)


def _self_check_fails(*args, **kwargs):
    raise WorkerError("the worker zygote did not answer a spawn request")


@pytest.mark.parametrize("reads_ksm", [True, False])
def test_a_self_check_that_could_not_run_still_checks_an_own_page(monkeypatch, reads_ksm):
    monkeypatch.setattr(truthcheck, "self_check", _self_check_fails)
    monkeypatch.setattr(truthcheck, "_own_page_reads_ksm", lambda proc: reads_ksm)
    truth = truthcheck.checked(knobs=None)
    assert truth.kpf_ksm is not reads_ksm
    assert truth.findings[0].startswith("the self-check of /proc/kpageflags and ksm_stat could not run "
                                        "(the worker zygote did not answer a spawn request)")
    assert (truthcheck.KPF_KSM_ON_ANON in truth.findings) is reads_ksm


def test_own_page_is_read_through_pagemap_and_kpageflags(tmp_path, monkeypatch):
    seen = []

    def view(pid, addr, npages, proc):
        seen.append((pid, npages, proc))
        return region_pages(100, ADDR, 1, fake_proc(tmp_path, {100: [10]}))

    monkeypatch.setattr(truthcheck.pages, "region_pages", view)
    assert truthcheck._own_page_reads_ksm(tmp_path) is True
    assert seen == [(truthcheck.os.getpid(), 1, tmp_path)]
