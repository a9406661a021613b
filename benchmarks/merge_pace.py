"""How fast the harness sees a merge: from the run=1 write to `wait` seeing
every page merged, against ksmd's own pace.

Goal: at most 1.1x the time ksmd needs at its pace (pages_to_scan pages per
sleep_millisecs).  Merging takes two full scans of the mergeable pages: the
first visit of a page only records its checksum, the second inserts it in the
unstable tree or merges it with its twin there (mm/ksm.c cmp_and_merge_page()).
On paper that is 2 x pages / pages_to_scan x sleep_millisecs; in practice
ksmd sleeps longer than sleep_millisecs (its timeout is rounded up to whole
jiffies and then some), so the bound uses its real pace, measured in the same
run as the time of two more full scans of the same pages.  Runs
merge-pace.yaml (through the CLI, which takes the KSM lock and restores the
knobs) a few times and prints the medians and the bound; exits 1 when the
median is over it.  Needs root and KSM; run it alone.

    .venv/bin/python benchmarks/merge_pace.py [--runs N]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import scenario  # noqa: E402

SCENARIO = HERE / "merge-pace.yaml"
FULL_SCANS_TO_MERGE = 2
BOUND = 1.1


def paper_seconds(sc):
    knobs = dict(sc.knobs)
    pages = sum(g.count * r.npages for g in sc.workers for r in g.regions)
    batches = FULL_SCANS_TO_MERGE * pages / int(knobs["pages_to_scan"])
    return batches * int(knobs["sleep_millisecs"]) / 1000


def timings(result):
    """(run=1 write to the wait seeing the merge, two full scans), from the
    step timeline."""
    steps = result["scenarios"][0]["steps"]
    start = next(s for s in steps if s["name"] == "knob run=1")
    merged = next(s for s in steps if s["name"].startswith("wait a.r.ksm"))
    scans = next(s for s in steps if s["name"] == "wait +full_scans >= 2")
    return merged["end"] - start["t"], scans["end"] - scans["t"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    (sc,) = scenario.load_file(SCENARIO)
    times, scans = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        for _ in range(args.runs):
            argv = [sys.executable, "-m", "harness", "run", "-q", "--json", str(out), str(SCENARIO)]
            print("$", " ".join(argv), file=sys.stderr)
            proc = subprocess.run(argv, cwd=HERE.parent)
            result = json.loads(out.read_text())
            if proc.returncode != 0:
                print(f"merge-pace did not pass: {result['scenarios'][0]['reason']}")
                return 1
            merged, two_scans = timings(result)
            times.append(merged)
            scans.append(two_scans)
    ksmd = statistics.median(scans)
    median = statistics.median(times)
    good = median <= BOUND * ksmd
    print(f"run=1 to merged seen: {median:.2f} s median of {args.runs} (min {min(times):.2f}, max "
          f"{max(times):.2f}); ksmd's two full scans: {ksmd:.2f} s ({paper_seconds(sc):.2f} s on paper); "
          f"bound <= {BOUND * ksmd:.2f} s ({BOUND}x): {'OK' if good else 'OVER'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
