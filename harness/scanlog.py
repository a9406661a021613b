"""`ksm-harness scan-log FILE [--json]`: list the kernel reports in a saved log.

Accepts dmesg output, /dev/kmsg dumps, journal/syslog files and serial console logs
(see harness.crash).  Exit 0: no report; 1: reports found; 2: the file is unreadable.
"""
import argparse
import json
import sys

from .crash import scan_text
from .errors import EXIT_FAIL, EXIT_PASS, EXIT_USAGE


def _parser():
    parser = argparse.ArgumentParser(
        prog="ksm-harness scan-log",
        description="Find kernel reports (BUG, WARNING, KASAN, lockdep, ...) in a kernel log.",
    )
    parser.add_argument("file", metavar="FILE", help="dmesg output, /dev/kmsg dump or console log ('-' = stdin)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    return parser


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8", "replace")
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def main(argv) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (argparse printed it)
        return EXIT_PASS if not exc.code else EXIT_USAGE
    try:
        text = _read(args.file)
    except OSError as exc:
        print(f"ksm-harness scan-log: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    crashes = scan_text(text)
    if args.json:
        out = {"crashes": [{"kind": c.kind, "title": c.title, "line": c.line, "corrupted": c.corrupted,
                            "lines": list(c.lines)} for c in crashes]}
        print(json.dumps(out, indent=2))
    else:
        for c in crashes:
            print(f"{args.file}:{c.line}: {c.title} [{c.kind}{', corrupted' if c.corrupted else ''}]")
            for line in c.lines:
                print(f"    {line}")
            print()
        count = f"{len(crashes)} kernel report{'s' if len(crashes) != 1 else ''}" if crashes else "no kernel report"
        print(f"{count} found in {args.file}")
    return EXIT_FAIL if crashes else EXIT_PASS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
