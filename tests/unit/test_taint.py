"""harness.taint: /proc/sys/kernel/tainted decoded."""
import pytest

from harness import taint
from harness.errors import KernelError


def test_bits_are_the_documented_letters():
    assert "".join(f.letter for f in taint.FLAGS) == "PFSRMBUDAWCIOELKXTNJ"
    assert [f.bit for f in taint.FLAGS] == list(range(20))


def test_describe():
    assert taint.describe(0) == ()
    assert taint.describe(1 << 9 | 1 << 7) == ("D (kernel died recently, i.e. there was an OOPS or BUG)",
                                               "W (kernel issued warning)")
    assert taint.describe(1 << 25) == ("bit 25 (unknown)",)


def test_new_flags():
    assert taint.new_flags(0, 512) == ("W (kernel issued warning)",)
    assert taint.new_flags(512, 512) == ()
    assert taint.new_flags(512, 512 | 32) == ("B (bad page referenced or some unexpected page flags)",)
    assert taint.new_flags(512 | 32, 0) == ()  # cleared flags are not new


def test_letters():
    assert taint.letters(0) == "G"
    assert taint.letters(512) == "GW"
    assert taint.letters(1 | 128 | 512) == "PDW"


def test_read_tainted(tmp_path):
    path = tmp_path / "tainted"
    path.write_text("8704\n")
    assert taint.read_tainted(path) == 8704
    path.write_text("x\n")
    with pytest.raises(KernelError, match="expected a number"):
        taint.read_tainted(path)
    with pytest.raises(KernelError, match="cannot read the taint flags"):
        taint.read_tainted(tmp_path / "missing")
