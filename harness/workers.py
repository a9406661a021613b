"""The harness's side of the worker processes (see zygote.py for theirs).

    with WorkerPool() as pool:
        w = pool.spawn("a[0]")
        w.call("map", region="r", npages=256, pattern={"kind": "same"}, worker=0, mergeable=True)

Commands are JSON lines.  call() waits for the answer; send()/receive() let
several workers act at once (a fork storm while run=2 is written).  A worker
that dies is reported with how it died (a SIGBUS is a result, not a crash of
the harness).  close() kills every worker and all their descendants with
SIGKILL and reaps them; one the kernel keeps (asleep uninterruptibly: SIGKILL
acts only when it wakes) is named in pool.unreaped after KILL_WAIT, not
waited for.
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import psutil

from .errors import DeadlineExceeded, WorkerError
from .wait import wait_until
from .watchdog import in_kernel

KILL_WAIT = 10.0  # seconds close() waits for SIGKILLed processes to be reaped
SPAWN_TIMEOUT = 10.0  # seconds for a running zygote to fork a worker and the worker to answer
# seconds for a pool's first worker, which waits for the zygote's own start: a
# cold Python importing the harness (0.4-1.2 s on this loaded host) over 9p in
# a TCG guest, 10-15x slower, can take more than 10 s
ZYGOTE_START_TIMEOUT = 60.0


def readable(sock, timeout):
    """Whether sock has data (or EOF) within timeout seconds.  poll(2), not
    select(2): select takes no descriptor numbered 1024 or more (FD_SETSIZE),
    and the harness holds one socket per worker."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(timeout, 0) * 1000))


class Lines:
    """JSON lines over a stream socket; keeps what arrived past one line."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, msg):
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def read(self, deadline, what):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not readable(self.sock, left):
                raise WorkerError(f"{what}: no answer in time")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(what)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


class Worker:
    """One worker process: a pid, a command socket, and the regions it maps."""

    def __init__(self, pool, name, pid, sock):
        self.pool = pool
        self.name = name
        self.pid = pid
        self.lines = Lines(sock)
        self.regions = {}  # region name -> {"addr", "npages", "keys_addr"}
        self.exit = None  # {"signal": N} or {"exit": N} once it died
        self.doing = ""  # the command sent and not answered yet ("" when idle)

    def send(self, op, **args):
        self.doing = op
        try:
            self.lines.send({"op": op, **args})
        except OSError as exc:
            raise self._died(op) from exc

    def receive(self, op, timeout=60.0):
        deadline = time.monotonic() + timeout
        try:
            reply = self.lines.read(deadline, f"worker {self.name} ({op})")
        except (EOFError, ConnectionError):
            raise self._died(op) from None
        except WorkerError as exc:  # no answer in time: say where in the kernel it is
            raise WorkerError(f"{exc} after {timeout:.1f}s; {in_kernel(self.pid, self.name, op).text()}") from None
        self.doing = ""
        if not reply.pop("ok"):
            raise WorkerError(f"worker {self.name}: {reply['error']}")
        return reply

    def call(self, op, timeout=60.0, **args):
        self.send(op, **args)
        return self.receive(op, timeout)

    def _died(self, op):
        self.exit = self.pool.wait_exit(self.pid)
        how = f"killed by {signal.Signals(self.exit['signal']).name}" if "signal" in self.exit \
            else f"exited with {self.exit.get('exit')}"
        return WorkerDied(f"worker {self.name} (pid {self.pid}) {how} during {op}", self.exit)

    def descendants(self):
        """Every live descendant, as psutil.Process (descendants_of())."""
        return descendants_of(self.pid)


# fs/proc/array.c children_seq_ops, CONFIG_PROC_CHILDREN (Debian's kernels
# have it; the test kernels' minimal config does not)
PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants_of(pid):
    """Every live descendant of pid, as psutil.Process.  Followed down
    through /proc/PID/task/TID/children where the kernel has it: psutil's
    children() reads /proc/*/stat of every process on the machine for each
    call, so asking it for each of hundreds of workers costs workers x
    processes (seconds per metric at 256 workers)."""
    if not PROC_CHILDREN:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
    found, todo = [], child_pids(pid)
    while todo:
        child = todo.pop()
        try:
            found.append(psutil.Process(child))
        except psutil.NoSuchProcess:
            continue
        todo.extend(child_pids(child))
    return found


def child_pids(pid):
    """The children of a process: each of its threads lists those it forked
    in /proc/PID/task/TID/children.  [] once the process is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []
    out = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread (or process) exited meanwhile
    return out


def _kill(p):
    try:
        p.kill()
    except psutil.NoSuchProcess:
        pass


def _alive(p):
    """Still there and not a zombie (a zombie is dead, only not reaped yet)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class WorkerDied(WorkerError):
    def __init__(self, message, exit):
        super().__init__(message)
        self.exit = exit


class WorkerPool:
    """Starts the zygote; spawns, kills and reaps workers."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._lines = Lines(ours)
        self.workers = []
        self.unreaped = ()  # InKernel of each process close() killed but could not reap
        self._exited = {}
        self.zygote = subprocess.Popen(
            [sys.executable, "-m", "harness.zygote", str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            # a session of its own (workers and their children inherit it): the
            # terminal's SIGINT reaches the harness alone, which then stops them in order
            start_new_session=True,
        )
        theirs.close()

    def spawn(self, name, timeout=SPAWN_TIMEOUT):
        if not self.workers:  # the zygote's own start comes first
            timeout = max(timeout, ZYGOTE_START_TIMEOUT)
        self._sock.sendall(b'{"op": "spawn"}\n')
        deadline = time.monotonic() + timeout
        if not readable(self._sock, timeout):
            raise WorkerError("the worker zygote did not answer a spawn request")
        data, fds, _, _ = socket.recv_fds(self._sock, 4096, 1)
        if not fds:
            raise WorkerError(f"the worker zygote failed to spawn a worker: {data!r}")
        pid = json.loads(data)["pid"]
        w = Worker(self, name, pid, socket.socket(fileno=fds[0]))
        self.workers.append(w)
        w.call("ping", timeout=max(deadline - time.monotonic(), 0.1))
        return w

    def wait_exit(self, pid, timeout=10.0):
        """How a worker ended (it must be dead or dying); reaps it."""
        deadline = time.monotonic() + timeout

        def reaped():
            if pid not in self._exited:
                self._lines.send({"op": "reap", "pids": [pid]})
                reply = self._lines.read(deadline, "zygote reap")
                self._exited.update({int(k): v for k, v in reply["exited"].items()})
            return pid in self._exited

        try:
            wait_until(reaped, timeout, f"worker {pid} exit")
        except DeadlineExceeded:
            raise WorkerError(f"worker {pid} did not exit") from None
        return self._exited[pid]

    def _reap_alive(self, procs):
        """Reap what exited; the processes of procs still alive, with any
        process under the zygote that procs lacks (forked after they were
        listed) killed and added to procs."""
        self._lines.send({"op": "reap", "pids": []})
        self._lines.read(time.monotonic() + 10, "zygote reap")
        known = {p.pid for p in procs}
        for late in self._tree():
            if late.pid not in known:
                _kill(late)
                procs.append(late)
        return [p for p in procs if _alive(p)]

    def _tree(self):
        """Every live process under the zygote: the workers, their children,
        and the orphans it adopted as subreaper."""
        return [p for p in descendants_of(self.zygote.pid) if _alive(p)]

    def busy(self):
        """(name, pid, command) of every live worker that owes a reply."""
        return [(w.name, w.pid, w.doing) for w in self.workers if w.doing and w.exit is None]

    def close(self):
        """SIGKILL every worker and its descendants, reap them, stop the zygote."""
        procs = []
        for w in self.workers:
            procs.extend(w.descendants())
            try:
                procs.append(psutil.Process(w.pid))
            except psutil.NoSuchProcess:
                pass
        for p in procs:
            _kill(p)
        try:
            # killed workers are the zygote's children and their orphaned
            # descendants are adopted by it (PR_SET_CHILD_SUBREAPER): each
            # reap request collects every one that has exited.  Every process
            # under the zygote must be gone before close() returns, a child
            # forked after the list was made too: one still exiting maps its
            # KSM pages until exit_mmap(), after ksm_exit() took it off ksmd's
            # list, so the run=2 after the pool closes cannot remove their
            # stable nodes (mm/ksm.c remove_stable_node(): "Page could be still
            # mapped if this races with __mmput()"), and they stay counted
            try:
                wait_until(lambda: not self._reap_alive(procs), KILL_WAIT, "workers and descendants exit")
                left = []
            except DeadlineExceeded:
                left = self._reap_alive(procs)
                names = {w.pid: w.name for w in self.workers}
                self.unreaped = tuple(in_kernel(p.pid, names.get(p.pid, f"child {p.pid}")) for p in left)
            stuck = {p.pid for p in left}
            for w in self.workers:
                if w.pid not in self._exited and w.pid not in stuck:
                    self.wait_exit(w.pid)
        finally:
            self._sock.close()  # the zygote's loop ends at EOF
            try:
                self.zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
