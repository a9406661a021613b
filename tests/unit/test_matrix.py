"""The kernel matrix (harness/matrix.py) without qemu: command-line split,
the kernels x scenarios table, its JSON round trip and its KCIDB document."""
import json

import pytest

from harness import matrix, vmcli
from harness.results import FAIL, PASS, SKIP, Check, RunResult, ScenarioResult


def sc(name, status, reason="", params=None, checks=()):
    return ScenarioResult(name, "scenarios/seed/x.yaml", 1, status, 2.0, reason=reason, params=params or {},
                          checks=checks, started="2025-01-01T00:00:00+00:00")


STALE = [(f"stale-stable-nodes[from={f},far={n}]", {"from": str(f), "far": str(n)}) for f in (1, 0) for n in (0, 1)]
BROKEN = Check("victim.r.ksm == 0", False, "victim.r.ksm=4096 (want == 0)")
FIXED = matrix.KernelRun("ksm-6.1.192-fixed", "/k/fixed.bzImage", 0, "", RunResult(
    "6.1.192", "2025-01-01T00:00:00+00:00", 30.0,
    tuple(sc(n, PASS, params=p) for n, p in STALE) + (sc("prctl-merge", SKIP, "needs Linux 6.4+, this is 6.1.192"),),
    environment={"kernel_release": "6.1.192", "machine": "x86_64", "kernel_version": "#1 fixed"}))
STALE_RUN = matrix.KernelRun("ksm-6.1.192-stale-stable-nodes", "/k/stale.bzImage", 1, "guest command exited 1",
                             RunResult("6.1.192", "2025-01-01T01:00:00+00:00", 30.0,
                                       tuple(sc(n, FAIL, "victim.r.ksm == 0", p, (BROKEN,)) for n, p in STALE)
                                       + (sc("prctl-merge", SKIP, "needs Linux 6.4+, this is 6.1.192"),),
                                       environment={"kernel_release": "6.1.192", "kernel_version": "#1 stale"}))
HUNG = matrix.KernelRun("ksm-6.1.192-hung", "/k/hung.bzImage", 1, "guest hung while booting: killed after 300 s", None)
ROWS = [FIXED, STALE_RUN, HUNG]


def test_split_argv_takes_kernels_and_out_before_run_only():
    argv = ["--kernel", "a", "--numa", "2", "--kernel=b", "--out", "o", "run", "-k", "x", "--kernel", "s"]
    assert matrix.split_argv(argv) == (["a", "b"], "o", ["--numa", "2", "run", "-k", "x", "--kernel", "s"])
    assert matrix.kernels_in(["--kernel", "a", "run", "s"]) == ["a"]


def test_markdown_table():
    assert matrix.markdown(ROWS).splitlines() == [
        "| kernel | `stale-stable-nodes` | `prctl-merge` |",
        "|---|---|---|",
        "| ksm-6.1.192-fixed (6.1.192) | PASS (x4) | SKIP: needs Linux 6.4+, this is 6.1.192 |",
        "| ksm-6.1.192-stale-stable-nodes (6.1.192) | **FAIL 4 of 4**: victim.r.ksm == 0: victim.r.ksm=4096 "
        "(want == 0) | SKIP: needs Linux 6.4+, this is 6.1.192 |",
        "| ksm-6.1.192-hung | **no result**: guest hung while booting: killed after 300 s "
        "| **no result**: guest hung while booting: killed after 300 s |",
    ]


def test_html_page_is_self_contained():
    page = matrix.html_page(ROWS)
    assert "<script" not in page and "default-src 'none'" in page
    assert "FAIL 4 of 4: victim.r.ksm == 0" in page and page.count("<tr>") == 4


def test_json_round_trip_and_reports(tmp_path):
    matrix.write_reports(ROWS, tmp_path)
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert matrix.from_dict(doc) == ROWS
    assert (tmp_path / "matrix.md").read_text() == matrix.markdown(ROWS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(matrix.REPORT_FILES)


def test_kcidb_one_build_per_kernel():
    kcidb_io = pytest.importorskip("kcidb_io")
    doc = matrix.kcidb_doc(ROWS)
    kcidb_io.schema.V5_3.validate_exactly(doc)
    assert len(doc["builds"]) == 2 and len(doc["tests"]) == 10
    assert len({t["id"] for t in doc["tests"]}) == 10  # a test id names its build


def test_vm_with_two_kernels_is_a_matrix_and_checks_them_first(tmp_path, capsys):
    kernel = tmp_path / "a.bzImage"
    kernel.write_bytes(b"x")
    code = vmcli.main(["--kernel", str(kernel), "--kernel", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                       "run", "scenarios/seed"])
    assert code == 2 and "missing: no such kernel image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing booted


def test_points_that_pass_and_skip_share_a_cell():
    points = tuple(sc(n, PASS if p["far"] == "0" else SKIP, "" if p["far"] == "0" else "needs 2 NUMA nodes", p)
                   for n, p in STALE)
    row = matrix.KernelRun("host", "-", 0, "", RunResult("6.18", "", 1.0, points))
    assert matrix.cell(row, "stale-stable-nodes") == (PASS, "PASS 2 of 4", "SKIP 2: needs 2 NUMA nodes")
