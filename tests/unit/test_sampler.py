"""sampler.py: /proc/vmstat parsing, counter deltas and the sampling thread, on fakes."""
import pytest

from harness.knobs import Knobs
from harness.sampler import VMSTAT_FIELDS, Counters, Sampler, deltas, read_vmstat
from harness.wait import wait_until

VMSTAT = """\
nr_free_pages 5830102
nr_anon_pages 41234
pswpin 12
pswpout 2048
ksm_swpin_copy 3
cow_ksm 0
pgfault 99999
"""


@pytest.fixture
def proc(tmp_path):
    (tmp_path / "vmstat").write_text(VMSTAT)
    return tmp_path


def test_read_vmstat(proc):
    assert read_vmstat(proc) == {"nr_anon_pages": 41234, "pswpin": 12, "pswpout": 2048, "ksm_swpin_copy": 3,
                                 "cow_ksm": 0}
    assert "pgfault" not in VMSTAT_FIELDS


def test_read_vmstat_fields(proc):
    assert read_vmstat(proc, fields=("pgfault", "thp_split_page")) == {"pgfault": 99999}


def test_deltas():
    before = {"pswpout": 10, "full_scans": 3, "pages_shared": 50, "gone": 1}
    after = {"pswpout": 2058, "full_scans": 3, "pages_shared": 0, "new": 5}
    assert deltas(before, after) == {"pages_shared": -50, "pswpout": 2048}
    assert list(deltas(before, after)) == ["pages_shared", "pswpout"]  # sorted
    assert deltas(after, after) == {}


@pytest.fixture
def counters(proc, tmp_path):
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    for name, value, mode in (("run", "1", 0o644), ("pages_shared", "5", 0o444), ("full_scans", "2", 0o444)):
        (ksm / name).write_text(value + "\n")
        (ksm / name).chmod(mode)
    return Counters(Knobs(ksm), proc)


def test_counters_read(counters):
    values = counters.read()
    assert values["pages_shared"] == 5 and values["full_scans"] == 2 and values["pswpout"] == 2048
    assert "run" not in values  # a setting, not a counter


def test_sampler_thread(counters):
    s = Sampler(counters, interval=0.001, t0=0.0).start()
    wait_until(lambda: s.samples, 10, "the sampler thread's first sample")
    s.stop()
    assert len(s.samples) >= 2  # at least the loop's first sample and stop()'s last
    assert all(x.values["pages_shared"] == 5 for x in s.samples)
    assert [x.t for x in s.samples] == sorted(x.t for x in s.samples)
