"""`ksm-harness perf` on the running kernel, as a user runs it: a small size,
every measurement, KTAP on stdout and JSON in a file, the machine as found
after (the `machine` fixture: knobs, swap, cgroups, processes, journal)."""
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_perf_measures_merge_thp_unmerge_and_cow(machine, tmp_path):
    out = tmp_path / "perf.json"
    proc = subprocess.run([sys.executable, "-m", "harness", "perf", "--size", "8", "--pages-to-scan", "100",
                           "--timeout", "60", "--json", str(out), "--ktap", "-"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    tests = {t["name"]: t for t in json.loads(out.read_text())["tests"]}
    assert list(tests) == ["merge", "thp-merge", "unmerge", "cow"]
    ran = {name: t for name, t in tests.items() if t["status"] == "pass"}
    # THP may be off here; the rest needs only KSM
    assert set(tests) - set(ran) <= {"thp-merge"}, tests
    for name, t in ran.items():
        for m in t["measures"]:
            assert m["seconds"] > 0 and m["mib_per_s"] > 0, (name, m)
            # every number is on stdout too, as a KTAP diagnostic before its test's result
            assert f"# {m['name']}: " in proc.stdout
    assert [m["bytes"] for m in ran["merge"]["measures"]] == [8 << 20]
    assert [m["name"] for m in ran["cow"]["measures"]] == ["cow", "cow-unmerged"]
    # the timing stopped at the second full scan: by then the pages are merged
    merged, total = map(int, re.search(r"ksm_merging_pages (\d+) of (\d+)", " ".join(ran["merge"]["notes"])).groups())
    assert total == 2048 and merged > total // 2
    assert re.search(r"^ok 4 cow$", proc.stdout, re.M)
    assert "pass:" in proc.stdout.splitlines()[-1]
