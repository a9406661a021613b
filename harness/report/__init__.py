"""Result writers: the same RunResult as JSON, JUnit XML, KTAP, HTML and KCIDB.

Each writer module has `render(run) -> str` (json_report: `dumps`); the CLI
loops over its --json/--junit/--ktap/--html/--kcidb options through RENDERERS
and `write()`, where the path "-" is standard output (LAVA and other engines
that read the console take `--ktap -`).  Live progress and the summary for a
human are in terminal.
"""
import sys
from pathlib import Path

from . import html, json_report, junit, kcidb, ktap

# Format name (the CLI option without "--") -> render(run: RunResult) -> str.
RENDERERS = {
    "json": json_report.dumps,
    "junit": junit.render,
    "ktap": ktap.render,
    "html": html.render,
    "kcidb": kcidb.render,
}
STDOUT = "-"  # the path that means standard output


def write(fmt, run, path, stdout=None):
    """Write `run` as format `fmt` to `path` (parent directories made), or to
    `stdout` (default: sys.stdout at the time of the call) for "-"."""
    emit(RENDERERS[fmt](run), path, stdout)


def emit(text, path, stdout=None):
    """Write a rendered report to `path` (parent directories made), or to
    `stdout` (default: sys.stdout at the time of the call) for "-"."""
    if str(path) == STDOUT:
        stdout = stdout or sys.stdout
        stdout.write(text)
        stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
