"""Boot a kernel under qemu and run one command inside it.

The guest sees the host's / read-only (overlaid by a tmpfs, so it can write
anywhere), runs the command with the host's cwd and Python, and hands its
results back through a second, writable 9p share (the side channel): never
scraped from the console.  The console (ttyS0) goes to console.log and is
scanned for kernel crash reports logged after the guest became ready; what the
kernel logged while booting is context only.

    run = run_in_vm(VmOptions(kernel=Path("bzImage")), harness_command(["scenarios/seed"]), out)
    run.status  # 0 pass, 1 fail (incl. guest panic or hang), 2 bad input, 125 nothing ran
"""
import ctypes
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, IO, List, Mapping, Optional, Sequence, Tuple

from . import damage, heartbeat, initramfs, qemu, tcg
from .cleanup import Cleanup
from .crash import scan_lines
from .errors import (
    EXIT_CANNOT_RUN,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_USAGE,
    CannotRun,
    EmulatorFault,
    HarnessError,
    InputError,
)
from .report import json_report
from .results import Crash, RunResult

MARKER = "ksm-harness: guest ready"  # + a per-run nonce; written to /dev/kmsg by command.sh
GUEST_EXITS = (EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR, EXIT_CANNOT_RUN)  # passed through as is
# what harness_command() has `run` write: file -> report format (its --FORMAT option)
RESULT_FILES = {"result.json": "json", "junit.xml": "junit", "result.ktap": "ktap", "kcidb.json": "kcidb"}
RESULT_JSON = "result.json"  # the one the host reads back
# Everything run_in_vm() writes to `out`.
OUT_FILES = ("console.log", "guest.log", "qemu.log", initramfs.COMMAND_FILE, initramfs.EXIT_FILE) + tuple(RESULT_FILES)
HOST_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")  # plus every KSM_HARNESS_*


@dataclass(frozen=True)
class VmOptions:
    """The machine to boot."""

    kernel: Path  # bzImage (or a distro vmlinuz, with modules)
    numa: int = 2  # NUMA nodes
    cpus: Optional[int] = None  # vCPUs; None: one per node
    memory_mib: int = 2048  # guest RAM, split evenly over the nodes
    kernel_args: Tuple[str, ...] = ()  # extra kernel command line arguments
    modules: Optional[Path] = None  # /lib/modules/VERSION of a distro kernel
    timeout: float = 900.0  # seconds from qemu start until a guest that sends no heartbeat is killed as hung
    busybox: Path = Path("/bin/busybox")  # static busybox for the initramfs
    qemu: str = qemu.QEMU  # qemu binary


@dataclass(frozen=True)
class VmRun:
    """What one boot found."""

    status: int  # exit code for `ksm-harness vm`: 0 pass, 1 fail, other codes from the guest
    reason: str  # one line: why it failed (empty on a pass)
    guest_exit: Optional[int]  # exit code of the guest command; None if it never finished
    crashes: Tuple[Crash, ...]  # kernel reports on the console after the guest became ready
    hung: bool  # the deadline killed the guest
    ready_after: Optional[float]  # seconds from qemu start to the ready marker; None if never
    duration: float  # seconds from qemu start to qemu exit
    out: Path  # directory with console.log, guest.log, qemu.log and the results
    accel: qemu.Accel  # how the guest ran
    result: Optional[RunResult]  # the guest's result.json, read back; None if none came
    killed: str = ""  # why the host killed the guest while it ran ("kernel panic", ...); "" if it was not


def harness_command(run_args: Sequence[str], verbose: bool = False) -> List[str]:
    """The guest command for `ksm-harness vm ... run RUN_ARGS`: the same harness, same Python.

    Its reports go to the side channel, where run_in_vm() collects them.
    verbose: the guest harness shows every command it runs (`ksm-harness -v`).
    """
    res = initramfs.GUEST_RESULTS
    reports = [arg for name, fmt in RESULT_FILES.items() for arg in (f"--{fmt}", f"{res}/{name}")]
    return [sys.executable, "-m", "harness.cli", *(["--verbose"] if verbose else []), "run", *reports, *run_args]


def guest_env(host_env: Mapping[str, str] = os.environ) -> dict:
    """The environment of the guest command: a few host variables, and this harness importable."""
    env = {k: v for k, v in host_env.items() if k in HOST_ENV_KEPT or k.startswith("KSM_HARNESS_")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["HOME"] = "/root"
    env["TERM"] = "dumb"
    env["PYTHONUNBUFFERED"] = "1"  # ttyS1 carries output as it is written
    env[heartbeat.ENV] = initramfs.GUEST_RESULTS  # the guest's `run` reports its progress there
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, host_env.get("PYTHONPATH")) if p)
    return env


def command_script(command: Sequence[str], cwd: str, env: Mapping[str, str], marker: str) -> str:
    """command.sh: run by busybox sh in the guest's new root, from /init."""
    lines = [
        "# Generated by harness/vm.py; /init runs it in the guest's new root.",
        # The console lines after this one are the run's; before it, boot context.
        f"echo {shlex.quote(marker)} > /dev/kmsg",
        f"cd {shlex.quote(cwd)} || exit {EXIT_CANNOT_RUN}",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines.append(f"exec {shlex.join(command)}")
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the qemu child: SIGKILL it if the harness dies (prctl PR_SET_PDEATHSIG)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Tee(threading.Thread):
    """Copy a pipe to a file line by line; optionally echo lines, watch for one,
    and hand each line with its 1-based number to on_line (live following)."""

    def __init__(self, fd: int, path: Path, echo: Optional[IO[str]] = None, prefix: str = "",
                 watch: Optional[str] = None, on_line: Optional[Callable[[str, int], None]] = None):
        super().__init__(daemon=True)
        self.fd, self.path, self.echo, self.prefix, self.watch = fd, path, echo, prefix, watch
        self.on_line = on_line
        self.seen_at: Optional[float] = None  # time.monotonic() when `watch` first appeared

    def run(self) -> None:
        with os.fdopen(self.fd, "rb") as pipe, open(self.path, "w") as out:
            for lineno, raw in enumerate(pipe, 1):
                line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
                if self.watch and self.seen_at is None and self.watch in line:
                    self.seen_at = time.monotonic()
                out.write(line + "\n")
                out.flush()
                if self.on_line:
                    self.on_line(line, lineno)
                if self.echo:
                    self.echo.write(self.prefix + line + "\n")
                    self.echo.flush()


def _scan(console: Path, marker: str) -> Tuple[Optional[int], Tuple[Crash, ...], Tuple[Crash, ...]]:
    """The console line of the marker (1-based, None if absent), then the crash
    reports after it (the run's) and before it (boot context)."""
    lines = console.read_text(errors="replace").splitlines()
    marker_line = next((i + 1 for i, line in enumerate(lines) if marker in line), None)
    crashes = scan_lines(lines)
    if marker_line is None:
        return None, (), tuple(crashes)
    return (
        marker_line,
        tuple(c for c in crashes if c.line > marker_line),
        tuple(c for c in crashes if c.line < marker_line),
    )


def _init_error(console: Path) -> str:
    """The failed /init step printed on the console, if any."""
    for line in console.read_text(errors="replace").splitlines():
        if initramfs.INIT_ERROR in line:
            return line[line.index(initramfs.INIT_ERROR):]
    return ""


def _load_result(path: Path, log: Callable[[str], None]) -> Optional[RunResult]:
    """The guest's RunResult from the side channel; None (and why, logged) if unreadable."""
    if not path.exists():
        return None
    try:
        return json_report.load(path)
    except InputError as exc:
        log(f"cannot read the guest's results: {exc}")
        return None


def _crash_names(crashes: Sequence[Crash]) -> str:
    return "; ".join(dict.fromkeys(c.title for c in crashes))


def boot_out(out: Path, earlier: int) -> Path:
    """Where a boot's files go when a crash made the run boot again: --out
    for the first boot, OUT/boot-2/, OUT/boot-3/... after it."""
    return Path(out) / f"boot-{earlier + 1}" if earlier else Path(out)


EMULATOR_BOOTS = 3  # boots for a guest that qemu's TCG kills before its command runs (tcg.py)


def run_in_vm(options: VmOptions, command: Sequence[str], out: Path, *,
              log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True), **kw) -> VmRun:
    """Boot options.kernel, run `command` in the guest (boot_once()).  A guest
    that died before the command ran, of a stale int3 under TCG (tcg.py: qemu's
    fault, not the kernel's), is booted again, EMULATOR_BOOTS times at most;
    each such console is kept as console.emulator-N.log."""
    for stale in Path(out).glob("console.emulator-*.log"):  # a reused --out's, like OUT_FILES
        stale.unlink()
    for attempt in range(1, EMULATOR_BOOTS):
        try:
            return boot_once(options, command, out, log=log, **kw)
        except EmulatorFault as exc:
            kept = Path(out) / f"console.emulator-{attempt}.log"
            os.replace(Path(out) / "console.log", kept)
            log(f"{exc}: booting again (kept {kept})")
    return boot_once(options, command, out, log=log, **kw)


def boot_once(
    options: VmOptions,
    command: Sequence[str],
    out: Path,
    *,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    accel: Optional[qemu.Accel] = None,
    echo: Optional[IO[str]] = None,
    verbose: bool = False,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    share: Optional[Path] = None,
    follower=None,
) -> VmRun:
    """Boot options.kernel, run `command` in the guest, wait for it within options.timeout.

    share: the side channel directory to use (kept, for a next boot); default
    a fresh one, removed at the end.  follower (harness/vmrun.py Follower):
    reads the console live and decides when to kill the guest; default: kill
    it only at options.timeout.

    cwd (default: ours) must be a host path; the guest sees the host's / at
    the same paths.  env defaults to guest_env().  Guest output (ttyS1) is
    echoed to `echo`; with verbose, also the qemu argv and the kernel console.
    `log` gets the harness's own progress lines (accel choice, times).

    Raises InputError for a bad kernel/options, CannotRun when the guest never
    became ready (boot failure or panic before the command: nothing ran), and
    HarnessError when qemu itself fails.  A guest that panics or hangs while
    the command runs is a failed VmRun (status 1), not an exception.
    """
    kernel = Path(options.kernel)
    if not kernel.is_file():
        raise InputError(f"{kernel}: no such kernel image", field="--kernel")
    if not qemu.is_bzimage(str(kernel)):
        raise InputError(f"{kernel}: not an x86 bzImage (no setup header)", field="--kernel")
    if shutil.which(options.qemu) is None:
        raise CannotRun(f"{options.qemu} not found: install Debian's qemu-system-x86")
    cwd = os.path.abspath(cwd or os.getcwd())
    accel = accel or qemu.detect_accel()
    log(f"accel: {accel.name} ({accel.reason})")
    initrd = initramfs.build(options.busybox, options.modules)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:  # a reused --out (git bisect) must not show the last run's files
        (out / name).unlink(missing_ok=True)

    with Cleanup() as defer:
        if share is None:
            results = Path(tempfile.mkdtemp(prefix="ksm-harness-vm-"))
            defer(shutil.rmtree, results, ignore_errors=True)
        else:
            results = Path(share)
            for name in (initramfs.EXIT_FILE, heartbeat.HEARTBEAT_FILE) + tuple(RESULT_FILES):  # the last boot's
                (results / name).unlink(missing_ok=True)
        marker = f"{MARKER} {secrets.token_hex(8)}"
        (results / initramfs.COMMAND_FILE).write_text(
            command_script(command, cwd, guest_env() if env is None else env, marker)
        )
        console_r, console_w = os.pipe()
        output_r, output_w = os.pipe()
        machine = qemu.Machine(
            kernel=str(kernel.resolve()),
            initrd=str(initrd),
            accel=accel,
            console=f"/dev/fd/{console_w}",
            output=f"/dev/fd/{output_w}",
            numa=options.numa,
            cpus=options.cpus or options.numa,
            memory_mib=options.memory_mib,
            shares=(
                qemu.Share(initramfs.HOSTROOT_TAG, "/", readonly=True),
                qemu.Share(initramfs.RESULTS_TAG, str(results), readonly=False),
            ),
            kernel_args=(damage.GUEST_MARK,) + tuple(options.kernel_args),
        )
        argv = qemu.build_argv(machine, options.qemu)
        if verbose:
            log("$ " + shlex.join(argv))
        console = _Tee(console_r, out / "console.log", echo if verbose else None, "console: ", marker,
                       on_line=follower.on_line(marker) if follower else None)
        output = _Tee(output_r, out / "guest.log", echo)
        with open(out / "qemu.log", "w") as qemu_log:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT,
                    pass_fds=(console_w, output_w), preexec_fn=_die_with_parent,
                )
            except OSError:
                os.close(console_r)
                os.close(output_r)
                raise
            finally:
                # qemu holds the write ends now: the pipes reach EOF when it exits.
                os.close(console_w)
                os.close(output_w)
        console.start()
        output.start()
        hung, killed = False, ""
        try:
            if follower:
                killed = follower.follow(proc, results, options.timeout)
                hung = bool(killed)
            else:
                proc.wait(timeout=options.timeout)
        except subprocess.TimeoutExpired:
            hung = True
        finally:
            proc.kill()
            proc.wait()
        duration = time.monotonic() - start
        console.join()
        output.join()
        for path in results.iterdir():
            if path.is_file():
                shutil.copy(path, out / path.name)

    ready_after = console.seen_at - start if console.seen_at is not None else None
    if ready_after is not None:
        log(f"guest ready after {ready_after:.1f} s (qemu start to marker)")
    log(f"total {duration:.1f} s; console: {out / 'console.log'}")
    exit_file = out / initramfs.EXIT_FILE
    exit_text = exit_file.read_text().strip() if exit_file.exists() else ""
    guest_exit = int(exit_text) if exit_text.isdigit() else None
    guest_result = _load_result(out / RESULT_JSON, log)
    marker_line, crashes, boot_crashes = _scan(out / "console.log", marker)

    if marker_line is None and not hung and proc.returncode != 0:
        tail = (out / "qemu.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise HarnessError(f"qemu exited {proc.returncode}: {' / '.join(tail)} (see {out / 'qemu.log'})")
    status, reason = verdict(
        hung=hung,
        ready=marker_line is not None,
        guest_exit=guest_exit,
        crashes=crashes if marker_line is not None else boot_crashes,
        timeout=options.timeout,
        init_error=_init_error(out / "console.log"),
        killed=killed,
        accel=accel.name,
    )
    return VmRun(status, reason, guest_exit, crashes, hung, ready_after, duration, out, accel, guest_result, killed)


def verdict(
    *,
    hung: bool,
    ready: bool,
    guest_exit: Optional[int],
    crashes: Sequence[Crash],
    timeout: float,
    init_error: str = "",
    killed: str = "",
    accel: str = "",
) -> Tuple[int, str]:
    """(exit status, reason) of a boot, from what the host saw.

    crashes: the reports after the ready marker, or, for a guest that never
    became ready, those of the boot.  Raises CannotRun when the guest stopped
    before the command ran (a kernel that cannot boot this harness: `git
    bisect run` skips it), EmulatorFault when qemu's TCG (`accel` "tcg") made
    it stop (tcg.emulator_fault()).  A panic or hang once the command runs is a
    failure: the kernel under test broke.
    """
    reported = f"; the kernel reported: {_crash_names(crashes)}" if crashes else ""
    if hung:
        where = "while running the command" if ready else "while booting"
        return EXIT_FAIL, f"guest hung {where}: killed {killed or f'after {timeout:g} s'}{reported}"
    if not ready:
        stopped = "the guest stopped before running the command: " + (
            init_error or _crash_names(crashes) or "no ready marker on the console")
        emulator = tcg.emulator_fault(crashes, accel)
        if emulator:
            raise EmulatorFault(f"{stopped}: no verdict on the kernel: {emulator} (see console.log)")
        raise CannotRun(f"{stopped} (see console.log)")
    if guest_exit is None:
        return EXIT_FAIL, "the guest stopped before the command finished" + (
            reported or " (no crash report on the console)"
        )
    if guest_exit not in GUEST_EXITS:
        # A shell reports death by signal N as 128+N; `git bisect run` aborts on
        # codes above 127, so this is a plain failure.
        return EXIT_FAIL, f"guest command exited {guest_exit}{reported}"
    if guest_exit == EXIT_PASS:
        return (EXIT_FAIL, "the command passed" + reported) if crashes else (EXIT_PASS, "")
    return guest_exit, f"guest command exited {guest_exit}{reported}"
