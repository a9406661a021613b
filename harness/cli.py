"""ksm-harness command line: thin shells over scenario, runner and report.

Exit codes: errors.EXIT_CODES_HELP (also shown by --help).
"""
import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from pathlib import Path

from . import damage, errors, heartbeat, report, requirements, runner, scenario
from .lock import MachineLock
from .report import RENDERERS, kcidb
from .report.terminal import Progress, summary
from .results import ERROR, FAIL, SKIP

DEFAULT_SUITE = Path(__file__).resolve().parent.parent / "scenarios"


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # prog is "ksm-harness" or "ksm-harness run"
        raise errors.InputError(f"usage: {message} (see {self.prog} --help)")


def add_selection(p):
    p.add_argument("paths", nargs="*", help="scenario files or directories (default: the default suite)")
    p.add_argument("-k", dest="keyword", help="only scenarios whose name contains this")


def selected(args):
    return scenario.load_all(args.paths or [DEFAULT_SUITE], args.keyword)


def repeated(scenarios, times):
    """The selection `times` over, named NAME#1 .. NAME#N (N > 1): hunting a
    rare race, or showing that a suite raises no false alarm."""
    if times == 1:
        return scenarios
    return [dataclasses.replace(sc, name=f"{sc.name}#{k}") for k in range(1, times + 1) for sc in scenarios]


def cmd_run(args):
    scenarios = selected(args)
    if not scenarios:
        raise errors.InputError("no scenario matches", field="-k")
    if args.repeat < 1:
        raise errors.InputError("must be at least 1", field="--repeat")
    scenarios = repeated(scenarios, args.repeat)
    outputs = {fmt: getattr(args, fmt) for fmt in RENDERERS if getattr(args, fmt)}
    on_stdout = [f"--{fmt}" for fmt, path in outputs.items() if path == report.STDOUT]
    if len(on_stdout) > 1:
        raise errors.InputError("only one report can go to standard output", field=" and ".join(on_stdout))
    if "kcidb" in outputs:
        kcidb.identity()  # a bad KSM_HARNESS_KCIDB_* fails now, before the run
    progress = Progress(sys.stderr, enabled=not args.quiet)
    beat = heartbeat.Heartbeat.from_env(progress, scenarios)  # in a `ksm-harness vm` guest
    if beat:
        scenarios, progress = beat.remaining(scenarios), beat.start()
    try:
        result = runner.run_all(scenarios, progress, wait=not args.no_wait,
                                say=lambda m: print(m, file=sys.stderr),
                                allow_kernel_damage=args.allow_kernel_damage)
        for fmt, path in outputs.items():
            report.write(fmt, result, path)
        # A report on stdout (`--ktap -` for LAVA) is all that goes there.
        human = sys.stderr if on_stdout else sys.stdout
        print(summary(result, colour=human.isatty()), end="", file=human)
    finally:
        if beat:
            beat.close()  # its last heartbeat says "finished": results are written
    return exit_status({s.status for s in result.scenarios})


def exit_status(statuses):
    """FAIL is the kernel's (1), ERROR is ours (3), nothing ran (125)."""
    if FAIL in statuses:
        return errors.EXIT_FAIL
    if ERROR in statuses:
        return errors.EXIT_ERROR
    if not statuses - {SKIP}:
        return errors.EXIT_CANNOT_RUN
    return errors.EXIT_PASS


def for_bisect(code):
    """`git bisect run` reads 125 as "cannot test this commit": harness
    trouble must not mark a commit bad."""
    return errors.EXIT_CANNOT_RUN if code == errors.EXIT_ERROR else code


def cmd_list(args):
    for s in selected(args):
        print(f"{s.name}\t{s.file}:{s.line}")
    return 0


def cmd_check(args):
    scenarios = selected(args)
    print(f"{len(scenarios)} scenarios valid")
    return 0


def cmd_env(args):
    from . import kernel, numa
    from .knobs import Knobs

    roots = runner.Roots()
    facts = kernel.facts()
    knobs = Knobs(roots.ksm)
    print(f"kernel:      {facts.release}")
    print(f"ksm knobs:   {', '.join(knobs.settings()) or 'none (no KSM)'}")
    print(f"ksm counters:{' ' + ', '.join(knobs.counters()) if knobs.exists() else ' none'}")
    print(f"numa nodes:  {numa.nodes_with_memory()} (with memory)")
    print(f"thp:         {facts.thp.mode if facts.thp else 'not available'}")
    print(f"ksm_stat:    {'yes' if facts.ksm_stat else 'no'}; kpageflags readable: {facts.kpageflags}")
    print(f"memcg:       {facts.memcg or 'available'}")
    ctx = runner.RunContext(roots, None, None)
    for kind in ("file", "zram"):
        print(f"swap {kind + ':':7}{ctx.swap.available(kind) or 'available'}")
    # looking for fault injection may mount debugfs for a moment: as root, not during a run
    with MachineLock().hold(on_wait=lambda pid: print(f"waiting for ksm-harness pid {pid}...", file=sys.stderr)) \
            if os.geteuid() == 0 else contextlib.nullcontext():
        print(f"fault inj.:  {ctx.faults.available() or 'available'}")
        try:
            from . import qemu
            print(f"vm accel:    {qemu.describe_accel()}")
        except (ImportError, AttributeError):
            pass
        print()
        for s in selected(args):
            why = requirements.reasons(s, ctx)
            print(f"{'SKIP' if why else 'runs'}  {s.name}" + (f": {'; '.join(why)}" if why else ""))
    return 0


def cmd_schema(args):
    from .steps import reference, schema
    print(reference.text() if args.reference else schema.text(), end="")
    return 0


def cmd_restore(args):
    runner.restore(say=print)
    return 0


def build_parser():
    p = Parser(prog="ksm-harness", description="Drive Linux KSM on the running kernel from scenario files.",
               epilog=errors.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="show every command the harness runs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run scenarios against the running kernel", epilog=errors.EXIT_CODES_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection(run)
    for fmt in RENDERERS:
        run.add_argument(f"--{fmt}", metavar="PATH", help=f"write {fmt} results to PATH (- for stdout)")
    run.add_argument("--no-wait", action="store_true", help="fail at once if another run holds the KSM lock")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run the selection N times over in one run (NAME#1 .. NAME#N)")
    run.add_argument("--bisect", action="store_true",
                     help=f"for `git bisect run`: exit {errors.EXIT_CANNOT_RUN} (skip the commit) where a "
                          f"scenario errored or nothing ran, instead of {errors.EXIT_ERROR}")
    run.add_argument(damage.ALLOW_OPTION, action="store_true",
                     help="let steps that damage the kernel for good (do: provoke, do: hwpoison) run outside a "
                          "ksm-harness VM guest: only on a machine you will reboot")
    run.set_defaults(fn=cmd_run)
    for name, fn, help_ in (("list", cmd_list, "list scenarios"), ("check", cmd_check, "validate scenarios only"),
                            ("env", cmd_env, "what this machine offers, and which scenarios would skip")):
        s = sub.add_parser(name, help=help_)
        add_selection(s)
        s.set_defaults(fn=fn)
    schema = sub.add_parser("schema", help="print the JSON schema of scenario files (generated from the step "
                                           "classes; harness/schema/scenario.schema.json is its output)")
    schema.add_argument("--reference", action="store_true",
                        help="print the scenario reference instead (docs/reference.md is its output)")
    schema.set_defaults(fn=cmd_schema)
    from .explore.command import add_parser as add_explore  # imports Hypothesis
    add_explore(sub)
    sub.add_parser("restore", help="put back what a killed run left (knobs, swap, cgroups)").set_defaults(
        fn=cmd_restore)
    sub.add_parser("scan-log", help="find kernel crash reports in a saved log", add_help=False)
    sub.add_parser("vm", help="boot a kernel under qemu and run scenarios inside", add_help=False)
    sub.add_parser("lava-report", help="report a JSON result to LAVA (lava-test-case per scenario)", add_help=False)
    sub.add_parser("perf", help="merge, THP merge, unmerge and COW throughput, as kselftest's ksm_tests measures it",
                   add_help=False)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # scan-log, vm, lava-report and perf own their argument parsing
    passthrough = {"scan-log": "scanlog", "vm": "vmcli", "lava-report": "lava", "perf": "perf"}
    verbose = "-v" in argv[:1] or "--verbose" in argv[:1]
    if verbose:
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if argv and argv[0] in passthrough:
        module = __import__(f"harness.{passthrough[argv[0]]}", fromlist=["main"])
        return guarded(lambda: module.main((["--verbose"] if verbose and argv[0] == "vm" else []) + argv[1:]))
    bisect = []

    def command():
        args = build_parser().parse_args(argv)
        bisect.append(getattr(args, "bisect", False))
        return args.fn(args)

    code = guarded(command)
    return for_bisect(code) if any(bisect) else code


def guarded(command):
    """Run a command; the harness's exceptions become their exit codes."""
    try:
        return command()
    except errors.InputError as exc:
        print(f"ksm-harness: {exc}", file=sys.stderr)
        return errors.EXIT_USAGE
    except errors.HarnessError as exc:
        print(f"ksm-harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ksm-harness: interrupted; knobs, swap and workers were put back", file=sys.stderr)
        return 130
    except runner.Interrupted as exc:
        print(f"ksm-harness: {exc}; knobs, swap and workers were put back", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
