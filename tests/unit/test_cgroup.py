"""cgroup.py parsing, hierarchy detection and journal, on fake /proc and cgroup trees."""
import errno
import json
import os

import pytest

from harness import cgroup
from harness.errors import InputError, KernelError, Skip

STAT_V1 = """\
cache 0
rss 33554432
rss_huge 0
swap 4096
hierarchical_memory_limit 9223372036854771712
total_rss 33554432
"""


def test_parse_stat():
    st = cgroup.parse_stat(STAT_V1)
    assert st["rss"] == 33554432 and st["swap"] == 4096
    assert st["hierarchical_memory_limit"] == 9223372036854771712
    assert cgroup.parse_stat("anon 8192\nfile 0\n\n") == {"anon": 8192, "file": 0}


PROC_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/ee7e
3:cpu,cpuacct:/
0::/user.slice/x.scope
"""


def test_parse_proc_cgroup():
    assert cgroup.parse_proc_cgroup(PROC_CGROUP, 1) == "/process_api/ee7e"
    assert cgroup.parse_proc_cgroup(PROC_CGROUP, 2) == "/user.slice/x.scope"
    assert cgroup.parse_proc_cgroup("0::/\n", 1) is None


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A fake /proc whose mountinfo points at fake cgroup mounts in tmp_path."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    v1, v2 = tmp_path / "memory", tmp_path / "unified"
    v1.mkdir()
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu io memory pids\n")
    (v2 / "cgroup.subtree_control").write_text("memory\n")
    (proc / "self/cgroup").write_text(PROC_CGROUP)
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def mount(v1_too=True):
        lines = [f"31 25 0:27 / {v2} rw - cgroup2 cgroup2 rw"]
        if v1_too:
            lines.insert(0, f"30 25 0:26 / {v1} rw,relatime - cgroup cgroup rw,memory")
        (proc / "self/mountinfo").write_text("\n".join(lines) + "\n")

    mount()
    return proc, v1, v2, mount


def test_v1_wins(tree):
    proc, v1, v2, _ = tree
    assert cgroup.find_hierarchy(str(proc)) == cgroup.Hierarchy(1, str(v1), "/")
    assert cgroup.available(str(proc)) is None


def test_v2(tree):
    proc, v1, v2, mount = tree
    mount(v1_too=False)
    assert cgroup.find_hierarchy(str(proc)) == cgroup.Hierarchy(2, str(v2), "/")
    assert cgroup.available(str(proc)) is None
    (v2 / "cgroup.subtree_control").write_text("cpu\n")
    assert "+memory" in cgroup.available(str(proc))
    (v2 / "cgroup.controllers").write_text("cpu\n")
    assert "no memory cgroup" in cgroup.available(str(proc))


def test_not_root(tree, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cgroup.available(str(tree[0])) == "memory cgroups need root"
    with pytest.raises(Skip):
        cgroup.MemCgroup.create("x", str(tree[0]))


def test_create_v1(tree):
    proc, v1, _, _ = tree
    (v1 / "process_api/ee7e").mkdir(parents=True)
    journaled = []
    cg = cgroup.MemCgroup.create("scen", str(proc), journal=lambda g: journaled.append(os.path.exists(g.path)))
    assert cg == cgroup.MemCgroup(str(v1 / "ksm-harness/scen"), 1, str(v1 / "process_api/ee7e"))
    assert os.path.isdir(cg.path)
    assert journaled == [False]  # told before the mkdir
    with pytest.raises(KernelError, match="already exists"):
        cgroup.MemCgroup.create("scen", str(proc))


def test_create_v2_enables_memory_in_parent(tree):
    proc, _, v2, mount = tree
    mount(v1_too=False)
    cg = cgroup.MemCgroup.create("scen", str(proc))
    assert cg.version == 2 and cg.home == str(v2 / "user.slice/x.scope")
    assert (v2 / "ksm-harness/cgroup.subtree_control").read_text() == "+memory"


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_create_bad_name(tree, name):
    with pytest.raises(InputError):
        cgroup.MemCgroup.create(name, str(tree[0]))


def test_home_outside_a_bind_mounted_root(tree):
    # A container sees only /lxc/c1 of the hierarchy at its mount point.
    proc, v1, _, _ = tree
    h = cgroup.Hierarchy(1, str(v1), "/lxc/c1")
    (proc / "self/cgroup").write_text("4:memory:/lxc/c1/app\n")
    assert cgroup.MemCgroup.create("a", str(proc), hierarchy=h).home == str(v1 / "app")
    (proc / "self/cgroup").write_text("4:memory:/elsewhere\n")
    assert cgroup.MemCgroup.create("b", str(proc), hierarchy=h).home == str(v1)


@pytest.mark.parametrize("version, limit, file, value", [
    (1, 1 << 20, "memory.limit_in_bytes", "1048576"),
    (1, None, "memory.limit_in_bytes", "-1"),
    (2, None, "memory.max", "max"),
])
def test_set_limit_writes(tmp_path, version, limit, file, value):
    cg = cgroup.MemCgroup(str(tmp_path), version, "/")
    assert cg.set_limit(limit) is cgroup.LimitResult.OK
    assert (tmp_path / file).read_text() == value


@pytest.mark.parametrize(
    "err, want", [(errno.EBUSY, cgroup.LimitResult.EBUSY), (errno.EINVAL, cgroup.LimitResult.EINVAL)]
)
def test_set_limit_errors(tmp_path, monkeypatch, err, want):
    def refuse(path, value):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(cgroup, "_write", refuse)
    assert cgroup.MemCgroup(str(tmp_path), 1, "/").set_limit(1) is want


def v2_group(tmp_path, usage, reclaim_errno=None, monkeypatch=None):
    """A fake v2 group charged `usage` bytes whose memory.reclaim fails with reclaim_errno."""
    (tmp_path / "memory.current").write_text(f"{usage}\n")
    (tmp_path / "memory.stat").write_text("anon 5242880\nfile_writeback 0\n")
    (tmp_path / "memory.reclaim").write_text("")
    written = []

    def write(path, value):
        written.append((os.path.basename(path), value))
        if reclaim_errno and path.endswith("memory.reclaim"):
            raise OSError(reclaim_errno, os.strerror(reclaim_errno))

    monkeypatch.setattr(cgroup, "_write", write)
    return cgroup.MemCgroup(str(tmp_path), 2, "/"), written


def test_set_limit_v2_reclaims_first(tmp_path, monkeypatch):
    cg, written = v2_group(tmp_path, 5 << 20, monkeypatch=monkeypatch)
    assert cg.set_limit(1 << 20) is cgroup.LimitResult.OK
    assert written == [("memory.reclaim", str(4 << 20)), ("memory.max", str(1 << 20))]


def test_set_limit_v2_unreclaimable_is_ebusy_without_an_oom_kill(tmp_path, monkeypatch):
    # memory_reclaim() gives EAGAIN: memory.max is not written, so memory_max_write() cannot OOM-kill
    cg, written = v2_group(tmp_path, 5 << 20, errno.EAGAIN, monkeypatch)
    assert cg.set_limit(1 << 20) is cgroup.LimitResult.EBUSY
    # asked once more (the first answer gives nothing to compare), then no progress: EBUSY
    assert written == [("memory.reclaim", str(4 << 20))] * 2


def test_set_limit_v2_under_the_limit_needs_no_reclaim(tmp_path, monkeypatch):
    cg, written = v2_group(tmp_path, 1 << 20, monkeypatch=monkeypatch)
    assert cg.set_limit(4 << 20) is cgroup.LimitResult.OK
    assert written == [("memory.max", str(4 << 20))]


def test_set_limit_other_error_raises(tmp_path, monkeypatch):
    def refuse(path, value):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(cgroup, "_write", refuse)
    with pytest.raises(KernelError, match="memory.limit_in_bytes"):
        cgroup.MemCgroup(str(tmp_path), 1, "/").set_limit(1)


def test_usage_stat_pids(tmp_path):
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.current").write_text("8192\n")
    (tmp_path / "memory.stat").write_text(STAT_V1)
    (tmp_path / "cgroup.procs").write_text("12\n34\n")
    assert cgroup.MemCgroup(str(tmp_path), 1, "/").usage() == 4096
    assert cgroup.MemCgroup(str(tmp_path), 2, "/").usage() == 8192
    assert cgroup.MemCgroup(str(tmp_path), 1, "/").stat()["rss"] == 33554432
    assert cgroup.MemCgroup(str(tmp_path), 1, "/").pids() == [12, 34]


def test_journal_round_trip():
    cg = cgroup.MemCgroup("/sys/fs/cgroup/memory/ksm-harness/a", 1, "/sys/fs/cgroup/memory")
    d = json.loads(json.dumps(cgroup.to_journal(cg)))
    assert d["resource"] == "memcg" and cgroup.from_journal(d) == cg
    with pytest.raises(InputError):
        cgroup.from_journal({"resource": "swap", "path": "/x"})


def test_remove_refuses_foreign_path(tmp_path):
    with pytest.raises(InputError, match="not under a ksm-harness"):
        cgroup.remove_stale(cgroup.MemCgroup(str(tmp_path / "system.slice"), 1, "/"))


def test_remove_stale_tolerates_gone(tmp_path):
    parent = tmp_path / "ksm-harness"
    parent.mkdir()
    cg = cgroup.MemCgroup(str(parent / "gone"), 1, str(tmp_path))
    assert cgroup.remove_stale(cg) is False
    assert not parent.exists()  # the empty parent goes too
    assert cgroup.remove_stale(cg) is False


@pytest.fixture
def cpuset_tree(tmp_path, monkeypatch):
    """A fake /proc whose mountinfo has a v1 cpuset hierarchy at tmp_path/cpuset (CPUs 0-3, nodes 0-1)."""
    proc, mount = tmp_path / "proc", tmp_path / "cpuset"
    (proc / "self").mkdir(parents=True)
    mount.mkdir()
    (mount / "cpuset.cpus").write_text("0-3\n")
    (mount / "cpuset.mems").write_text("0-1\n")
    (proc / "self/cgroup").write_text("3:cpuset:/\n4:memory:/process_api/ee7e\n")
    (proc / "self/mountinfo").write_text(f"30 25 0:26 / {mount} rw,relatime - cgroup cgroup rw,cpuset\n")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return proc, mount


def test_cpuset_v1_parent_gets_its_parents_cpus_and_nodes(cpuset_tree):
    proc, mount = cpuset_tree
    assert cgroup.available(str(proc), "memory").startswith("no memory cgroup controller mounted (CONFIG_MEMCG")
    assert cgroup.available(str(proc), "cpuset") is None
    cs = cgroup.Cpuset.create("scen", str(proc))
    assert cs == cgroup.Cpuset(str(mount / "ksm-harness/scen"), 1, str(mount))
    # a v1 cpuset starts empty (the fake's files do not appear by themselves)
    assert (mount / "ksm-harness/cpuset.cpus").read_text() == "0-3"
    assert (mount / "ksm-harness/cpuset.mems").read_text() == "0-1"
    (mount / "ksm-harness/cpuset.effective_cpus").write_text("0-3\n")
    cs.place(None, "1")
    assert (mount / "ksm-harness/scen/cpuset.cpus").read_text() == "0-3"
    assert (mount / "ksm-harness/scen/cpuset.mems").read_text() == "1"


def test_cpuset_v2_reads_its_effective_files(tmp_path):
    # v2 names them cpuset.cpus.effective and cpuset.mems.effective (v1: cpuset.effective_cpus)
    parent = tmp_path / "ksm-harness"
    (parent / "scen").mkdir(parents=True)
    (parent / "cpuset.cpus.effective").write_text("0-1\n")
    (parent / "scen/cpuset.cpus.effective").write_text("0-1\n")
    (parent / "scen/cpuset.mems.effective").write_text("0\n")
    cs = cgroup.Cpuset(str(parent / "scen"), 2, str(tmp_path))
    cs.place(None, "0")
    assert (parent / "scen/cpuset.cpus").read_text() == "0-1"
    assert cs.effective() == {"cpus": "0-1", "mems": "0"}


def test_cpuset_journal_round_trip_and_missing_controller(cpuset_tree, tmp_path):
    cs = cgroup.Cpuset("/sys/fs/cgroup/cpuset/ksm-harness/a", 1, "/sys/fs/cgroup/cpuset")
    d = json.loads(json.dumps(cgroup.to_journal(cs)))
    assert d["resource"] == "cpuset" and cgroup.from_journal(d) == cs
    proc, _ = cpuset_tree
    (proc / "self/mountinfo").write_text("")
    assert cgroup.available(str(proc), "cpuset") == ("no cpuset cgroup controller mounted (CONFIG_CPUSETS; "
                                                     "cgroup or cgroup2 with cpuset)")
    with pytest.raises(Skip):
        cgroup.Cpuset.create("x", str(proc))


@pytest.mark.parametrize("text, numbers", [("0", {0}), ("0-2,5\n", {0, 1, 2, 5}), ("", set()), ("1,1-2", {1, 2})])
def test_parse_list(text, numbers):
    assert cgroup.parse_list(text) == numbers
