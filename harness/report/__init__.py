"""Result writers: the same RunResult as JSON, JUnit XML, KTAP and HTML.

Each writer module has `render(run) -> str` (json_report: `dumps`) and
`write(run, path)`; the CLI loops over its --json/--junit/--ktap/--html
options through WRITERS.  Live progress and the summary for a human are in
terminal.
"""
from . import html, json_report, junit, ktap

# Format name (the CLI option without "--") -> write(run: RunResult, path).
WRITERS = {
    "json": json_report.write,
    "junit": junit.write,
    "ktap": ktap.write,
    "html": html.write,
}
