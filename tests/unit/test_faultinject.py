"""faultinject.py on a fake debugfs (already mounted, so no mount is run)."""
import gzip
import json
import os

import pytest

from harness import faultinject
from harness.errors import InputError, KernelError, Skip

DEFAULTS = {"space": "0", "verbose": "2", "times": "1", "interval": "1", "probability": "0"}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    attrs = sys / "kernel/debug/fail_make_request"
    attrs.mkdir(parents=True)
    for name, value in DEFAULTS.items():
        (attrs / name).write_text(value + "\n")
    (sys / "block/loop3").mkdir(parents=True)
    (sys / "block/loop3/make-it-fail").write_text("0\n")
    (proc / "self").mkdir(parents=True)
    (proc / "self/mountinfo").write_text(f"50 20 0:7 / {sys}/kernel/debug rw - debugfs debugfs rw\n")
    (proc / "filesystems").write_text("nodev\tdebugfs\n")
    with gzip.open(proc / "config.gz", "wt") as f:
        f.write("CONFIG_FAULT_INJECTION=y\nCONFIG_FAIL_MAKE_REQUEST=y\n")
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def no_commands(argv, **kw):
        raise AssertionError(f"ran {argv}")

    monkeypatch.setattr(faultinject, "run", no_commands)
    return faultinject.FailMakeRequest(str(sys), str(proc)), attrs, sys / "block/loop3/make-it-fail"


def values(attrs):
    return {name: (attrs / name).read_text().strip() for name in DEFAULTS}


def test_available(fake):
    assert fake[0].available() is None


def test_available_reasons(fake, monkeypatch):
    fi, attrs, _ = fake
    for name in DEFAULTS:
        (attrs / name).unlink()
    attrs.rmdir()
    assert "CONFIG_FAULT_INJECTION_DEBUG_FS" in fi.available()
    with gzip.open(os.path.join(fi.proc, "config.gz"), "wt") as f:
        f.write("# CONFIG_FAIL_MAKE_REQUEST is not set\n")
    assert "without CONFIG_FAIL_MAKE_REQUEST" in fi.available()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert fi.available() == "fault injection needs root"


def test_arm_and_disarm_restore(fake):
    fi, attrs, make_it_fail = fake
    (attrs / "verbose").write_text("0\n")  # someone's own setting: must come back
    with fi.arm("loop3", times=5) as armed:
        assert values(attrs) == {"space": "0", "verbose": "1", "times": "5", "interval": "1", "probability": "100"}
        assert make_it_fail.read_text() == "1"
        assert armed.previous["verbose"] == "0" and not armed.mounted_debugfs
    assert values(attrs) == {**DEFAULTS, "verbose": "0"}
    assert make_it_fail.read_text() == "0"


def test_arm_now_disarm_later(fake):
    fi, attrs, make_it_fail = fake
    injection = fi.arm("loop3", times=2)
    assert values(attrs)["times"] == "2" and make_it_fail.read_text() == "1"
    injection.disarm()
    assert values(attrs) == DEFAULTS and make_it_fail.read_text() == "0" and not injection.active
    make_it_fail.write_text("1")  # someone else's now: a second disarm must not touch it
    injection.disarm()
    assert make_it_fail.read_text() == "1"


def test_disarm_even_when_body_raises(fake):
    fi, attrs, make_it_fail = fake
    with pytest.raises(RuntimeError):
        with fi.arm("loop3"):
            raise RuntimeError("scenario failed")
    assert values(attrs) == DEFAULTS and make_it_fail.read_text() == "0"


def test_arm_checks_input(fake):
    fi = fake[0]
    with pytest.raises(InputError):
        fi.arm("loop3", times=0)
    with pytest.raises(InputError):
        fi.arm("/dev/loop3")
    with pytest.raises(KernelError, match="make-it-fail"):
        fi.arm("loop9")


def test_arm_skips(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Skip, match="root"):
        fake[0].arm("loop3")


def test_journal_and_remove_stale(fake):
    fi, attrs, make_it_fail = fake
    written = []
    fi.arm("loop3", times=-1, journal=lambda a: written.append(json.dumps(faultinject.to_journal(a))))
    # then "SIGKILL": no disarm
    assert values(attrs)["probability"] == "100" and len(written) == 1
    armed = faultinject.from_journal(json.loads(written[0]))
    fi.remove_stale(armed)
    assert values(attrs) == DEFAULTS and make_it_fail.read_text() == "0"
    # the loop device is gone by now: still fine
    make_it_fail.unlink()
    fi.remove_stale(armed)
    with pytest.raises(InputError):
        faultinject.from_journal({"resource": "swap"})
