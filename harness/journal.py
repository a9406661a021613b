"""A journal of what a run changed, on disk, so that a killed run can be undone.

Before a run changes anything it writes the knob values it found and then,
each before it is made, every swap device, cgroup and fault-injection
setting, in the order they were made.  An entry leaves the journal only once
its resource is really gone; a run whose cleanup failed keeps the journal.
A run killed with SIGKILL leaves it too; the next start (or `ksm-harness
restore`) undoes its entries newest first and puts the knobs back.

The journal is only read or written by the holder of the machine lock
(lock.py), so it never belongs to a live run when it is replayed.
"""
import json
import os
from pathlib import Path

STATE_DIR = Path(os.environ.get("KSM_HARNESS_STATE", "/run/ksm-harness"))
# the kinds of entry, in the order a scenario makes them (journals written
# before entries were kept in one list had one list per kind)
KINDS = ("swap", "cgroups", "faultinject", "process")


class Journal:
    def __init__(self, state_dir=STATE_DIR):
        self.dir = Path(state_dir)  # where journal.json lives
        self.path = self.dir / "journal.json"
        self.data = None  # the journal of this run while it is open: begin() .. finish()

    def stale(self):
        """The journal a killed run (or a failed cleanup) left behind, or None:
        {"pid", "knobs", "entries": [{"id", "kind", "entry"}, ...] oldest first}."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"knobs": {}, "entries": [], "corrupt": True}
        if "entries" not in data:
            old = [(kind, e) for kind in KINDS for e in data.pop(kind, [])]
            data["entries"] = [{"id": i, "kind": kind, "entry": e} for i, (kind, e) in enumerate(old, 1)]
        return data

    def adopt(self, stale):
        """Open a stale journal to undo it: entries leave it as they are undone."""
        self.data = {**stale, "next_id": max([e["id"] for e in stale["entries"]], default=0) + 1}

    def begin(self, knobs):
        self.data = {"pid": os.getpid(), "knobs": knobs, "entries": [], "next_id": 1}
        self._save()

    def add(self, kind, entry):
        """Record a resource about to be made; returns the id of its entry."""
        ident = self.data["next_id"]
        self.data["next_id"] += 1
        self.data["entries"].append({"id": ident, "kind": kind, "entry": entry})
        self._save()
        return ident

    def replace(self, ident, entry):
        """A newer description of the same resource; it keeps its place."""
        for e in self.data["entries"]:
            if e["id"] == ident:
                e["entry"] = entry
        self._save()

    def remove(self, ident):
        """The resource is gone: drop its entry."""
        self.data["entries"] = [e for e in self.data["entries"] if e["id"] != ident]
        self._save()

    def finish(self):
        self.path.unlink(missing_ok=True)
        self.data = None

    def _save(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
