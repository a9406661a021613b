"""Putting the machine back: a resource journaled from before it is made
until it is gone (Tracked), and undoing a journal (this run's at its end, or
one a killed run left) newest first, then its knobs."""
from . import cgroup, faultinject, swap, unreaped
from .cleanup import Cleanup
from .errors import CleanupError


class Tracked:
    """One resource (swap device, cgroup, fault injection) from the journal
    entry written before it is made until it is really gone.  record() is
    the `journal` callback of SwapManager.create(), MemCgroup.create() and
    FailMakeRequest.arm(); undo() removes the newest description (removal
    tolerates a half-made resource) and only then drops the entry."""

    def __init__(self, journal, kind, to_journal, remove):
        self.journal = journal
        self.kind = kind  # "swap", "cgroups", "faultinject"
        self.to_journal = to_journal  # obj -> JSON-ready dict
        self.remove = remove  # obj -> None, raises if the resource could not be removed
        self.ident = None  # its journal entry, None before the first record and once gone
        self.obj = None  # the newest description: SwapDevice, MemCgroup or Armed

    def record(self, obj):
        if self.ident is None:
            self.ident = self.journal.add(self.kind, self.to_journal(obj))
        else:
            self.journal.replace(self.ident, self.to_journal(obj))
        self.obj = obj

    def undo(self):
        """Remove it; a second call (or one before anything was made) does nothing."""
        if self.ident is None:
            return
        self.remove(self.obj)
        self.journal.remove(self.ident)
        self.ident = None

    def __repr__(self):
        return f"{self.kind} {self.obj!r}"[:160]


def undo_entry(ctx, journal, entry):
    """Remove one journaled resource, then drop its entry."""
    parse, remove = {"swap": (swap.from_journal, ctx.swap.remove_stale),
                     "cgroups": (cgroup.from_journal, cgroup.remove_stale),
                     "faultinject": (faultinject.from_journal, ctx.faults.remove_stale),
                     "process": (unreaped.from_journal,
                                 lambda e: unreaped.remove_stale(e, ctx.roots.proc))}[entry["kind"]]
    remove(parse(entry["entry"]))
    journal.remove(entry["id"])


def recover(ctx, journal):
    """Undo the open journal (a killed run's, adopted, or this run's own at its
    end): its entries newest first across kinds (a second fault-injection arm
    journaled the first one's values as "previous"), then its knobs.  Every
    item is tried; returns the failures, [] when the journal is all undone."""
    data = journal.data
    defer = Cleanup()
    if data.get("knobs"):
        defer(ctx.knobs.restore, data["knobs"])
    for entry in data["entries"]:  # oldest first on the LIFO queue: it runs last
        defer.named(f"remove {entry_name(entry)}", undo_entry, ctx, journal, entry)
    return defer.run()


def entry_name(entry):
    """A journal entry in words: "swap /dev/loop0", "cgroups /sys/fs/cgroup/memory/ksm-harness/run-7"."""
    e = entry["entry"]
    if entry["kind"] == "process":
        return f"process {e['pid']} ({e['name']})"
    return f"{entry['kind']} {e.get('device') or e.get('path') or e.get('block') or e}"


def recover_stale(ctx, journal, stale, say):
    """Put back what a killed run (or a failed cleanup) left; raises
    CleanupError, the journal keeping what is left, if something stays."""
    kinds = [e["kind"] for e in stale["entries"]]
    journal.adopt(stale)
    failures = recover(ctx, journal)
    if failures:
        raise CleanupError(failures)
    journal.finish()
    corrupt = f"; {journal.path} was unreadable: check knobs, swap and cgroups by hand" if stale.get("corrupt") else ""
    say(f"restored KSM knobs and removed {kinds.count('swap')} swap device(s), {kinds.count('cgroups')} "
        f"cgroup(s), {kinds.count('faultinject')} fault injection(s) and {kinds.count('process')} stuck "
        f"process(es) left by run pid {stale.get('pid', '?')}"
        f"{corrupt}")
