"""The restore matrix: kill the harness, or make a command it runs fail, at
each phase of a run; then check that the machine is as it was found.

Goal: after every case, either the run itself or `ksm-harness restore` puts
back knobs, swap areas, loop devices, tmpfs mounts, cgroups, fault injection
(where the kernel has it) and processes, compared with a probe
(harness/probe.py) taken before; a second `restore` has nothing to do.  Prints
one row per case (what was tried, the exit code, what the run left, what
restore said, what was left after it) and exits 1 if any case leaves
something behind.

How phases are found, from outside: the harness runs losetup, mkswap,
swapon, swapoff, mount and umount by name, so a directory of logging
wrappers put first on its PATH says which command it is at (a wrapper logs
its argv and execs the real program; when its command line starts with
KSMH_MATRIX_FAIL, "losetup -d" say, it fails instead).  Other phases are seen in /proc and sysfs: the
knobs a scenario sets, fork-storm children, the run's cgroup.  Signals are
sent to the harness's process group, as a terminal sends Ctrl-C.  A cgroup
rmdir is made to fail for real, by a child cgroup made inside the run's.
A swapoff in progress is a real one: a helper process holds 448 MiB paged
out into the run's 512 MiB swap device, which swapoff reads back
(mm/swapfile.c try_to_unuse()); the row says if swapoff was still running
when the signal went.

Fault injection is checked where the kernel has fail_make_request: the
"armed twice" cases kill a run that armed it twice on its swap device (the
second arm journals the first one's values as "previous", so only undoing
the journal newest first disarms it).  This host's kernel has none:
`--in-guest BZIMAGE` boots a kernel that has (the shared 6.1 kernels) under
qemu and runs the matrix there, `-k armed` by default.

Needs root, KSM, loop swap and a memory cgroup; takes about 90 s here.  Run it
alone (the runs it starts take the machine lock; it holds no lock itself).

    .venv/bin/python benchmarks/restore_matrix.py [-k SUBSTR] [--in-guest BZIMAGE]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import cgroup, journal, probe, vm  # noqa: E402
from harness.knobs import Knobs  # noqa: E402
from harness.swap import parse_swaps  # noqa: E402
from harness.wait import wait_until  # noqa: E402

DATA = REPO / "tests" / "data" / "scenarios"
COMMANDS = ("losetup", "mkswap", "swapon", "swapoff", "mount", "umount")
SHIM = """#!/bin/sh
# restore_matrix: log this command, fail it if asked, else run the real one
echo "{name} $*" >> "$KSMH_MATRIX_LOG"
case "{name} $*" in
"$KSMH_MATRIX_FAIL"*)
    if [ -n "$KSMH_MATRIX_FAIL" ]; then
        echo "{name}: made to fail by benchmarks/restore_matrix.py" >&2
        exit 1
    fi;;
esac
exec {real} "$@"
"""
class Case:
    def __init__(self, name, phase, scenario, trigger, signals=(), fail=None, block_rmdir=False, hold_swap=False):
        self.name = name  # row label
        self.phase = phase  # setup, steps, concurrent, cleanup, swapoff
        self.scenario = scenario  # a file in tests/data/scenarios
        self.trigger = trigger  # callable(run) -> True when the phase is reached
        self.signals = signals  # sent to the process group once triggered (a second one 20 ms later)
        self.fail = fail  # "NAME FIRSTARG" for the shim to fail
        self.block_rmdir = block_rmdir  # make a child cgroup in the run's once it exists
        self.hold_swap = hold_swap  # page 56 MiB out into the run's swap once it is on


class Run:
    """One `ksm-harness run` under the shims."""

    def __init__(self, case, tmp):
        self.case = case
        self.log = Path(tmp) / "commands.log"
        self.log.write_text("")
        self.json = Path(tmp) / "r.json"
        env = {**os.environ, "PATH": f"{tmp}/shims:{os.environ['PATH']}", "KSMH_MATRIX_LOG": str(self.log),
               "KSMH_MATRIX_FAIL": case.fail or ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "-q", "--json", str(self.json), str(DATA / case.scenario)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            process_group=0, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.group = Path(cgroup.find_hierarchy().mount, cgroup.PARENT, f"run-{self.proc.pid}")
        self.saw_group = False  # the group existed at some poll (cleanup_started)

    def commands(self):
        return self.log.read_text().splitlines()

    def ran(self, prefix):
        return any(line.startswith(prefix) for line in self.commands())


def swap_used_mib():
    return sum(e.used_kib for e in parse_swaps(Path("/proc/swaps").read_text())) >> 10


def knobs_set(run):
    k = Knobs()
    return k.read("pages_to_scan") == "1234" and k.read("run") == "1"


def cleanup_started(run):
    """The run's cgroup (made in setup) is gone: the scenario's cleanup is under way."""
    if run.group.exists():
        run.saw_group = True
    return run.saw_group and not run.group.exists()


def armed_twice(run):
    """The run journaled its second fault-injection arm."""
    stale = journal.Journal().stale()
    return bool(stale) and [e["kind"] for e in stale["entries"]].count("faultinject") == 2


def storm_children(run):
    zygotes = [p for p in probe.take().processes if "harness.zygote" in p]
    return len(zygotes) > 3  # the zygote, two workers, and their children


def cases(fault_injection):
    rows = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        name = sig.name
        if fault_injection:
            rows.append(Case(f"{name} armed twice", "steps", "armed-twice.yaml", armed_twice, (sig,)))
        rows += [
            Case(f"{name} in setup", "setup", "long-wait.yaml", lambda r: r.ran("mkswap"), (sig,)),
            Case(f"{name} in steps", "steps", "long-wait.yaml", knobs_set, (sig,)),
            Case(f"{name} in concurrent", "concurrent", "long-concurrent.yaml", storm_children, (sig,)),
            Case(f"{name} in cleanup", "cleanup", "quick-scans.yaml", cleanup_started, (sig,)),
            Case(f"{name} in swapoff", "swapoff", "quick-scans.yaml", lambda r: r.ran("swapoff"), (sig,),
                 hold_swap=True),
        ]
    rows += [
        Case("SIGINT twice in swapoff", "swapoff", "quick-scans.yaml", lambda r: r.ran("swapoff"),
             (signal.SIGINT, signal.SIGINT), hold_swap=True),
        Case("mount fails", "setup", "quick-scans.yaml", None, fail="mount -t"),
        Case("losetup --find fails", "setup", "quick-scans.yaml", None, fail="losetup --find"),
        Case("mkswap fails", "setup", "quick-scans.yaml", None, fail="mkswap /dev/loop"),
        Case("swapoff fails", "cleanup", "quick-scans.yaml", None, fail="swapoff /dev/loop"),
        Case("losetup -d fails", "cleanup", "quick-scans.yaml", None, fail="losetup -d"),
        Case("umount fails", "cleanup", "quick-scans.yaml", None, fail="umount /tmp"),
        Case("cgroup rmdir fails", "cleanup", "quick-scans.yaml", None, block_rmdir=True),
        Case("SIGINT, then rmdir fails", "steps", "long-wait.yaml", knobs_set, (signal.SIGINT,), block_rmdir=True),
    ]
    return rows


def make_shims(tmp):
    shims = Path(tmp) / "shims"
    shims.mkdir()
    for name in COMMANDS:
        (shims / name).write_text(SHIM.format(name=name, real=shutil.which(name)))
        (shims / name).chmod(0o755)


def harness(*args):
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()


def run_case(case, before):
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        make_shims(tmp)
        run = Run(case, tmp)
        held = None
        running = []
        missed = False  # the run ended before the case's phase: nothing was tested
        try:
            if case.hold_swap:
                wait_until(lambda: run.ran("swapon") or run.proc.poll() is not None, 60, "swapon")
                held = probe.hold_paged_out(448)
            if case.block_rmdir:
                wait_until(lambda: run.group.is_dir() or run.proc.poll() is not None, 60, "the run's cgroup")
                (run.group / "blocker").mkdir()
            if case.trigger:
                wait_until(lambda: case.trigger(run) or run.proc.poll() is not None, 120, case.name,
                           interval=0.001)
                running = [name for _, name in probe.children(run.proc.pid) if name in probe.COMMANDS]
                if case.hold_swap:
                    running.append(f"{swap_used_mib()}M")
                missed = run.proc.poll() is not None
                for i, sig in enumerate(case.signals if not missed else ()):
                    if i:
                        time.sleep(0.02)
                    os.killpg(run.proc.pid, sig)
            _, err = run.proc.communicate(timeout=300)
        finally:
            if held:
                held.kill()
                held.wait()
            if case.block_rmdir and (run.group / "blocker").is_dir():
                (run.group / "blocker").rmdir()
        reports = run.json.exists()
        statuses = [s["status"] for s in json.loads(run.json.read_text())["scenarios"]] if reports else []
    # a SIGKILLed run's zygote, workers and swapoff die with it (PR_SET_PDEATHSIG), not at once
    wait_until(lambda: probe.take().processes == before.processes, 10, "the run's processes gone")
    after_run = probe.differences(before, probe.take())
    restore = harness("restore") if after_run else (None, [])
    after_restore = probe.differences(before, probe.take())
    again = harness("restore")
    return {
        "case": case.name, "phase": case.phase, "exit": run.proc.returncode,
        "reports": ",".join(statuses) if reports else "-",
        "left": sorted({d.split(":")[0] for d in after_run}),
        "restore": restore[0], "restore_said": restore[1][-1:] if restore[1] else [],
        "after": after_restore, "again": again[1][-1:], "seconds": time.monotonic() - started,
        "said": [line for line in err.splitlines() if line.startswith("ksm-harness:")],
        # the run's last words when it ended before the case's phase: nothing was tested
        "missed": (err.strip().splitlines() or [""])[-1] if missed else None,
        "running": " ".join(running),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", dest="keyword", help="only cases whose name contains this")
    p.add_argument("-v", dest="verbose", action="store_true", help="show what each run said (its ksm-harness: lines)")
    p.add_argument("--in-guest", type=Path, metavar="BZIMAGE",
                   help="boot this kernel under qemu and run the matrix (default -k armed) inside it")
    args = p.parse_args()
    if args.in_guest:
        return in_guest(args.in_guest, args.keyword or "armed")
    if os.geteuid() != 0 or not Knobs().exists():
        print("needs root and KSM")
        return 125
    before = probe.take()
    if before.journal:
        print("a journal is left from an earlier run: run `ksm-harness restore` first")
        return 1
    fault = "checked (the probe reads fail_make_request; armed-twice cases run)" if before.fault_injection \
        is not None else "not checked: no /sys/kernel/debug/fail_make_request on this kernel (--in-guest BZIMAGE)"
    started = time.monotonic()
    rows = [run_case(c, before) for c in cases(before.fault_injection is not None)
            if not args.keyword or args.keyword in c.name]
    print(f"{'case':<24} {'phase':<10} {'running at signal':<17} {'exit':>4} {'reports':<12} {'left after run':<38} "
          f"{'restore':>7} {'after':<6} {'2nd restore':<14} {'s':>5}")
    bad = 0
    for r in rows:
        clean = not r["after"] and r["again"] and r["again"][0].startswith("nothing to restore") and \
            r["missed"] is None
        bad += not clean
        print(f"{r['case']:<24} {r['phase']:<10} {r['running'] or '-':<17} {r['exit']:>4} {r['reports']:<12} "
              f"{', '.join(r['left']) or 'nothing':<38} {'-' if r['restore'] is None else r['restore']:>7} "
              f"{'clean' if not r['after'] else 'LEFT':<6} {'nothing to do' if clean else str(r['again']):<14} "
              f"{r['seconds']:5.1f}")
        if r["missed"] is not None:
            print(f"    MISSED: the run ended before the phase: {r['missed']}")
        for line in r["said"] if args.verbose else []:
            print(f"    {line[:150]}")
        for line in r["after"]:
            print(f"    left after restore: {line}")
    print(f"fault injection: {fault}")
    print(f"restore matrix: {len(rows) - bad} of {len(rows)} cases leave the machine as found "
          f"({time.monotonic() - started:.0f} s); bound: all: {'OK' if not bad else 'LEAKS'}")
    return 1 if bad else 0


def in_guest(kernel, keyword):
    """The matrix inside a guest of `kernel` (one node), its table on our stdout."""
    with tempfile.TemporaryDirectory() as out:
        run = vm.run_in_vm(vm.VmOptions(kernel=kernel, numa=1, timeout=1800.0),
                           [sys.executable, str(Path(__file__).resolve()), "-k", keyword], Path(out),
                           cwd=str(REPO), echo=sys.stdout)
    return run.guest_exit if run.guest_exit is not None else 1


if __name__ == "__main__":
    sys.exit(main())
