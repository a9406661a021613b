"""Wall time of the seed scenarios (scenarios/seed) on this machine.

Goal: the whole seed set finishes within 60 s on the project machine (2
cores).  Runs it once through the CLI (which takes the KSM lock and restores
the knobs) and prints each scenario's time, the total and the bound; exits 1
when the total is over it or a scenario does not pass or skip.  Needs root
and KSM; run it alone.

    .venv/bin/python benchmarks/seed_duration.py
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 60.0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "harness", "run", "-q", "--json", str(out), str(REPO / "scenarios" / "seed")]
        print("$", " ".join(argv), file=sys.stderr)
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO)
        total = time.monotonic() - started
        result = json.loads(out.read_text())
    for s in result["scenarios"]:
        print(f"  {s['status']:<5} {s['name']:<40} {s['duration']:6.2f} s")
    good = total <= BOUND_S and proc.returncode == 0
    print(f"seed scenarios: {total:.1f} s wall (harness start to exit, exit code {proc.returncode}); "
          f"bound <= {BOUND_S:.0f} s: {'OK' if good else 'OVER' if total > BOUND_S else 'FAILED'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
