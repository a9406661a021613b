"""`ksm-harness vm`: boot a kernel under qemu and run scenarios inside it.

    ksm-harness vm --kernel arch/x86/boot/bzImage [--numa N] [--cpus C] [--memory M]
        [--kernel-arg ARG]... [--modules DIR] [--timeout S] [--stop-on-crash] [--verbose] [--out DIR]
        run [run-args...] SCENARIOS...
    ksm-harness vm --kernel BZIMAGE ... explore [explore-args...]

Exit codes as for `run` (0 all pass, 1 any fail, including a guest that
panicked or hung, 2 bad input, 125 nothing could run), so that
`git bisect run ksm-harness vm --kernel arch/x86/boot/bzImage run scenarios/seed`
works in a kernel tree.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

from . import qemu, runner, vm, vmexplore, vmrun
from .report import terminal
from .errors import EXIT_FAIL, EXIT_USAGE, HarnessError, InputError

# `run` options that vm sets itself: its reports come back through the side channel.
OWN_RUN_OPTIONS = tuple(f"--{fmt}" for fmt in vm.RESULT_FILES.values())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ksm-harness vm",
        usage="%(prog)s --kernel BZIMAGE [--numa N] [--cpus C] [--memory M] [--kernel-arg ARG]...\n"
        "       [--modules DIR] [--timeout S] [--stop-on-crash] [--verbose] [--out DIR]\n"
        "       {run [run-args...] SCENARIOS... | explore [explore-args...]}",
        description="Boot a kernel under qemu (NUMA nodes, host / shared read-only) and run "
        "scenarios (or explore) inside it with this harness; results come back to --out.",
    )
    p.add_argument("--kernel", required=True, type=Path,
                   help="bzImage (or distro vmlinuz with --modules); given more than once: a kernel matrix, "
                   "one boot each and one report (matrix.md/.json/.html, kcidb.json in --out)")
    p.add_argument("--numa", type=int, default=2, help="NUMA nodes (default 2)")
    p.add_argument("--cpus", type=int, help="vCPUs, a multiple of --numa (default: one per node)")
    p.add_argument("--memory", default="2G", help="guest RAM split over the nodes (default 2G)")
    p.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="extra kernel command line argument (repeatable)")
    p.add_argument("--modules", type=Path, metavar="DIR",
                   help="/lib/modules/VERSION of a distro kernel: 9p/virtio/overlay load from it")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="seconds before a guest that sends no heartbeat counts as hung and is killed "
                        "(default 900); once it runs scenarios each is bounded by its own timeout")
    p.add_argument("--stop-on-crash", action="store_true",
                   help="one boot only: after a guest crash the remaining scenarios are reported as not run "
                        "(default: a fresh guest runs them)")
    p.add_argument("--verbose", action="store_true", help="show the qemu command line and the kernel console")
    p.add_argument("--out", type=Path, help="results dir (default ./results/vm-KERNEL-TIME/)")
    p.add_argument("command", choices=["run", "explore"], help="what to run in the guest")
    p.add_argument("run_args", nargs=argparse.REMAINDER, metavar="[run-args...] SCENARIOS | [explore-args...]",
                   help="passed to `ksm-harness run` (or `ksm-harness explore`) in the guest")
    return p


def kernel_name(kernel: Path) -> str:
    """A name for the results dir: the file name, or the version for a plain bzImage."""
    name = kernel.name[: -len(".bzImage")] if kernel.name.endswith(".bzImage") else kernel.name
    if name in ("bzImage", "vmlinuz", "vmlinux"):
        version = qemu.kernel_version(str(kernel))
        if version:
            name = version.split()[0]
    return name


def options(args: argparse.Namespace) -> vm.VmOptions:
    if not args.run_args and args.command == "run":
        raise InputError("no scenarios given after `run`", field="run")
    for arg in args.run_args:
        if arg.split("=")[0] in OWN_RUN_OPTIONS:
            raise InputError(f"{arg}: vm sets the report files itself; use --out DIR", field="run")
    if args.timeout <= 0:
        raise InputError(f"{args.timeout:g}: want seconds > 0", field="--timeout")
    return vm.VmOptions(
        kernel=args.kernel,
        numa=args.numa,
        cpus=args.cpus,
        memory_mib=qemu.parse_memory(args.memory),
        kernel_args=tuple(args.kernel_arg),
        modules=args.modules,
        timeout=args.timeout,
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Run `ksm-harness vm` with argv (the arguments after `vm`); return the exit code."""
    from . import matrix  # several --kernel: one boot each, one report (harness/matrix.py)

    if len(matrix.kernels_in(argv or [])) > 1:
        return matrix.main(argv or [])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        opts = options(args)
        version = qemu.kernel_version(str(args.kernel))
        out = args.out or Path("results") / f"vm-{kernel_name(args.kernel)}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"kernel: {args.kernel}" + (f" ({version})" if version else ""), file=sys.stderr)
        print(f"results: {out}", file=sys.stderr)
        # SIGTERM unwinds too: qemu is killed and the side channel removed (vm.py's finally clauses)
        with runner.unwinding_on_term():
            if args.command == "explore":
                return explored(vmexplore.explore_across_boots(opts, args.run_args, out, echo=sys.stdout,
                                                               verbose=args.verbose))
            run = vmrun.run_scenarios(opts, args.run_args, out, stop_on_crash=args.stop_on_crash,
                                      echo=sys.stdout, verbose=args.verbose)
    except HarnessError as exc:
        print(f"ksm-harness vm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if run.result is not None:
        print(f"--- {run.out / vm.RESULT_JSON}:")
        sys.stdout.write(terminal.summary(run.result))
    else:
        print(f"no results came back from the guest (see {run.out / 'guest.log'})")
    for crash in run.crashes:
        print(f"console.log: {terminal.crash_text(crash)}")
    verdict = "PASS" if run.status == 0 else "FAIL" if run.status == EXIT_FAIL else f"exit {run.status}"
    print(f"{verdict}" + (f": {run.reason}" if run.reason else "") + f"  [results: {run.out}]")
    return run.status


def explored(boots) -> int:
    """Print what an exploration in a guest found, boot by boot (vmexplore.VmExplore each); its exit code."""
    from .explore import report  # imports Hypothesis

    for run in boots:
        if run.data is not None:
            print(f"--- {run.boot.out / vmexplore.GUEST_JSON}:")
            sys.stdout.write(report.summary(run.data))
        else:
            print(f"ERROR: {run.boot.reason}; no verdict on the kernel: {run.emulator}" if run.emulator
                  else f"FAIL: {run.boot.reason}")
            print(f"  the example it was running: {run.crash_reproducer or 'none written yet'}")
        for crash in run.boot.crashes:
            print(f"console.log: {terminal.crash_text(crash)}")
        if run.replay:
            print(f"  replayed {run.replay.runs} times, a boot after each crash: failed {run.replay.failed} of "
                  f"{run.replay.runs} [{run.replay.out}]")
        print(f"[results: {run.boot.out}]")
    if len(boots) > 1:
        print(f"{len(boots)} boots: {sum(1 for b in boots if b.crash_reproducer)} ended in a crash")
    return vmexplore.status_of_all(boots)
