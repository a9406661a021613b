"""`mypy harness` is clean (configured in pyproject.toml [tool.mypy]): the
typed fields of the step vocabulary and the Optional results of the kernel
interfaces are held where they are used.  About 10 to 25 s from a cold cache."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_mypy_harness_is_clean(tmp_path):
    pytest.importorskip("mypy")
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "harness"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
