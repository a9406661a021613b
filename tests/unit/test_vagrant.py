"""vagrant/: what can be checked without Vagrant or libvirt.

- the Vagrantfile is valid Ruby (`ruby -c`) and, evaluated against a stub
  Vagrant API, defines a libvirt guest with 2+ NUMA nodes that runs setup.sh
  and the default suite;
- the suite path each recipe runs, parsed out of the files, is a real suite:
  `ksm-harness check` validates every scenario in it;
- the systemd units pass `systemd-analyze verify`;
- the nightly script keeps results and the kernel log in a dated dir and
  fails loudly on a crash, driven with a fake harness and a fake dmesg.
"""
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import scenario

REPO = Path(__file__).resolve().parents[2]
VAGRANT = REPO / "vagrant"
NIGHTLY = VAGRANT / "nightly"

# Evaluates the Vagrantfile against a stub Vagrant API and prints, as JSON,
# every setting it makes: {"attrs": {name: child}, "calls": {name: [call]}}.
RUBY_STUB = r"""
require "json"
class Recorder
  def initialize; @attrs = {}; @calls = {}; end
  def method_missing(name, *args, **kw, &blk)
    key = name.to_s
    if args.empty? && kw.empty? && blk.nil? && !key.end_with?("=")
      return @attrs[key] ||= Recorder.new  # config.vm, libvirt.foo: a namespace
    end
    sub = Recorder.new
    (@calls[key.chomp("=")] ||= []) << { "args" => args, "kw" => kw, "sub" => sub }
    blk.call(sub) if blk
    sub
  end
  def respond_to_missing?(*) = true
  def to_json(*a) = { "attrs" => @attrs, "calls" => @calls }.to_json(*a)
end
module Vagrant
  def self.configure(version)
    $config = Recorder.new
    yield $config
  end
end
load ARGV[0]
puts JSON.generate($config)
"""


def vagrant_config(env=None):
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby not installed (apt-get install ruby)")
    proc = subprocess.run([ruby, "-e", RUBY_STUB, str(VAGRANT / "Vagrantfile")], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_vagrantfile_ruby_syntax():
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby not installed (apt-get install ruby)")
    proc = subprocess.run([ruby, "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True)
    assert proc.returncode == 0 and "Syntax OK" in proc.stdout, proc.stderr


def libvirt_settings(config):
    """{setting: first value} of the libvirt provider block."""
    (provider,) = [c for c in config["attrs"]["vm"]["calls"]["provider"] if c["args"] == ["libvirt"]]
    return {k: v[0]["args"][0] for k, v in provider["sub"]["calls"].items()}


def provisioners(config):
    return {c["args"][0]: c["kw"] for c in config["attrs"]["vm"]["calls"]["provision"]}


def test_vagrantfile_defines_numa_libvirt_guest():
    settings = libvirt_settings(vagrant_config())
    assert settings["numa_nodes"] == [{"cpus": "0-1", "memory": "2048"}, {"cpus": "2-3", "memory": "2048"}]
    assert settings["cpus"] == 4 and settings["memory"] == 4096
    assert settings["memorybacking"] == "nosharepages"


def test_vagrantfile_node_count_from_env():
    settings = libvirt_settings(vagrant_config({"KSM_NUMA_NODES": "4", "KSM_NODE_CPUS": "1", "KSM_NODE_MEMORY": "1024"}))
    assert [n["cpus"] for n in settings["numa_nodes"]] == ["0-0", "1-1", "2-2", "3-3"]
    assert settings["memory"] == 4096


def run_arguments(script):
    """The positional arguments of the `ksm-harness run` command in a shell script
    (options and their values left out, line continuations joined)."""
    joined = script.replace("\\\n", " ")
    command = re.search(r"ksm-harness\"? run (--.*?)(?:\|\||>|$)", joined, re.M).group(1)
    words, positional = shlex.split(command), []
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            words.pop(0)  # every option the recipes pass takes a value
        else:
            positional.append(word)
    return positional


def recipe_suites():
    """recipe -> the suite path it runs, read out of the files themselves."""
    nightly = (NIGHTLY / "ksm-harness-nightly").read_text()
    default = re.search(r"^suite=\$\{KSM_HARNESS_SUITE:-([^}]+)\}$", nightly, re.M).group(1)
    assert run_arguments(nightly) == ['$suite']
    (vagrant,) = run_arguments(vagrant_suite_script())
    return {"nightly": default, "vagrant": vagrant}


def vagrant_suite_script():
    """The "suite" provisioner's inline script, read from the Vagrantfile's text
    (its <<~SHELL heredoc), so that this needs no ruby."""
    text = (VAGRANT / "Vagrantfile").read_text()
    return re.search(r'provision "suite".*?<<~SHELL\n(.*?)^\s*SHELL$', text, re.S | re.M).group(1)


def test_vagrantfile_runs_setup_then_suite():
    prov = provisioners(vagrant_config())
    assert list(prov) == ["setup", "suite"]
    assert "./setup.sh" in prov["setup"]["inline"]
    assert ".venv/bin/ksm-harness run" in prov["suite"]["inline"]
    assert run_arguments(prov["suite"]["inline"]) == ["scenarios"]
    assert prov["suite"]["inline"].split() == vagrant_suite_script().split()
    assert '--kcidb "$out/kcidb.json"' in prov["suite"]["inline"]


def test_recipes_run_a_suite_that_exists():
    """`ksm-harness check` (validation only, no kernel touched) on exactly the
    path each recipe runs, from the checkout root as both recipes cd there."""
    for recipe, suite in recipe_suites().items():
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "check", suite], cwd=REPO,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{recipe} runs {suite}: {proc.stderr}"
        assert proc.stdout == f"{len(scenario.load_all([REPO / 'scenarios']))} scenarios valid\n"


def test_check_fails_on_a_suite_path_that_does_not_exist():
    """What the test above guards against: both recipes once ran scenarios/default."""
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "check", "scenarios/default"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "scenarios/default" in proc.stderr


def test_units_parse_and_point_at_the_script():
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str
    service.read(NIGHTLY / "ksm-harness-nightly.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"] == "/opt/ksm-harness/vagrant/nightly/ksm-harness-nightly"
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str
    timer.read(NIGHTLY / "ksm-harness-nightly.timer")
    assert timer["Timer"]["Unit"] == "ksm-harness-nightly.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_units_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    for name in ("ksm-harness-nightly.service", "ksm-harness-nightly.timer"):
        text = (NIGHTLY / name).read_text()
        # verify checks that ExecStart exists: point it at this checkout.
        (tmp_path / name).write_text(text.replace("/opt/ksm-harness", str(REPO)))
    proc = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "ksm-harness-nightly.service"),
                           str(tmp_path / "ksm-harness-nightly.timer")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


FAKE_HARNESS = """#!/bin/sh
# Fake `ksm-harness run --json J --junit X --ktap K --kcidb C SUITE`: writes the reports.
echo '{"format": "fake"}' > "$3"; echo '<testsuites/>' > "$5"; echo 'KTAP version 1' > "$7"
echo '{"version": {"major": 5}}' > "$9"
echo "ran ${10}"
[ -n "$FAKE_CRASH" ] && echo "[  99.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008" >> "$FAKE_DMESG"
exit "${FAKE_RC:-0}"
"""


@pytest.fixture
def nightly(tmp_path):
    """Run the nightly script against a fake checkout, harness and dmesg."""
    pytest.importorskip("harness.crash")
    repo = tmp_path / "repo"
    (repo / ".venv/bin").mkdir(parents=True)
    (repo / ".venv/bin/python").symlink_to(sys.executable)
    fake = repo / ".venv/bin/ksm-harness"
    fake.write_text(FAKE_HARNESS)
    fake.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dmesg").write_text('#!/bin/sh\ncat "$FAKE_DMESG"\n')
    (bin_dir / "dmesg").chmod(0o755)
    log = tmp_path / "dmesg.log"
    log.write_text("[    0.000000] Linux version 6.1.0\n[    1.000000] WARNING: boot-time, not the run's\n")
    results = tmp_path / "results"

    def run(**env):
        return subprocess.run(
            [str(NIGHTLY / "ksm-harness-nightly")], capture_output=True, text=True,
            env={
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "PYTHONPATH": str(REPO),
                "KSM_HARNESS_REPO": str(repo),
                "KSM_HARNESS_RESULTS": str(results),
                "FAKE_DMESG": str(log),
                **env,
            },
        )

    return run, results


def test_nightly_pass_keeps_a_dated_dir(nightly):
    run, results = nightly
    proc = run()
    assert proc.returncode == 0, proc.stderr
    latest = results / "latest"
    assert latest.is_symlink() and os.readlink(latest).startswith("20")
    for name in ("result.json", "junit.xml", "result.ktap", "kcidb.json", "run.log", "dmesg.txt", "kernel.txt"):
        assert (latest / name).exists(), name
    assert (latest / "run.log").read_text() == "ran scenarios\n"  # the default suite
    assert "<6>ksm-harness nightly: passed" in proc.stdout


def test_nightly_crash_in_kernel_log_fails_loudly(nightly):
    run, results = nightly
    proc = run(FAKE_CRASH="1")
    assert proc.returncode == 1
    assert "<3>ksm-harness nightly: kernel crash:" in proc.stderr and "NULL pointer" in proc.stderr
    assert "FAILED" in proc.stderr
    assert "boot-time" not in (results / "latest" / "crashes.txt").read_text()


def test_nightly_failed_run_passes_its_exit_code(nightly):
    run, _ = nightly
    proc = run(FAKE_RC="1")
    assert proc.returncode == 1
    assert "run exit 1" in proc.stderr
