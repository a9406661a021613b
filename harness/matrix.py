"""A kernel matrix in one report: the same selection on several kernels.

    ksm-harness vm --kernel A.bzImage --kernel B.bzImage ... [vm options] run [run-args...] SCENARIOS

boots each kernel in turn (one boot each, with the same machine and the same
scenarios: `ksm-harness vm` for one kernel, harness/vm.py), keeps each boot's
files in OUT/KERNEL/, and writes one report of them all into OUT:

    matrix.json   every kernel's result, read back from its guest
    matrix.md     the kernels x scenarios table (Markdown, as in the README)
    matrix.html   the same table as one self-contained page
    kcidb.json    KCIDB v5.3: one build per kernel, one test per scenario and kernel

A scenario's matrix points share a column: "PASS", "SKIP: reason", or
"**FAIL** 4 of 4: the first failed check".
"""
import dataclasses
import html
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import vm, vmcli
from .errors import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, HarnessError, InputError
from .report import json_report, kcidb
from .report.terminal import check_text, one_line
from .report.testid import base
from .results import FAIL, PASS, SKIP, RunResult

FORMAT = "ksm-harness-matrix"  # the "format" key of matrix.json
VERSION = 1
REPORT_FILES = ("matrix.json", "matrix.md", "matrix.html", "kcidb.json")


@dataclasses.dataclass(frozen=True)
class KernelRun:
    """One kernel's boot in the matrix."""

    label: str  # the kernel's name: its file name without .bzImage ("ksm-6.1.192-fixed")
    image: str  # the kernel image booted
    status: int  # `ksm-harness vm` exit code for this boot: 0 pass, 1 fail, ...
    reason: str  # why the boot failed, one line ("" when it passed)
    result: Optional[RunResult]  # what the guest reported; None when nothing came back


def kernels_in(argv: Sequence[str]) -> List[str]:
    """The --kernel values before the `run` command."""
    return split_argv(argv)[0]


def split_argv(argv: Sequence[str]) -> Tuple[List[str], Optional[str], List[str]]:
    """(kernels, --out value, the other arguments) of a `vm` command line;
    only the options before `run` are looked at, the rest is the guest's."""
    kernels, out, rest = [], None, []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word == "run":
            rest += [word] + words
            break
        name, eq, value = word.partition("=")
        if name in ("--kernel", "--out"):
            if not eq:
                if not words:
                    raise InputError(f"{name} needs a value", field=name)
                value = words.pop(0)
            if name == "--kernel":
                kernels.append(value)
            else:
                out = value
        else:
            rest.append(word)
    return kernels, out, rest


def run_matrix(argv: Sequence[str], out: Path, echo=sys.stdout) -> List[KernelRun]:
    """Boot every kernel of `argv` in turn with the rest of `argv`; one KernelRun each."""
    kernels, _, rest = split_argv(argv)
    labels = [vmcli.kernel_name(Path(k)) for k in kernels]
    if len(set(labels)) != len(labels):
        raise InputError(f"two kernels have the same name ({', '.join(labels)}): rename one", field="--kernel")
    parsed = []
    for kernel in kernels:  # every command line checked before the first boot
        if not Path(kernel).is_file():
            raise InputError(f"{kernel}: no such kernel image", field="--kernel")
        args = vmcli.parser().parse_args(["--kernel", kernel, *rest])
        parsed.append((args, vmcli.options(args)))
    rows = []
    for label, (args, opts) in zip(labels, parsed):
        print(f"=== kernel {label}: {opts.kernel}", file=sys.stderr, flush=True)
        try:
            run = vm.run_in_vm(opts, vm.harness_command(args.run_args, args.verbose), out / label,
                               echo=echo, verbose=args.verbose)
            rows.append(KernelRun(label, str(opts.kernel), run.status, run.reason, run.result))
        except HarnessError as exc:  # this kernel could not boot the harness: the others still run
            rows.append(KernelRun(label, str(opts.kernel), exc.exit_code, one_line(str(exc)), None))
    return rows


# ------------------------------------------------------------------ the table


def columns(rows: Sequence[KernelRun]) -> List[str]:
    """Scenario names (without matrix point) in the order they first ran."""
    names: Dict[str, None] = {}
    for row in rows:
        for s in row.result.scenarios if row.result else ():
            names.setdefault(base(s), None)
    return list(names)


def cell(row: KernelRun, name: str) -> Tuple[str, str, str]:
    """(status, head, detail) of one kernel x scenario cell: ("pass", "PASS (x4)", ""),
    ("skip", "SKIP", reason), ("pass", "PASS 2 of 4", "SKIP 2: reason"),
    ("fail", "FAIL 4 of 4", first failed check)."""
    points = [s for s in (row.result.scenarios if row.result else ()) if base(s) == name]
    if not points:
        if row.result:
            return "none", "not run", ""
        return "none", "no result", row.reason or "the guest reported nothing"
    statuses = {s.status for s in points}
    if statuses == {PASS}:
        return PASS, "PASS" + (f" (x{len(points)})" if len(points) > 1 else ""), ""
    if statuses == {SKIP}:
        return SKIP, "SKIP", one_line(points[0].reason)
    bad = [s for s in points if s.status not in (PASS, SKIP)]
    if not bad:  # some points pass, the others skip (the far=1 points on one node)
        skipped = [s for s in points if s.status == SKIP]
        return PASS, f"PASS {len(points) - len(skipped)} of {len(points)}", f"SKIP {len(skipped)}: " + one_line(
            skipped[0].reason)
    why = check_text(bad[0].failed_checks[0]) if bad[0].failed_checks else one_line(bad[0].reason)
    count = f" {len(bad)} of {len(points)}" if len(points) > 1 else ""
    return bad[0].status, f"{bad[0].status.upper()}{count}", why


def _text(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail else head


def markdown(rows: Sequence[KernelRun]) -> str:
    """The kernels x scenarios table in Markdown (what did not pass or skip in bold)."""
    names = columns(rows)

    def md(text):
        return text.replace("|", "\\|")

    lines = ["| kernel | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for row in rows:
        texts = []
        for name in names:
            status, head, detail = cell(row, name)
            texts.append(md(_text(head if status in (PASS, SKIP) else f"**{head}**", detail)))
        kernel = f"{row.label} ({row.result.kernel})" if row.result else row.label
        lines.append(f"| {md(kernel)} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def html_page(rows: Sequence[KernelRun]) -> str:
    """The table as one self-contained HTML page (no scripts, nothing loaded)."""
    names = columns(rows)
    colour = {PASS: "#c8e6c9", SKIP: "#eeeeee", FAIL: "#ffcdd2"}

    def e(text):
        return html.escape(text, quote=True)

    head = "".join(f"<th>{e(n)}</th>" for n in names)
    body = []
    for row in rows:
        cells = []
        for name in names:
            status, head, detail = cell(row, name)
            cells.append(f'<td style="background:{colour.get(status, "#e1bee7")}">{e(_text(head, detail))}</td>')
        kernel = f"{row.label} ({row.result.kernel})" if row.result else row.label
        body.append(f"<tr><th>{e(kernel)}</th>{''.join(cells)}</tr>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>ksm-harness kernel matrix</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}</style>",
        "</head><body><h1>ksm-harness kernel matrix</h1>",
        f"<table><tr><th>kernel</th>{head}</tr>", *body, "</table></body></html>", ""])


def kcidb_doc(rows: Sequence[KernelRun]) -> dict:
    """One KCIDB document for every kernel that reported: checkouts and builds
    once per id, every test."""
    doc: dict = {"version": {"major": kcidb.MAJOR, "minor": kcidb.MINOR}, "checkouts": [], "builds": [], "tests": []}
    ident = kcidb.identity()
    for row in rows:
        if row.result is None:
            continue
        part = kcidb.to_dict(row.result, ident)
        for key in ("checkouts", "builds"):
            known = {x["id"] for x in doc[key]}
            doc[key] += [x for x in part[key] if x["id"] not in known]
        doc["tests"] += part["tests"]
    return doc


def to_dict(rows: Sequence[KernelRun]) -> dict:
    return {"format": FORMAT, "version": VERSION, "kernels": [
        {"label": r.label, "image": r.image, "status": r.status, "reason": r.reason,
         "result": json_report.to_dict(r.result) if r.result else None} for r in rows]}


def from_dict(doc: dict, source: str = "<json>") -> List[KernelRun]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise InputError(f"not a ksm-harness matrix file (format {FORMAT} version {VERSION})", file=source)
    return [KernelRun(k["label"], k["image"], int(k["status"]), k["reason"],
                      json_report.from_dict(k["result"], source) if k["result"] else None) for k in doc["kernels"]]


def write_reports(rows: Sequence[KernelRun], out: Path) -> None:
    """REPORT_FILES into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(json.dumps(to_dict(rows), indent=1) + "\n")
    (out / "matrix.md").write_text(markdown(rows))
    (out / "matrix.html").write_text(html_page(rows))
    (out / "kcidb.json").write_text(json.dumps(kcidb_doc(rows), indent=1) + "\n")


def main(argv: Sequence[str]) -> int:
    """`ksm-harness vm` with more than one --kernel; the exit code is 0 when
    every kernel passed, else the first failing kernel's (1 for a failure)."""
    try:
        kernels, out_arg, _ = split_argv(argv)
        out = Path(out_arg) if out_arg else Path("results") / f"matrix-{time.strftime('%Y%m%d-%H%M%S')}"
        kcidb.identity()  # a bad KSM_HARNESS_KCIDB_* fails before the first boot
        rows = run_matrix(argv, out)
        write_reports(rows, out)
    except HarnessError as exc:
        print(f"ksm-harness vm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # argparse printed a usage error for one kernel's command line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    sys.stdout.write(markdown(rows))
    print(f"matrix of {len(rows)} kernels: {', '.join(str(out / f) for f in REPORT_FILES)}")
    failed = [r.status for r in rows if r.status != EXIT_PASS]
    return EXIT_PASS if not failed else (EXIT_FAIL if EXIT_FAIL in failed else failed[0])
