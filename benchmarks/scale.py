"""How the harness's own costs grow with pages and workers.

Goal: wall time, the harness's CPU time and its peak RSS (the `ksm-harness
run` process plus its zygote; the workers' regions are the test's memory,
not the harness's) grow linearly with pages and with workers, and each
worker costs the harness less than 2 MiB.  Up to 256 workers and several
GiB of regions in total.

For each point a scenario is generated into a temporary directory: W
workers share P pages (groups of identical pages, so they merge across
workers), run=1 for three full scans (two merge every page: mm/ksm.c
cmp_and_merge_page()), run=0 (the page truth of every counter is checked
there), then every page must be a KSM page and hold its data.  The wait is
on a counter, not on every page: a per-page wait re-reads every worker's
pagemap at each poll for as long as ksmd takes, so its cost would follow
the machine's load.  It runs through `ksm-harness run` (which takes the
KSM lock and puts the knobs back); the wall time is the run's own duration
in its JSON result, from the lock taken to the knobs put back (not a wait
for the lock).  The harness and its zygote are sampled from /proc every
50 ms; the harness's own CPU time is read from its zombie before it is
reaped, so none of it is lost.

Linear growth: in each series (pages doubling at fixed workers, workers
doubling at fixed pages) every point lies within 15% of the least-squares
line through the series (a term growing as the square leaves the line;
noise from other load on a shared machine mostly does not).  Per-worker
overhead: the slope of harness + zygote peak RSS over the workers series.
Needs root and KSM, and about 2x the largest point's memory free.

    .venv/bin/python benchmarks/scale.py [--quick] [--repeat N] [--point WORKERS GIB]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

GIB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
RESIDUAL_BOUND = 0.15  # every point within 15% of the least-squares line through its series
WORKER_BOUND = 2 << 20  # bytes of harness memory per worker
# (workers, GiB of regions in total): pages doubling at 64 workers, workers doubling at 2 GiB
PAGES_SERIES = [(64, 1), (64, 2), (64, 4)]
WORKERS_SERIES = [(32, 2), (64, 2), (128, 2), (256, 2)]
QUICK = ([(16, 0.25), (16, 0.5), (16, 1)], [(16, 0.5), (32, 0.5), (64, 0.5)])

SCENARIO = """\
# Scale: {workers} workers share {gib} GiB of pages in 64 groups of identical
# pages; ksmd merges them across workers in two full scans (mm/ksm.c
# cmp_and_merge_page()), the truth of every counter is checked at run=0, and
# every page is a KSM page and is verified.
name: scale-w{workers}-{mib}m
description: {workers} workers, {gib} GiB, merged, checked and verified.
requires:
  knobs: [pages_to_scan, sleep_millisecs, full_scans]
timeout: 1800
setup:
  knobs: {{pages_to_scan: 20000, sleep_millisecs: 0}}
workers:
  - name: w
    count: {workers}
    regions:
      - name: r
        size: "{pages} pages"
        pattern: {{kind: groups, seed: 18, groups: 64}}
steps:
  - knob: {{run: 1}}
  - wait: {{until: "+full_scans >= 3", timeout: 1500}}
  - knob: {{run: 0}}
expect:
  - "w.r.ksm == 100%"
  - data: intact
"""


def proc_stat(pid):
    """(CPU seconds of the process itself, peak RSS bytes), None once gone.
    A zombie keeps its times in /proc/PID/stat but has no mm (no VmHWM)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of proc(5))
    hwm = [int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
    return cpu, hwm[0] if hwm else 0


class Watch(threading.Thread):
    """Samples the harness and its zygote until the harness exits."""

    def __init__(self, harness_pid):
        super().__init__(daemon=True)
        self.pid = harness_pid
        self.zygote = None  # pid, once seen
        self.last = {}  # "harness"/"zygote" -> (cpu s, peak rss bytes), the last read
        self.peak_workers = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.05):
            if self.zygote is None:
                try:
                    kids = psutil.Process(self.pid).children()
                except psutil.NoSuchProcess:
                    continue
                self.zygote = next((k.pid for k in kids if "harness.zygote" in " ".join(k.cmdline())), None)
            for who, pid in (("harness", self.pid), ("zygote", self.zygote)):
                seen = proc_stat(pid) if pid else None
                if seen:
                    cpu, rss = seen
                    self.last[who] = (cpu, max(rss, self.last.get(who, (0, 0))[1]))
            if self.zygote:
                try:
                    self.peak_workers = max(self.peak_workers, len(psutil.Process(self.zygote).children()))
                except psutil.NoSuchProcess:
                    pass


def run_point(workers, gib, tmp):
    pages = int(gib * GIB) // PAGE // workers
    path = Path(tmp) / f"scale-{workers}-{gib}.yaml"
    path.write_text(SCENARIO.format(workers=workers, gib=gib, mib=int(gib * 1024), pages=pages))
    out = Path(tmp) / "result.json"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "-q", "--json", str(out), str(path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watch = Watch(proc.pid)
    watch.start()
    # wait for its exit without reaping it: its zombie still tells its own CPU time
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    wall = time.monotonic() - started
    watch.stop.set()
    watch.join()
    final = proc_stat(proc.pid)
    err = proc.communicate()[1]
    harness_cpu = final[0] if final else watch.last.get("harness", (0, 0))[0]
    result = json.loads(out.read_text()) if out.exists() else {"scenarios": [{"status": "none", "reason": err}]}
    sc = result["scenarios"][0]
    # the run's own duration: from the lock taken to the knobs put back (a
    # wait for another KSM driver's lock is not the harness's cost)
    return {"workers": workers, "gib": gib, "pages": pages * workers, "wall": result.get("duration", wall),
            "exit": proc.returncode,
            "status": sc["status"], "reason": sc.get("reason", ""), "scenario_s": sc.get("duration", 0),
            "cpu": harness_cpu + watch.last.get("zygote", (0, 0))[0],
            "rss": watch.last.get("harness", (0, 0))[1] + watch.last.get("zygote", (0, 0))[1],
            "harness_rss": watch.last.get("harness", (0, 0))[1], "zygote_rss": watch.last.get("zygote", (0, 0))[1],
            "seen_workers": watch.peak_workers}


def line_fit(xs, ys):
    """Least squares y = a + b x -> (a, b)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def hold_linear(name, points, unit, label):
    """Fit a line to wall, CPU and RSS over the series and print its slope;
    True when every point lies within RESIDUAL_BOUND of it (a cost growing
    as the square of pages or workers leaves the line at both ends; noise on
    a loaded machine stays near it)."""
    good = True
    for key, what, scale in (("wall", "wall s", 1), ("cpu", "harness CPU s", 1), ("rss", "harness RSS MiB", 1 << 20)):
        xs, ys = [p[unit] for p in points], [p[key] / scale for p in points]
        a, b = line_fit(xs, ys)
        off = [abs(y - (a + b * x)) / y for x, y in zip(xs, ys)]
        ok = max(off) <= RESIDUAL_BOUND
        good &= ok
        print(f"  {name}: {what}: {', '.join(f'{y:.4g}' for y in ys)}; line {a:.4g} + {b:.4g} per {label}, "
              f"farthest point {max(off):.1%} off it (bound <= {RESIDUAL_BOUND:.0%}) {'OK' if ok else 'NOT LINEAR'}")
    return good


def least(runs):
    """Of repeated runs of a point, the least wall, CPU and RSS (what other
    load on the machine added is not the harness's), or the first that did
    not pass."""
    failed = [r for r in runs if r["status"] != "pass"]
    if failed:
        return failed[0]
    return {**runs[0], **{k: min(r[k] for r in runs) for k in ("wall", "scenario_s", "cpu", "rss", "harness_rss",
                                                               "zygote_rss")}}


def show(p):
    print(f"  {p['workers']:>4} workers {p['gib']:>5g} GiB: {p['status']:<5} run {p['wall']:7.1f} s "
          f"(scenario {p['scenario_s']:.1f} s), harness CPU {p['cpu']:7.2f} s, peak RSS harness "
          f"{p['harness_rss'] / (1 << 20):6.1f} MiB + zygote {p['zygote_rss'] / (1 << 20):5.1f} MiB"
          + (f"  [{p['reason'][:200]}]" if p["status"] != "pass" else ""), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small points (16 to 64 workers, up to 1 GiB)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each point N times and keep the least (default 1)")
    p.add_argument("--point", nargs=2, type=float, metavar=("WORKERS", "GIB"), help="measure this point alone")
    args = p.parse_args()
    if os.geteuid() != 0 or not Path("/sys/kernel/mm/ksm/run").exists():
        print("needs root and KSM")
        return 125
    if args.point:
        with tempfile.TemporaryDirectory(prefix="ksm-scale-") as tmp:
            point = run_point(int(args.point[0]), args.point[1], tmp)
        show(point)
        return 0 if point["status"] == "pass" else 1
    pages_series, workers_series = QUICK if args.quick else (PAGES_SERIES, WORKERS_SERIES)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ksm-scale-") as tmp:
        for point in dict.fromkeys(pages_series + workers_series):
            runs = [run_point(*point, tmp) for _ in range(args.repeat)]
            results[point] = least(runs)
            show(results[point])
    good = all(r["status"] == "pass" for r in results.values())
    by_pages = [results[x] for x in pages_series]
    by_workers = [results[x] for x in workers_series]
    for r in results.values():
        r["mpages"] = r["pages"] / 1e6
    good &= hold_linear("pages", by_pages, "mpages", "million pages")
    good &= hold_linear("workers", by_workers, "workers", "worker")
    counts = [r["workers"] for r in by_workers]
    per_worker = line_fit(counts, [r["rss"] for r in by_workers])[1]
    cpu_per_worker = line_fit(counts, [r["cpu"] for r in by_workers])[1]
    ok = per_worker < WORKER_BOUND
    good &= ok
    print(f"  per worker: harness + zygote peak RSS {per_worker / 1024:.0f} KiB (bound < {WORKER_BOUND >> 10} KiB) "
          f"{'OK' if ok else 'OVER'}; harness CPU {cpu_per_worker * 1000:.1f} ms")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
