"""journal.py: the on-disk journal of what a run changed, in tmp_path."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.journal import Journal

REPO = Path(__file__).resolve().parents[2]


def on_disk(path):
    return json.loads((path / "journal.json").read_text())


def test_begin_add_replace_remove_finish(tmp_path):
    j = Journal(tmp_path)
    assert j.stale() is None
    j.begin({"run": "0", "merge_across_nodes": "1"})
    assert on_disk(tmp_path) == {"pid": os.getpid(), "knobs": {"run": "0", "merge_across_nodes": "1"},
                                 "entries": [], "next_id": 1}
    swap = j.add("swap", {"device": ""})
    cg = j.add("cgroups", {"path": "/sys/fs/cgroup/memory/ksm-harness/run-1"})
    j.replace(swap, {"device": "/dev/loop3"})  # a newer description keeps its place
    assert [(e["kind"], e["entry"]) for e in on_disk(tmp_path)["entries"]] == [
        ("swap", {"device": "/dev/loop3"}), ("cgroups", {"path": "/sys/fs/cgroup/memory/ksm-harness/run-1"})]
    j.remove(swap)
    assert [e["id"] for e in on_disk(tmp_path)["entries"]] == [cg]
    j.finish()
    assert not (tmp_path / "journal.json").exists()
    assert j.stale() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .tmp left behind


KILLED = """
import os, sys
from harness.journal import Journal
j = Journal(sys.argv[1])
j.begin({"run": "1"})
j.add("faultinject", {"block": "loop3"})
j.add("faultinject", {"block": "loop3", "second": True})
os.kill(os.getpid(), 9)
"""


def test_stale_after_kill_and_adopt(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], cwd=REPO, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stale = Journal(tmp_path).stale()
    assert stale["knobs"] == {"run": "1"}
    assert [e["entry"] for e in stale["entries"]] == [{"block": "loop3"}, {"block": "loop3", "second": True}]
    j = Journal(tmp_path)
    j.adopt(stale)
    j.remove(stale["entries"][1]["id"])  # undone newest first; what is left stays on disk
    assert [e["entry"] for e in Journal(tmp_path).stale()["entries"]] == [{"block": "loop3"}]
    assert j.add("swap", {}) == 3


def test_corrupt_journal(tmp_path):
    (tmp_path / "journal.json").write_text('{"knobs": {"run"')
    assert Journal(tmp_path).stale() == {"knobs": {}, "entries": [], "corrupt": True}


def test_journal_of_an_older_harness(tmp_path):
    """One list per kind: read in the order a scenario makes them, numbered."""
    (tmp_path / "journal.json").write_text(json.dumps(
        {"pid": 7, "knobs": {"run": "0"}, "swap": [{"device": "/dev/loop0"}], "cgroups": [{"path": "p"}],
         "faultinject": [{"block": "loop0"}]}))
    stale = Journal(tmp_path).stale()
    assert stale["entries"] == [{"id": 1, "kind": "swap", "entry": {"device": "/dev/loop0"}},
                                {"id": 2, "kind": "cgroups", "entry": {"path": "p"}},
                                {"id": 3, "kind": "faultinject", "entry": {"block": "loop0"}}]
