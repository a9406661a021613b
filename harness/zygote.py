"""The processes that own the memory under test: a zygote and its workers.

The harness starts one zygote (`python -m harness.zygote`), a small prepared
parent that imports only what workers need.  Each worker is forked from it, so
a worker costs little private memory and a few hundred fit beside their test
memory.  Workers obey JSON-line commands on a socket; the heavy loops are C
(harness/mem.c).  Every process here dies with its parent (PR_SET_PDEATHSIG),
and the zygote adopts orphaned descendants (PR_SET_CHILD_SUBREAPER) so that
nothing outlives a run unreaped.
"""
import errno
import json
import os
import socket
import sys

from . import pages, uffd
from ._mem import ffi, lib

from .pages import PAGE_SIZE
THP_SIZE = 2 << 20
WAIT_POLL_US = 20  # how often a worker waiting for a race window reads the file
PATTERNS = {"zero": lib.KSMH_PAT_ZERO, "same": lib.KSMH_PAT_SAME,
            "groups": lib.KSMH_PAT_GROUPS, "unique": lib.KSMH_PAT_UNIQUE}
ADVICE = {"mergeable": lib.KSMH_MADV_MERGEABLE, "unmergeable": lib.KSMH_MADV_UNMERGEABLE,
          "pageout": lib.KSMH_MADV_PAGEOUT, "cold": lib.KSMH_MADV_COLD,
          "dontneed": lib.KSMH_MADV_DONTNEED, "hugepage": lib.KSMH_MADV_HUGEPAGE,
          "nohugepage": lib.KSMH_MADV_NOHUGEPAGE}
PROT = {"none": lib.KSMH_PROT_NONE, "read": lib.KSMH_PROT_READ,
        "readwrite": lib.KSMH_PROT_READ | lib.KSMH_PROT_WRITE}


class CommandError(Exception):
    pass


def check(rc, what):
    if rc < 0:
        raise CommandError(f"{what}: {os.strerror(ffi.errno)}")
    return rc


class Region:
    """A private mapping (anonymous, or of a memfd) and the key of each of its pages."""

    def __init__(self, npages, thp, memfd=False):
        length = npages * PAGE_SIZE
        extra = THP_SIZE if thp else 0
        raw = (lib.ksmh_map_memfd if memfd else lib.ksmh_map)(length + extra)
        if raw == ffi.NULL:
            raise CommandError(f"mmap of {length} bytes: {os.strerror(ffi.errno)}")
        start = int(ffi.cast("uintptr_t", raw))
        if thp:  # a huge page needs a 2 MiB aligned start
            start = (start + THP_SIZE - 1) & ~(THP_SIZE - 1)
        self.base = ffi.cast("char *", start)
        self.npages = npages
        self.thp = thp  # MADV_HUGEPAGE (True), MADV_NOHUGEPAGE (False), or neither (None)
        self.keys = ffi.new("uint64_t[]", npages)
        self.unreadable = bytearray(npages)  # 1 for a page mprotect()ed without PROT_READ
        self.uffd = {}  # userfaultfd mode -> the descriptor its registration lives on
        self.scribbled = bytearray(npages)  # 1 for a page op_scribble changed behind its key

    def span(self, start, count):
        count = self.npages - start if count is None else count
        if start < 0 or count < 0 or start + count > self.npages:
            raise CommandError(f"pages {start}+{count} outside a region of {self.npages}")
        return self.base + start * PAGE_SIZE, count

    def set_keys(self, pattern, worker, start=0, count=None, generation=0):
        _, count = self.span(start, count)
        self.scribbled[start:start + count] = bytes(count)
        lib.ksmh_pattern_keys(PATTERNS[pattern["kind"]], pattern.get("seed", 1),
                              pattern.get("groups", 1), worker, generation, start, count,
                              self.keys + start)

    def describe(self):
        return {"addr": int(ffi.cast("uintptr_t", self.base)), "npages": self.npages,
                "keys_addr": int(ffi.cast("uintptr_t", self.keys)), "thp": self.thp}


def verify_buffer(base, keys, npages):
    """Check npages at base against keys; a dict of what was found."""
    res = ffi.new("struct ksmh_verify_result *")
    lib.ksmh_verify(base, npages, keys, res)
    return {"pages": npages, "bad": res.bad, "sigbus": res.sigbus,
            "first": [{"page": res.page[i], "found": res.found[i], "sigbus": bool(res.was_sigbus[i])}
                      for i in range(res.nreport)]}


def wait_file(args):
    """Block until args["wait_file"] reads args["wait_value"] (the start of a race window)."""
    if not args.get("wait_file"):
        return
    rc = lib.ksmh_wait_file(args["wait_file"].encode(), str(args["wait_value"]).encode(),
                            WAIT_POLL_US * 1000, int(args["wait_timeout"] * 1e9))
    check(rc, f"waiting for {args['wait_file']} to read {args['wait_value']}")


class Worker:
    """The command loop of one worker process."""

    def __init__(self, sock):
        self.sock = sock
        self.regions = {}

    def region(self, name):
        if name not in self.regions:
            raise CommandError(f"no region {name!r}")
        return self.regions[name]

    def op_ping(self, args):
        return {"pid": os.getpid()}

    def op_map(self, args):
        """map + place + fill + advise one region, in that order: mbind before
        the first touch decides the node; MADV_HUGEPAGE before the fill lets the
        fault allocate huge pages; MADV_MERGEABLE last registers the VMA with
        ksmd (mm/ksm.c: ksm_madvise() -> __ksm_enter())."""
        r = Region(args["npages"], args.get("thp"), args.get("memfd", False))
        length = r.npages * PAGE_SIZE
        if args.get("node") is not None:
            check(lib.ksmh_mbind(r.base, length, args["node"]), f"mbind to node {args['node']}")
        if args.get("thp") is not None:
            advice = "hugepage" if args["thp"] else "nohugepage"
            check(lib.ksmh_madvise(r.base, length, ADVICE[advice]), f"madvise {advice}")
        r.set_keys(args["pattern"], args["worker"])
        lib.ksmh_fill(r.base, r.npages, r.keys)
        if args.get("mergeable"):
            check(lib.ksmh_madvise(r.base, length, ADVICE["mergeable"]), "madvise MERGEABLE")
        self.regions[args["region"]] = r
        return r.describe()

    def op_advise(self, args):
        r = self.region(args["region"])
        base, count = r.span(args.get("start", 0), args.get("count"))
        start = lib.ksmh_monotonic_ns()
        check(lib.ksmh_madvise(base, count * PAGE_SIZE, ADVICE[args["advice"]]),
              f"madvise {args['advice']}")
        elapsed = lib.ksmh_monotonic_ns() - start  # the call alone (perf's unmerge: ksm_unmerge_time())
        if args["advice"] == "dontneed":
            # private anonymous pages zapped by MADV_DONTNEED read back as zeroes
            # (mm/madvise.c madvise_dontneed_single_vma(); do_anonymous_page())
            r.set_keys({"kind": "zero"}, 0, args.get("start", 0), count)
        return {"elapsed_ns": elapsed}

    def op_hwpoison(self, args):
        """madvise(MADV_HWPOISON) page by page (mm/madvise.c madvise_inject_error()
        stops at the first page memory_failure() refuses, e.g. EBUSY for a
        mapped KSM page): {"errors": {page index: errno name}} for the refused."""
        r = self.region(args["region"])
        errors = {}
        for i in range(args["start"], args["start"] + args["count"]):
            base, _ = r.span(i, 1)
            if lib.ksmh_madvise(base, PAGE_SIZE, lib.KSMH_MADV_HWPOISON) != 0:
                errors[str(i)] = errno.errorcode.get(ffi.errno, str(ffi.errno))
        return {"errors": errors}

    def op_prctl_merge(self, args):
        if "value" in args:
            check(lib.ksmh_prctl_memory_merge(1, int(args["value"])), "PR_SET_MEMORY_MERGE")
        return {"value": check(lib.ksmh_prctl_memory_merge(0, 0), "PR_GET_MEMORY_MERGE")}

    def op_write(self, args):
        """Write new content over pages (breaks COW: a KSM page is copied by
        do_wp_page()).  The new keys follow the given pattern and generation."""
        r = self.region(args["region"])
        start = args.get("start", 0)
        base, count = r.span(start, args.get("count"))
        r.set_keys(args["pattern"], args["worker"], start, count, args["generation"])
        lib.ksmh_fill(base, count, r.keys + start)
        return {"pages": count}

    def op_touch(self, args):
        """Fault pages back (from swap) by reading or writing word 0 of each."""
        r = self.region(args["region"])
        start = args.get("start", 0)
        base, count = r.span(start, args.get("count"))
        done = ffi.new("uint64_t[]", count)
        wait_file(args)
        sigbus = lib.ksmh_touch(base, count, r.keys + start, bool(args["write"]), args["threads"],
                                int(args["pace_us"] * 1000), done)
        return {"pages": count, "sigbus": sigbus, "times_ns": list(done)}

    def op_scribble(self, args):
        """Change the first byte of each page, as ksm_tests' COW timing does
        (perf): the pages then match no key, and the region cannot be
        verified until they are written again."""
        r = self.region(args["region"])
        start = args.get("start", 0)
        base, count = r.span(start, args.get("count"))
        r.scribbled[start:start + count] = b"\x01" * count
        return {"pages": count, "elapsed_ns": lib.ksmh_scribble(base, count, ord("-"))}

    def op_wait_counter(self, args):
        """Poll a counter file from this process, without a pause, until it
        reads at_least, for up to `within` seconds (perf's merge timing as
        ksm_tests does it)."""
        value = lib.ksmh_wait_counter(args["path"].encode(), args["at_least"], int(args["within"] * 1e9))
        check(value, f"waiting for {args['path']} to reach {args['at_least']}")
        return {"value": value}

    def op_resident(self, args):
        """mincore(2) over a region (pages.resident()): the swapcache metric
        needs it for pages whose PTE holds a swap entry."""
        r = self.region(args["region"])
        return {"resident": pages.resident(r.describe()["addr"], r.npages)}

    def op_mprotect(self, args):
        r = self.region(args["region"])
        start = args.get("start", 0)
        base, count = r.span(start, args.get("count"))
        check(lib.ksmh_mprotect(base, count * PAGE_SIZE, PROT[args["prot"]]), f"mprotect {args['prot']}")
        r.unreadable[start:start + count] = bytes([args["prot"] == "none"]) * count
        return {}

    def op_remap(self, args):
        """Fresh anonymous memory over pages of the region: they read zero
        (key 0) and are readable again."""
        r = self.region(args["region"])
        start = args.get("start", 0)
        base, count = r.span(start, args.get("count"))
        if lib.ksmh_map_fixed(base, count * PAGE_SIZE) == ffi.NULL:
            raise CommandError(f"mmap MAP_FIXED over {count} pages: {os.strerror(ffi.errno)}")
        r.set_keys({"kind": "zero"}, 0, start, count)
        r.unreadable[start:start + count] = bytes(count)
        return {}

    def op_mremap(self, args):
        """Move the whole region to a new address; its pages, keys and
        protections go with it.  The reply is the region's new description."""
        r = self.region(args["region"])
        moved = lib.ksmh_mremap_away(r.base, r.npages * PAGE_SIZE)
        if moved == ffi.NULL:
            raise CommandError(f"mremap of region {args['region']!r}: {os.strerror(ffi.errno)}")
        r.base = ffi.cast("char *", moved)
        return r.describe()

    def op_userfaultfd(self, args):
        """Register pages with a userfaultfd in a mode (uffd.py), once per
        region and mode: the descriptor stays open, as closing it unregisters
        (fs/userfaultfd.c userfaultfd_release()).  wp then sets or clears the
        uffd-wp bit of each PTE (UFFDIO_WRITEPROTECT); no one reads the
        descriptor, so a write to a protected page would wait for ever."""
        r = self.region(args["region"])
        base, count = r.span(args.get("start", 0), args.get("count"))
        mode = args["mode"]
        if mode not in r.uffd:
            try:
                fd = uffd.open_fd(mode)
            except OSError as exc:
                raise CommandError(str(exc)) from None
            if lib.ksmh_uffd_register(fd, base, count * PAGE_SIZE, uffd.FEATURES[mode][1]) < 0:
                err = ffi.errno
                os.close(fd)
                raise CommandError(f"UFFDIO_REGISTER {mode}: {os.strerror(err)}")
            r.uffd[mode] = fd
        if mode == "wp":
            check(lib.ksmh_uffd_writeprotect(r.uffd[mode], base, count * PAGE_SIZE, args["protect"]),
                  "UFFDIO_WRITEPROTECT")
        return {}

    def op_verify(self, args):
        r = self.region(args["region"])
        if any(r.scribbled):
            raise CommandError(f"region {args['region']!r} was scribbled on (perf) and not written since: "
                               f"its keys no longer describe it")
        if not any(r.unreadable):
            return verify_buffer(r.base, r.keys, r.npages)
        # PROT_NONE pages fault on a plain read; /proc/self/mem reads them
        # anyway (fs/proc/base.c mem_rw() uses FOLL_FORCE, which needs only
        # VM_MAYREAD) and a read never unshares a KSM page
        copy = ffi.new("char[]", r.npages * PAGE_SIZE)
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            got = os.preadv(mem.fileno(), [ffi.buffer(copy)], int(ffi.cast("uintptr_t", r.base)))
        if got != r.npages * PAGE_SIZE:
            raise CommandError(f"/proc/self/mem gave {got} of {r.npages * PAGE_SIZE} bytes")
        return verify_buffer(copy, r.keys, r.npages)

    def op_fork(self, args):
        """Fork children (a storm for `duration` seconds, or `count` forks) that
        live on paused (up to live_cap; for lifetime_us each, when given) or
        exit at once."""
        res = ffi.new("struct ksmh_storm_result *")
        ntimes = 100000  # fork times kept for the race-window note
        times = ffi.new("uint64_t[]", ntimes)
        wait_file(args)
        # the harness (steps/actions.py Fork.send) sends every argument: defaults live there alone
        lib.ksmh_fork_storm(int(args["duration"] * 1e9), args["count"], args["depth"], args["live_cap"],
                            int(args["lifetime_us"] * 1000), self.sock.fileno() if args["until_told"] else -1,
                            int(args["interval_us"] * 1000), times, ntimes, res)
        return {"forks": res.forks, "live": res.live, "failed": res.failed,
                "error": os.strerror(res.err) if res.err else "",
                "times_ns": list(times[0:min(res.forks, ntimes)])}

    def op_provoke(self, args):
        """Write a crash type to LKDTM's DIRECT file (harness/lkdtm.py): the
        kernel runs that crash in this process.  Returns only for the types
        that return (WARNING); BUG kills this process, HUNG_TASK never wakes."""
        try:
            with open(args["path"], "w") as direct:
                direct.write(args["crash"])
        except OSError as exc:
            raise CommandError(f"writing {args['crash']} to {args['path']}: {exc.strerror}") from None
        return {}

    def op_exec(self, args):
        """execve() this process into a fresh worker (`python -m harness.zygote
        --exec-worker FD PPID`) that keeps the command socket: same pid, a new
        mm with none of the regions.  The new image answers this command
        (exec_worker()).  The mm flags the kernel carries over (include/linux/
        sched/coredump.h MMF_INIT_MASK, copied by kernel/fork.c mm_init())
        include MMF_VM_MERGE_ANY, and fs/exec.c bprm_mm_init() -> ksm_execve()
        puts the new mm on ksmd's list."""
        fd = self.sock.fileno()
        os.set_inheritable(fd, True)
        try:
            os.execv(sys.executable, [sys.executable, "-m", "harness.zygote", "--exec-worker", str(fd),
                                      str(os.getppid())])
        except OSError as exc:
            os.set_inheritable(fd, False)
            raise CommandError(f"execv {sys.executable}: {exc.strerror}") from None

    def op_stop(self, args):
        return {}

    def op_fault_in_own(self, args):
        """Read one byte of every page of this process's own writable private
        mappings (the interpreter's heap, stacks, data), the test regions
        aside.  Called before fault injection fails reads of the swap device:
        an own page swapped out by memcg pressure would otherwise die with
        SIGBUS outside any measurement (do_swap_page() on a failed read)."""
        ours = [(r.describe()["addr"], r.npages * PAGE_SIZE) for r in self.regions.values()]
        pages = 0
        with open("/proc/self/maps") as maps:
            spans = [line.split()[:2] for line in maps]
        for span, perms in spans:
            start, end = (int(x, 16) for x in span.split("-"))
            if not perms.startswith("rw") or perms[3] != "p" or start >= 1 << 47:
                continue  # not ours to read, or [vsyscall]
            if any(start < base + length and base < end for base, length in ours):
                continue
            memory = ffi.cast("volatile char *", start)
            for offset in range(0, end - start, PAGE_SIZE):
                memory[offset]
            pages += (end - start) // PAGE_SIZE
        return {"pages": pages}

    def reply(self, reply):
        self.sock.sendall(json.dumps(reply).encode() + b"\n")

    def serve(self):
        rfile = self.sock.makefile("rb")
        for line in rfile:
            msg = json.loads(line)
            op = msg.pop("op")
            if op == "exit":
                os._exit(0)
            try:
                reply = {"ok": True, **getattr(self, "op_" + op)(msg)}
            except (CommandError, KeyError, AttributeError) as exc:
                reply = {"ok": False, "error": f"{op}: {exc}"}
            self.reply(reply)
        os._exit(0)


def exec_worker(fd, ppid):
    """A worker after op_exec: answers the exec command (its pid, and
    PR_GET_MEMORY_MERGE, or -1 where the kernel has no such prctl), then
    serves commands on the socket it inherited."""
    if lib.ksmh_die_with_parent(ppid) < 0:
        os._exit(1)
    worker = Worker(socket.socket(fileno=fd))
    os.set_inheritable(fd, False)
    worker.reply({"ok": True, "pid": os.getpid(), "merge": lib.ksmh_prctl_memory_merge(0, 0)})
    worker.serve()


def zygote(sock, harness_pid):
    """Fork workers on request; reap them (and adopted orphans) on request."""
    if lib.ksmh_die_with_parent(harness_pid) < 0:
        os._exit(1)
    lib.ksmh_set_subreaper()
    statuses = {}
    rfile = sock.makefile("rb")
    for line in rfile:
        msg = json.loads(line)
        if msg["op"] == "spawn":
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                sock.close()
                ours.close()
                if lib.ksmh_die_with_parent(os.getppid()) < 0:
                    os._exit(1)
                Worker(theirs).serve()
            theirs.close()
            socket.send_fds(sock, [json.dumps({"pid": pid}).encode() + b"\n"], [ours.fileno()])
            ours.close()
        elif msg["op"] == "reap":
            # collect every exited child (workers and adopted orphans) so none stays a zombie
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                statuses[pid] = status
            wanted = {str(p): describe_status(statuses.pop(p)) for p in msg.get("pids", []) if p in statuses}
            sock.sendall(json.dumps({"ok": True, "exited": wanted}).encode() + b"\n")
    os._exit(0)


def describe_status(status):
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


if __name__ == "__main__":
    if sys.argv[1] == "--exec-worker":
        exec_worker(int(sys.argv[2]), int(sys.argv[3]))
    zygote(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]))
