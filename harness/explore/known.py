"""Outcomes of documents already run, carried from one boot to the next, so
that a crash of the kernel under test is shrunk like any failure.

A guest that dies in an example cannot tell Hypothesis so.  The host then
boots again and runs explore with the same --seed and --known FILE: every
document run before (this file, one JSON line each, written by the guest as
it goes, plus the one the guest died in, a FAIL) is answered from the file
without touching the kernel, so Hypothesis, which draws the same examples
from the same seed and the same answers, comes back to the crash in seconds
and shrinks it; each shrinking attempt that crashes costs one more boot.
"""
import hashlib
import json
from pathlib import Path
from typing import Dict

from ..results import FAIL

FILE = "outcomes.jsonl"  # what a session appends to, in its --out
CRASHED = "the kernel under test crashed in it (an earlier boot): "  # the reason's start for a crash


def key(doc) -> str:
    """The document's identity: its mapping, whatever comment heads the file."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load(path) -> Dict[str, dict]:
    """key -> {"status", "reason"} from a file of JSON lines (the last line of a key wins)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out[entry["key"]] = {"status": entry["status"], "reason": entry["reason"]}
    return out


def line(doc_key: str, status: str, reason: str) -> str:
    return json.dumps({"key": doc_key, "status": status, "reason": reason}) + "\n"


def crash_line(doc, title: str) -> str:
    """The entry of the document a guest died in: a FAIL, named a crash."""
    return line(key(doc), FAIL, CRASHED + title)


def is_crash(reason: str) -> bool:
    return reason.startswith(CRASHED)
