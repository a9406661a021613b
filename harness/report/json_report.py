"""The JSON result file: everything the run found, and the way back.

`load()` rebuilds the result objects from a file `write()` made: the VM
runner reads the guest's results back this way, so a run inside qemu reports
exactly like a run on the host.  Text is kept as the kernel logged it (JSON
escapes control characters itself); readers that print it must clean it.
"""
import json

from ..errors import InputError
from ..results import Check, Crash, Measurement, RunResult, Sample, ScenarioResult, StepMark
from .terminal import check_text, totals

FORMAT = "ksm-harness-result"  # the "format" key: says what this file is
VERSION = 1  # the "version" key: bumped when a reader could misread a file


def _scenario(s):
    return {
        "name": s.name,
        "file": s.file,
        "line": s.line,
        "status": s.status,
        "duration": s.duration,
        "reason": s.reason,
        "failed": [check_text(c) for c in s.failed_checks],  # derived: ignored by load()
        "checks": [{"what": c.what, "passed": c.passed, "detail": c.detail} for c in s.checks],
        "crashes": [
            {"kind": c.kind, "title": c.title, "line": c.line, "seq": c.seq, "lines": list(c.lines)}
            for c in s.crashes
        ],
        "taint": list(s.taint),
        "deltas": dict(s.deltas),
        "notes": list(s.notes),
        "steps": [{"t": m.t, "end": m.end, "name": m.name} for m in s.steps],
        "samples": [{"t": x.t, "values": dict(x.values)} for x in s.samples],
        "log_context": list(s.log_context),
        "started": s.started,
        "params": dict(s.params),
        "measurements": [{"name": m.name, "seconds": m.seconds, "bytes": m.nbytes, "mib_per_s": m.mib_per_s}
                         for m in s.measurements],  # mib_per_s derived: ignored by load()
    }


def to_dict(run):
    """The JSON document for `run` (a RunResult), as plain dicts and lists."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "kernel": run.kernel,
        "started": run.started,
        "duration": run.duration,
        "status": run.status,  # derived: ignored by load()
        "totals": totals(run),  # derived: ignored by load()
        "scenarios": [_scenario(s) for s in run.scenarios],
        "environment": dict(run.environment),
        "findings": list(run.findings),
    }


def dumps(run):
    """`run` as JSON text."""
    return json.dumps(to_dict(run), indent=1) + "\n"


def write(run, path):
    """Write `run` to `path` as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(run))


def _scenario_from(d):
    return ScenarioResult(
        name=d["name"],
        file=d["file"],
        line=int(d["line"]),
        status=d["status"],
        duration=float(d["duration"]),
        reason=d.get("reason", ""),
        checks=tuple(Check(what=c["what"], passed=bool(c["passed"]), detail=c["detail"]) for c in d.get("checks", ())),
        crashes=tuple(
            Crash(kind=c["kind"], title=c["title"], line=int(c["line"]), lines=tuple(c["lines"]), seq=c.get("seq"))
            for c in d.get("crashes", ())
        ),
        taint=tuple(d.get("taint", ())),
        samples=tuple(
            Sample(t=float(x["t"]), values={k: int(v) for k, v in x["values"].items()})
            for x in d.get("samples", ())
        ),
        steps=tuple(StepMark(t=float(m["t"]), end=float(m["end"]), name=m["name"]) for m in d.get("steps", ())),
        deltas={k: int(v) for k, v in d.get("deltas", {}).items()},
        notes=tuple(d.get("notes", ())),
        log_context=tuple(d.get("log_context", ())),
        started=d.get("started", ""),
        params={k: str(v) for k, v in d.get("params", {}).items()},
        measurements=tuple(Measurement(m["name"], float(m["seconds"]), m.get("bytes"))
                           for m in d.get("measurements", ())),
    )


def from_dict(doc, source="<json>"):
    """The RunResult a `to_dict()` document describes; InputError naming
    `source` and the scenario if the document is not one."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"not a ksm-harness result file (no \"format\": \"{FORMAT}\")", file=source)
    if doc.get("version") != VERSION:
        raise InputError(
            f"result format version {doc.get('version')!r}, this ksm-harness reads version {VERSION}: "
            "read it with the ksm-harness that wrote it",
            file=source,
        )
    where = "run"
    try:
        scenarios = []
        for index, d in enumerate(doc["scenarios"]):
            where = f"scenarios[{index}]"
            scenarios.append(_scenario_from(d))
        where = "run"
        return RunResult(
            kernel=doc["kernel"], started=doc["started"], duration=float(doc["duration"]), scenarios=tuple(scenarios),
            environment={k: str(v) for k, v in doc.get("environment", {}).items()},
            findings=tuple(doc.get("findings", ())),
        )
    except KeyError as e:
        raise InputError(f"missing key {e}: the file is truncated or not from ksm-harness", file=source, field=where)
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"malformed: {e}", file=source, field=where)


def read_doc(path):
    """A result file's JSON document, not yet checked (InputError if it is not JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError(f"cannot read result file: {e.strerror}", file=str(path))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise InputError(f"not JSON ({e}): was the run cut short while writing it?", file=str(path))


def load(path):
    """Read a file `write()` made back into a RunResult (InputError if it isn't one)."""
    return from_dict(read_doc(path), source=str(path))
