"""Real memory cgroups on the running kernel (no KSM): made, filled, limited, removed.

Every cgroup and child process is undone in a `finally`, even when a test
fails.  Needs root and a memory controller; skips with the reason otherwise.
"""
import ctypes
import json
import os
import signal
import subprocess
import sys

import pytest

from harness import cgroup

FILL = 32 << 20

# The child waits for a line, fills FILL bytes of private memory (charged to
# the cgroup it is in by then), says so, and waits for another line.
CHILD = f"import sys; sys.stdin.readline(); b = b'x' * {FILL}; print('full', flush=True); sys.stdin.readline()"


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, preexec_fn=_die_with_parent)
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def fill(p):
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "full"


@pytest.fixture
def group(request):
    if os.geteuid() != 0:
        pytest.skip("memory cgroups need root")
    reason = cgroup.available()
    if reason:
        pytest.skip(reason)
    cg = cgroup.MemCgroup.create(f"host-test-{os.getpid()}-{request.node.name[:40]}")
    try:
        yield cg
    finally:
        cg.remove()
        assert not os.path.exists(cg.path)


def test_add_fill_remove(group, child):
    group.add(child.pid)
    assert group.pids() == [child.pid]
    fill(child)
    assert group.usage() >= FILL
    st = group.stat()
    assert st["rss" if group.version == 1 else "anon"] >= FILL
    assert group.set_limit(FILL * 4) is cgroup.LimitResult.OK

    assert group.remove() is True
    assert not os.path.exists(group.path)
    with open(f"/proc/{child.pid}/cgroup") as f:  # moved home, still alive
        now = cgroup.parse_proc_cgroup(f.read(), group.version)
    assert os.path.normpath(cgroup.find_hierarchy().mount + now) == group.home
    assert child.poll() is None


def test_limit_below_unreclaimable_usage_is_ebusy(group, child):
    if group.version != 1:
        pytest.skip("only v1 refuses with EBUSY; v2 OOM-kills instead")
    # swappiness 0 keeps reclaim off anon memory even if some swap is on now.
    with open(os.path.join(group.path, "memory.swappiness"), "w") as f:
        f.write("0")
    group.add(child.pid)
    fill(child)
    assert group.set_limit(FILL // 4) is cgroup.LimitResult.EBUSY
    assert group.usage() >= FILL
    assert group.set_limit(None) is cgroup.LimitResult.OK


def test_limit_above_memsw_is_einval(group):
    memsw = os.path.join(group.path, "memory.memsw.limit_in_bytes")
    if group.version != 1 or not os.path.exists(memsw):
        pytest.skip("needs v1 with swap accounting (memory.memsw.*)")
    assert group.set_limit(64 << 20) is cgroup.LimitResult.OK
    with open(memsw, "w") as f:
        f.write(str(64 << 20))
    assert group.set_limit(128 << 20) is cgroup.LimitResult.EINVAL


def test_remove_stale_from_journal(group, child):
    group.add(child.pid)
    d = json.loads(json.dumps(cgroup.to_journal(group)))
    assert cgroup.remove_stale(cgroup.from_journal(d)) is True
    assert not os.path.exists(group.path)
    assert cgroup.remove_stale(cgroup.from_journal(d)) is False
    assert child.poll() is None


def test_cpuset_binds_a_task_to_its_nodes(child, request):
    """A task added to a cpuset takes its nodes (cpuset_attach() sets
    mems_allowed): /proc/PID/status reads them; remove() moves it home."""
    if os.geteuid() != 0:
        pytest.skip("cpusets need root")
    reason = cgroup.available(controller="cpuset")
    if reason:
        pytest.skip(reason)
    cs = cgroup.Cpuset.create(f"host-test-{os.getpid()}-{request.node.name[:40]}")
    try:
        cs.place(None, "0")
        cs.add(child.pid)
        assert cs.pids() == [child.pid] and cs.effective()["mems"] == "0"
        with open(f"/proc/{child.pid}/status") as f:
            status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        assert status["Mems_allowed_list"].strip() == "0"
    finally:
        cs.remove()
    assert not os.path.exists(cs.path) and child.poll() is None
