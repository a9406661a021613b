"""One self-contained HTML page per run: no scripts, no external CSS, fonts
or images, so it can be attached to a bug report or opened from a CI
artifact store as it is.

The page has a summary table, then per scenario: why it failed (reason,
failed checks, crash excerpts), a timeline of the counters drawn as inline
SVG (one small chart per counter, each with its own scale, sharing the time
axis, with the steps as numbered bands), counter deltas, notes and every
check.  Kernel log text is untrusted: everything is escaped, and a
Content-Security-Policy forbids scripts should an escape ever be missed.
"""
import html
import math

from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import check_text, clean, crash_text, format_duration, totals

# Always charted when sampled (even if flat: a flat pages_sharing is news),
# in this order; other sampled fields (vmstat: ksm_swpin_copy, pswpin, ...)
# are charted only when they change, and listed with their value otherwise.
MAIN_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "full_scans")

# Chart geometry, in SVG user units (pixels at 100% zoom).
_LEFT, _RIGHT, _PLOT_W = 150, 110, 760  # name column, value column, plot width
_TOP, _ROW_H, _ROW_GAP, _AXIS_H = 18, 44, 8, 24  # step numbers, row, gap, time axis

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:0}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.3em 0}
td,th{padding:.15em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.st{font-weight:bold;padding:0 .4em;border-radius:3px;color:#fff;white-space:nowrap}
.st-pass{background:#2e7d32}.st-fail{background:#c62828}.st-skip{background:#8d8d8d}.st-error{background:#6a1b9a}
section{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:.6em .9em}
section.sc-fail,section.sc-error{border-color:#c62828;border-left-width:5px}
.meta{color:#555}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.4em;overflow-x:auto;font-size:12px;margin:.3em 0}
.bad{color:#c62828}ul{margin:.2em 0;padding-left:1.4em}
svg{display:block;margin:.3em 0}svg text{font:11px system-ui,sans-serif;fill:#333}
svg .name{font-weight:bold}svg .small{fill:#777;font-size:10px}
details>summary{cursor:pointer;color:#444}
"""


def _e(text):
    """Escape untrusted text for HTML element content and attribute values."""
    return html.escape(clean(text), quote=True)


def _status(status):
    return f'<span class="st st-{_e(status)}">{_e(status.upper())}</span>'


def _num(value):
    """An SVG coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_step(span, max_ticks=10):
    """A tick spacing of 1, 2 or 5 times a power of ten giving at most max_ticks."""
    raw = span / max_ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _series(samples):
    """name -> [(t, value)], charted names first in MAIN_COUNTERS order."""
    series = {}
    for sample in samples:
        for name, value in sample.values.items():
            series.setdefault(name, []).append((sample.t, value))
    main = [n for n in MAIN_COUNTERS if n in series]
    rest = sorted(n for n in series if n not in MAIN_COUNTERS)
    return {n: series[n] for n in main + rest}


def _steps_svg(steps, x, height):
    """Numbered bands (or lines, for instant steps) behind every row."""
    out = []
    label_x = -math.inf  # where the last step number was written
    for number, m in enumerate(steps, 1):
        x0, x1 = x(m.t), x(max(m.end, m.t))
        tip = f"<title>{number}. {_e(m.name)} ({m.t:.2f}s to {m.end:.2f}s)</title>"
        fill = "#e8eef7" if number % 2 else "#f4ecdf"
        if x1 - x0 >= 1:
            out.append(
                f'<rect x="{_num(x0)}" y="{_TOP}" width="{_num(x1 - x0)}" height="{height}" fill="{fill}">{tip}</rect>'
            )
        out.append(
            f'<line x1="{_num(x0)}" y1="{_TOP - 4}" x2="{_num(x0)}" y2="{_TOP + height}" '
            f'stroke="#9aa7b8" stroke-dasharray="3,2">{tip}</line>'
        )
        label_x = max(x0 + 2, label_x + 7 * len(str(number - 1)) + 4)  # steps close in time: no overlap
        out.append(f'<text x="{_num(label_x)}" y="{_TOP - 5}" class="small">{number}</text>')
    return out


def _row_svg(index, name, points, x):
    """One counter: name on the left, its line, min/max and last value on the right."""
    top = _TOP + index * (_ROW_H + _ROW_GAP)
    values = [v for _, v in points]
    low, high = min(values), max(values)
    colour = _PALETTE[index % len(_PALETTE)]

    def y(v):
        if high == low:
            return top + _ROW_H / 2
        return top + _ROW_H - (v - low) / (high - low) * _ROW_H

    coords = " ".join(f"{_num(x(t))},{_num(y(v))}" for t, v in points)
    tip = f"<title>{_e(name)}: {values[0]} to {values[-1]} (min {low}, max {high}, {len(values)} samples)</title>"
    out = [
        f'<rect x="{_LEFT}" y="{top}" width="{_PLOT_W}" height="{_ROW_H}" fill="none" stroke="#ccc"/>',
        f'<text x="{_LEFT - 6}" y="{top + _ROW_H / 2 + 4}" text-anchor="end" class="name">{_e(name)}</text>',
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6">{tip}</polyline>',
        f'<text x="{_LEFT + _PLOT_W + 6}" y="{top + 10}" class="small">max {high}</text>',
        f'<text x="{_LEFT + _PLOT_W + 6}" y="{top + _ROW_H / 2 + 4}" fill="{colour}">{values[-1]}</text>',
        f'<text x="{_LEFT + _PLOT_W + 6}" y="{top + _ROW_H}" class="small">min {low}</text>',
    ]
    if len(points) == 1:  # a one-point polyline draws nothing
        out.append(f'<circle cx="{_num(x(points[0][0]))}" cy="{_num(y(values[0]))}" r="2.5" fill="{colour}"/>')
    return out


def _axis_svg(span, x, y):
    step = _nice_step(span)
    out = [f'<line x1="{_LEFT}" y1="{y}" x2="{_LEFT + _PLOT_W}" y2="{y}" stroke="#888"/>']
    for i in range(int(span / step + 1e-9) + 1):
        t = i * step
        out.append(f'<line x1="{_num(x(t))}" y1="{y}" x2="{_num(x(t))}" y2="{y + 4}" stroke="#888"/>')
        out.append(f'<text x="{_num(x(t))}" y="{y + 15}" text-anchor="middle">{t:g}s</text>')
    return out


def timeline(s):
    """The counter timeline of a scenario as HTML (SVG chart, step legend,
    unchanged fields), or "" when it has neither samples nor steps."""
    if not s.samples and not s.steps:
        return ""
    series = _series(s.samples)
    charted = {n: p for n, p in series.items() if n in MAIN_COUNTERS or len({v for _, v in p}) > 1}
    flat = {n: p[-1][1] for n, p in series.items() if n not in charted}
    ends = [s.duration] + [x.t for x in s.samples] + [m.end for m in s.steps]
    span = max(ends) if max(ends) > 0 else 1.0

    def x(t):
        return _LEFT + min(max(t, 0.0), span) / span * _PLOT_W

    rows_h = max(len(charted), 1) * (_ROW_H + _ROW_GAP) - _ROW_GAP
    height = _TOP + rows_h + _AXIS_H
    width = _LEFT + _PLOT_W + _RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="counter timeline">'
    ]
    parts += _steps_svg(s.steps, x, rows_h)
    for index, (name, points) in enumerate(charted.items()):
        parts += _row_svg(index, name, points, x)
    if not charted:
        parts.append(f'<text x="{_LEFT + 6}" y="{_TOP + _ROW_H / 2}" class="small">no counter samples</text>')
    parts += _axis_svg(span, x, _TOP + rows_h + 4)
    parts.append("</svg>")
    if s.steps:
        parts.append("<details open><summary>Steps</summary><ol>")
        parts += [f"<li>{_e(m.name)} <span class=meta>{m.t:.2f}s to {m.end:.2f}s</span></li>" for m in s.steps]
        parts.append("</ol></details>")
    if flat:
        parts.append(
            '<p class="meta">Unchanged: ' + ", ".join(f"{_e(n)}={v}" for n, v in sorted(flat.items())) + "</p>"
        )
    return "\n".join(parts)


def _crash(c):
    return f"<h3>Kernel report: {_e(crash_text(c))}</h3>\n<pre>{_e(chr(10).join(c.lines))}</pre>"


def _section(number, s):
    out = [
        f'<section id="s{number}" class="sc-{_e(s.status)}">',
        f"<h2>{_status(s.status)} {_e(s.name)}</h2>",
        f'<p class="meta">{_e(s.file)}:{s.line} &middot; {_e(format_duration(s.duration))}</p>',
    ]
    if s.reason:
        out.append(f"<p><b>Reason:</b> {_e(s.reason)}</p>")
    if s.failed_checks:
        out.append("<h3>Failed checks</h3><ul>")
        out += [f'<li class="bad">{_e(check_text(c))}</li>' for c in s.failed_checks]
        out.append("</ul>")
    out += [_crash(c) for c in s.crashes]
    if s.taint:
        out.append("<p><b>New taint:</b> " + ", ".join(_e(t) for t in s.taint) + "</p>")
    chart = timeline(s)
    if chart:
        out += ["<h3>Counters</h3>", chart]
    if s.deltas:
        out.append("<h3>Deltas</h3><table>")
        out += [f'<tr><td>{_e(k)}</td><td class="num">{v:+d}</td></tr>' for k, v in sorted(s.deltas.items())]
        out.append("</table>")
    if s.notes:
        out.append("<h3>Notes</h3><ul>")
        out += [f"<li>{_e(n)}</li>" for n in s.notes]
        out.append("</ul>")
    if s.checks:
        out.append(f"<details><summary>All checks ({len(s.checks)})</summary><table>")
        out += [
            f'<tr><td>{_status(PASS if c.passed else FAIL)}</td><td>{_e(c.what)}</td><td>{_e(c.detail)}</td></tr>'
            for c in s.checks
        ]
        out.append("</table></details>")
    if s.log_context:
        out.append(f"<details><summary>Kernel log before the start ({len(s.log_context)} lines)</summary>")
        out.append(f"<pre>{_e(chr(10).join(s.log_context))}</pre></details>")
    out.append("</section>")
    return "\n".join(out)


def render(run):
    """`run` as one self-contained HTML page (str)."""
    count = totals(run)
    rows = [
        f'<tr><td>{_status(s.status)}</td><td><a href="#s{n}">{_e(s.name)}</a></td>'
        f'<td class="num">{_e(format_duration(s.duration))}</td><td>{_e(s.reason)}</td></tr>'
        for n, s in enumerate(run.scenarios, 1)
    ]
    title = f"ksm-harness {run.status.upper()}: {run.kernel}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # No script may run, nothing may load: the page shows kernel log text.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head><body>",
            f"<h1>ksm-harness {_status(run.status)}</h1>",
            f'<p class="meta">kernel {_e(run.kernel)} &middot; started {_e(run.started)} &middot; '
            f"{_e(format_duration(run.duration))} &middot; {len(run.scenarios)} scenarios: "
            f"{count[PASS]} passed, {count[FAIL]} failed, {count[SKIP]} skipped, {count[ERROR]} errored</p>",
            *[f'<p class="bad"><b>Kernel finding:</b> {_e(f)}</p>' for f in run.findings],
            "<table><tr><th>Status</th><th>Scenario</th><th>Duration</th><th>Reason</th></tr>",
            *rows,
            "</table>",
            *[_section(n, s) for n, s in enumerate(run.scenarios, 1)],
            "</body></html>",
            "",
        ]
    )

