"""Text for humans: live progress, the end-of-run summary, and the wording
every other writer shares (one line per failed check or crash, control
characters made visible).

Kernel log text is untrusted: a crash line may carry NULs, escape sequences
or bytes that were not UTF-8 (decoded with errors="surrogateescape").  Sent
raw it would redraw the terminal, make XML unparsable, or make writing the
file fail, so every writer passes it through `clean()` first.
"""
import collections
import os
import sys
import time

from ..results import ERROR, FAIL, PASS, SKIP

# The counters shown on the live status line, in this order.
STATUS_COUNTERS = ("pages_shared", "pages_sharing", "full_scans")

# The changes that show which kernel paths a scenario exercised, in this
# order: KSM's own counters, then /proc/vmstat's KSM, swap and THP events.
EXERCISED = ("full_scans", "pages_skipped", "stable_node_chains", "stable_node_dups", "ksm_zero_pages",
             "cow_ksm", "ksm_swpin_copy", "pswpout", "pswpin", "pgmajfault", "thp_split_page",
             "pgmigrate_success", "numa_pages_migrated")

_LABELS = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP", ERROR: "ERROR"}
_COLOURS = {PASS: "32", FAIL: "31", SKIP: "33", ERROR: "35"}  # SGR: green, red, yellow, magenta


def _visible(ch):
    """A printable stand-in for a character no writer may emit raw."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _unsafe(code):
    # C0 controls but tab and newline (ESC starts terminal sequences; XML 1.0
    # forbids the rest), DEL and C1 controls (0x9b is a one-byte CSI), lone
    # surrogates (cannot be encoded as UTF-8), U+FFFE/U+FFFF (not XML chars).
    return (
        (code < 0x20 and code not in (0x09, 0x0A))
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or code in (0xFFFE, 0xFFFF)
    )


_TRANSLATE = {code: _visible(chr(code)) for code in range(0x10000) if _unsafe(code)}


def clean(text):
    """`text` with every control character written as a visible \\xNN escape
    (tab and newline kept), safe for a terminal, XML, HTML and UTF-8."""
    return str(text).translate(_TRANSLATE)


def one_line(text):
    """`clean(text)` folded to one line (for KTAP result lines, summaries)."""
    return " ".join(clean(text).split())


def check_text(check):
    """A check in words: "pages_shared == 0: pages_shared=12 (want == 0)"."""
    return one_line(f"{check.what}: {check.detail}" if check.detail else check.what)


def crash_text(crash):
    """A crash in one line: "WARNING in remove_stable_node (log line 120)"."""
    seq = f", kmsg seq {crash.seq}" if crash.seq is not None else ""
    return one_line(f"{crash.title} (log line {crash.line}{seq})")


def problems(scenario):
    """What went wrong in a scenario, one line each: failed checks, then crashes."""
    return [f"check failed: {check_text(c)}" for c in scenario.failed_checks] + [
        f"crash: {crash_text(c)}" for c in scenario.crashes
    ]


def exercised(scenario):
    """ "exercised: pswpout +4096, ksm_swpin_copy +4096" from the run's
    counter deltas, or "" when none of EXERCISED moved."""
    moved = [f"{k} {scenario.deltas[k]:+d}" for k in EXERCISED if scenario.deltas.get(k)]
    return f"exercised: {', '.join(moved)}" if moved else ""


def diagnostics(scenario):
    """The lines shown under a scenario's result: its problems, then what it
    exercised (when anything moved), then its measurements."""
    return problems(scenario) + [line for line in (exercised(scenario),) if line] + [
        f"measured {measure_text(m)}" for m in scenario.measurements]


def measure_text(m):
    """A results.Measurement as ksm_tests prints one: "merge: 100 MiB in
    0.773693 s: 129.250 MiB/s" ("merge: 0.773693 s" without pages)."""
    if m.mib_per_s is None:
        return f"{m.name}: {m.seconds:.6f} s"
    return f"{m.name}: {m.nbytes / (1 << 20):g} MiB in {m.seconds:.6f} s: {m.mib_per_s:.3f} MiB/s"


def findings(run):
    """The run's findings about the kernel (its self-check of the truth
    sources), one line each: "kernel finding: ..."."""
    return [f"kernel finding: {one_line(f)}" for f in run.findings]


def format_duration(seconds):
    """"0.52s", "12.3s", "2m03s", "1h02m"."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def totals(run):
    """Count of scenarios per status, every status present (0 if none)."""
    counts = collections.Counter(s.status for s in run.scenarios)
    return {status: counts[status] for status in (PASS, FAIL, SKIP, ERROR)}


def _colour(status, text, colour):
    return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if colour and status in _COLOURS else text


def _label(status):
    return _LABELS.get(status, one_line(status).upper())


def summary(run, colour=False):
    """The end-of-run summary: one line per scenario (STATUS name duration
    reason), the problems of each scenario indented under it, then totals."""
    width = min(max((len(one_line(s.name)) for s in run.scenarios), default=0), 60)
    lines = []
    for s in run.scenarios:
        label = _colour(s.status, f"{_label(s.status):<5}", colour)
        line = f"{label} {one_line(s.name):<{width}} {format_duration(s.duration):>7}"
        if s.reason:
            line += f"  {one_line(s.reason)}"
        lines.append(line.rstrip())
        lines.extend(f"      {p}" for p in diagnostics(s))
        lines.extend(f"      note: {one_line(n)}" for n in s.notes)
    lines.extend(findings(run))
    count = totals(run)
    lines.append(
        f"{len(run.scenarios)} scenarios: {count[PASS]} passed, {count[FAIL]} failed, "
        f"{count[SKIP]} skipped, {count[ERROR]} errored in {format_duration(run.duration)} "
        f"on {one_line(run.kernel) or 'unknown kernel'}"
    )
    return "\n".join(lines) + "\n"


class Progress:
    """Live progress for the runner to report into.

    On a TTY: one status line, redrawn in place, with the scenario, its step
    and the KSM counters, and one permanent coloured line per finished
    scenario.  Not a TTY (CI logs, pipes): one line when a scenario starts
    (so a hang shows where) and one when it ends; no counters.  With
    enabled=False (--quiet) nothing at all.
    """

    def __init__(self, stream=None, enabled=True, clock=time.monotonic):
        self.stream = sys.stderr if stream is None else stream  # where progress goes
        self.enabled = enabled  # False: print nothing
        self.tty = enabled and _isatty(self.stream)  # redraw a status line in place
        self.colour = self.tty and not os.environ.get("NO_COLOR")  # https://no-color.org
        self._clock = clock
        self._where = ""  # "[2/5] name"
        self._started = 0.0  # clock() when the scenario started
        self._step = ""
        self._counters = {}
        self._shown = ""  # the status line now on screen ("" = none)

    def scenario_started(self, name, index, total):
        """Scenario `name` starts; `index` counts from 1 up to `total`."""
        if not self.enabled:
            return
        self._where = f"[{index}/{total}] {one_line(name)}"
        self._started = self._clock()
        self._step = ""
        self._counters = {}
        if self.tty:
            self._redraw()
        else:
            self._write(f"{self._where} ...\n")

    def step(self, name):
        """The scenario moves on to step `name`."""
        if self.tty:
            self._step = one_line(name)
            self._redraw()

    def counters(self, values):
        """New counter values (a mapping name -> int); shown on a TTY only."""
        if self.tty:
            self._counters = {k: values[k] for k in STATUS_COUNTERS if k in values}
            self._redraw()

    def scenario_done(self, result):
        """`result` (a ScenarioResult) finished: print its permanent line."""
        if not self.enabled:
            return
        self.clear()
        label = _colour(result.status, f"{_label(result.status):<5}", self.colour)
        where = self._where or one_line(result.name)
        line = f"{where} {label} {format_duration(result.duration)}"
        if result.reason:
            line += f"  {one_line(result.reason)}"
        self._write(line + "\n")
        self._where = ""

    def clear(self):
        """Erase the status line (call before printing anything else)."""
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = ""

    def _redraw(self):
        parts = [self._where, format_duration(self._clock() - self._started)]
        if self._step:
            parts.append(self._step)
        if self._counters:
            parts.append(" ".join(f"{k}={v}" for k, v in self._counters.items()))
        # One character short of the width: a full line would wrap, and "\r"
        # then returns to the wrapped part instead of redrawing the line.
        line = " | ".join(parts)[: _columns(self.stream) - 1]
        if line != self._shown:
            self._write(f"\r\x1b[K{line}")
            self._shown = line

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _columns(stream):
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80
