"""knobs.py on a fake /sys/kernel/mm/ksm tree in tmp_path (never the real one)."""
import builtins
import errno

import pytest

from harness import knobs
from harness.errors import KernelError
from harness.knobs import Knobs, WriteResult, normalize

SETTINGS = {"run": "0", "pages_to_scan": "100", "sleep_millisecs": "20", "merge_across_nodes": "1",
            "max_page_sharing": "256", "use_zero_pages": "0", "advisor_mode": "[none] scan-time"}
COUNTERS = {"pages_shared": "0", "pages_sharing": "0", "full_scans": "7", "general_profit": "-12288"}


@pytest.fixture
def root(tmp_path):
    """A 6.x-like knob tree: settings 0644 (__ATTR_RW), counters 0444 (__ATTR_RO)."""
    for name, value in SETTINGS.items():
        (tmp_path / name).write_text(value + "\n")
        (tmp_path / name).chmod(0o644)
    for name, value in COUNTERS.items():
        (tmp_path / name).write_text(value + "\n")
        (tmp_path / name).chmod(0o444)
    return tmp_path


def test_discovery_by_mode(root):
    k = Knobs(root)
    assert k.exists()
    assert k.names() == sorted({**SETTINGS, **COUNTERS})
    assert k.settings() == sorted(SETTINGS)
    assert k.counters() == sorted(COUNTERS)
    assert k.has("run") and not k.has("ksm_zero_pages")


def test_no_ksm(tmp_path):
    k = Knobs(tmp_path / "absent")
    assert not k.exists()
    assert k.names() == [] and k.settings() == []


@pytest.mark.parametrize("raw,want", [("[none] scan-time", "none"), ("none [scan-time]\n", "scan-time"),
                                      ("  42\n", "42"), ("1", "1")])
def test_normalize(raw, want):
    assert normalize(raw) == want


def test_read_all(root):
    k = Knobs(root)
    assert k.read_all() == {**SETTINGS, **COUNTERS, "advisor_mode": "none"}
    assert k.read_int("full_scans") == 7
    assert k.read_counters() == {"pages_shared": 0, "pages_sharing": 0, "full_scans": 7,
                                 "general_profit": -12288}
    assert k.snapshot() == {**SETTINGS, "advisor_mode": "none"}


def test_write_ok(root):
    w = Knobs(root).write("pages_to_scan", 5000)
    assert (w.name, w.value, w.result) == ("pages_to_scan", "5000", WriteResult.OK)
    assert w.seconds >= 0
    assert (root / "pages_to_scan").read_text() == "5000"


def fail_open(monkeypatch, path, err):
    """Make open() in harness.knobs raise OSError(err) for one path only."""
    def fake_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise OSError(err, errno.errorcode[err], str(file))
        return builtins.open(file, *args, **kwargs)
    monkeypatch.setattr(knobs, "open", fake_open, raising=False)


@pytest.mark.parametrize("err,result", [(errno.EBUSY, WriteResult.BUSY), (errno.EINVAL, WriteResult.INVALID)])
def test_write_errno_mapping(root, monkeypatch, err, result):
    fail_open(monkeypatch, root / "merge_across_nodes", err)
    k = Knobs(root)
    assert k.write("merge_across_nodes", 0).result is result
    assert k.write("run", 1).result is WriteResult.OK  # other knobs unaffected
    assert (root / "merge_across_nodes").read_text() == "1\n"


def test_write_other_errno_raises(root, monkeypatch):
    fail_open(monkeypatch, root / "run", errno.EIO)
    with pytest.raises(KernelError, match=r"writing '1' to .*/run:"):
        Knobs(root).write("run", 1)


def test_missing_knob(root):
    k = Knobs(root)
    with pytest.raises(KernelError, match=r"ksm_zero_pages does not exist on this kernel: .*requires.knobs"):
        k.write("ksm_zero_pages", 1)
    with pytest.raises(KernelError, match=r"ksm_zero_pages does not exist on this kernel: check `ksm-harness env`"):
        k.read("ksm_zero_pages")


class Recording(Knobs):
    def __init__(self, root):
        super().__init__(root)
        self.log = []

    def write(self, name, value):
        self.log.append((name, str(value)))
        return super().write(name, value)


def test_restore_order(root):
    k = Recording(root)
    snap = k.snapshot()
    for name, value in (("run", "1"), ("pages_to_scan", "5000"), ("merge_across_nodes", "0"),
                        ("use_zero_pages", "1"), ("max_page_sharing", "16")):
        (root / name).write_text(value)
    writes = k.restore(snap, timeout=1)
    assert k.log[0] == ("run", "2")
    assert k.log[-1] == ("run", "0")
    middle = k.log[1:-1]
    assert {n for n, _ in middle[:2]} == {"merge_across_nodes", "max_page_sharing"}
    assert {n for n, _ in middle[2:]} == {"pages_to_scan", "use_zero_pages"}
    assert [w.result for w in writes] == [WriteResult.OK] * 6
    assert k.snapshot() == snap


def test_restore_writes_advisor_mode_before_pages_to_scan(root):
    # mm/ksm.c set_advisor_defaults() resets pages_to_scan when the mode changes
    k = Recording(root)
    snap = k.snapshot()
    (root / "advisor_mode").write_text("none [scan-time]")
    (root / "pages_to_scan").write_text("700")
    (root / "sleep_millisecs").write_text("10")
    k.restore(snap, timeout=1)
    names = [n for n, _ in k.log]
    assert names.index("advisor_mode") < names.index("pages_to_scan")
    assert k.snapshot() == snap


def test_restore_unchanged_writes_only_run(root):
    k = Recording(root)
    k.restore(k.snapshot(), timeout=1)
    assert k.log == [("run", "2"), ("run", "0")]


def test_restore_failure_raises(root, monkeypatch):
    k = Knobs(root)
    snap = k.snapshot()
    (root / "merge_across_nodes").write_text("0")
    (root / "pages_shared").write_text("12")
    fail_open(monkeypatch, root / "merge_across_nodes", errno.EBUSY)
    with pytest.raises(KernelError) as info:
        k.restore(snap, timeout=0.05)  # pages_shared stays 12: the wait gives up, the write is EBUSY
    msg = str(info.value)
    assert "merge_across_nodes=1: EBUSY" in msg
    assert "pages_shared=12" in msg
    assert "ksm-harness restore" in msg
    assert (root / "run").read_text() == "0"  # run was still put back
