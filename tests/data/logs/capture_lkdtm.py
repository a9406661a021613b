"""Capture real kernel reports from LKDTM inside qemu guests (how the lkdtm-* fixtures were made).

    flock /tmp/session-vm.lock python3 tests/data/logs/capture_lkdtm.py KERNEL.bzImage OUTDIR TYPE[,TYPE...]...

Each argument after OUTDIR is one boot: its comma-separated LKDTM types are provoked one after
the other (`echo TYPE > /sys/kernel/debug/provoke-crash/DIRECT`, drivers/misc/lkdtm/core.c,
each from a child shell, so an oops kills only that child). A type prefixed with "&" runs in
the background and the guest then waits WAIT seconds for the hung-task, soft-lockup and RCU
stall detectors (kernel/hung_task.c, kernel/watchdog.c, kernel/rcu/tree_stall.h), whose
thresholds /init lowers first. A type that kills the guest ends its boot; the types after it
start the next boot. The console of boot N is OUTDIR/console-N.log; the lines from each
"lkdtm: Performing direct entry TYPE" to the next go to OUTDIR/lkdtm-TYPE.log, unmodified.

Run it under /tmp/session-vm.lock (one VM at a time on this machine): it boots one guest after the
other, each killed after BOOT_TIMEOUT seconds (BACKGROUND_TIMEOUT when it only waits for a
detector: a CPU spinning with preemption off can keep poweroff from finishing).
"""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from harness import initramfs  # noqa: E402

BOOT_TIMEOUT = 150  # seconds; TCG boots in 5-12 s, a batch of 40 types takes ~60 s more
BACKGROUND_TIMEOUT = 60  # seconds for a boot of background types only
WAIT = 25  # seconds a background type gets before the guest powers off
DONE = re.compile(r"lkdtm: Performing direct entry (\w+)")

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
echo 3 > /proc/sys/kernel/hung_task_timeout_secs
echo 2 > /proc/sys/kernel/watchdog_thresh
echo 4 > /sys/module/rcupdate/parameters/rcu_cpu_stall_timeout
echo 8 > /proc/sys/kernel/printk
# LOOKALIKES: the memory failure and swap write errors that scenarios provoke on purpose:
# hwpoison by pfn (mm/hwpoison-inject.c), and a swap device on a loop device failed by
# fail_make_request (block/blk-core.c should_fail_bio()), filled by a tmpfs file bigger than RAM
lookalikes() {
    for pfn in 0x10000 0x10100 0x12000 0x14000; do echo $pfn > /sys/kernel/debug/hwpoison/corrupt-pfn; done
    mkdir -p /tmp && mount -t tmpfs -o size=1G tmpfs /tmp
    dd if=/dev/zero of=/tmp/swap bs=1M count=64 2>/dev/null
    losetup /dev/loop0 /tmp/swap && mkswap /dev/loop0 >/dev/null && swapon /dev/loop0
    echo 1 > /sys/block/loop0/make-it-fail
    F=/sys/kernel/debug/fail_make_request
    echo 100 > $F/probability; echo 20 > $F/times; echo 1 > $F/verbose
    dd if=/dev/zero of=/tmp/fill bs=1M count=560 2>/dev/null
    rm -f /tmp/fill; swapoff /dev/loop0
}
for t in $(echo "$LKDTM_TYPES" | tr , ' '); do
    case "$t" in
    LOOKALIKES) echo "lkdtm: Performing direct entry LOOKALIKES" > /dev/kmsg; lookalikes ;;
    \&*) (echo "${t#&}" > /sys/kernel/debug/provoke-crash/DIRECT) & sleep __WAIT__ ;;
    *) (echo "$t" > /sys/kernel/debug/provoke-crash/DIRECT); sleep 1 ;;
    esac
done
poweroff -f
"""


def build_initramfs(path: Path) -> None:
    entries = [initramfs.directory(d) for d in ("bin", "dev", "proc", "sys")]
    entries.append(initramfs.chardev("dev/console", 5, 1))
    entries.append(initramfs.regular("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755))
    entries += [initramfs.symlink(f"bin/{a}", "busybox") for a in ("sh", "mount", "tr", "sleep", "poweroff",
                                                                    "mkdir", "dd", "losetup", "mkswap",
                                                                    "swapon", "swapoff", "rm")]
    entries.append(initramfs.regular("init", INIT.replace("__WAIT__", str(WAIT)).encode(), 0o755))
    buf = io.BytesIO()
    initramfs.write_cpio(entries, buf)
    path.write_bytes(buf.getvalue())


def boot(kernel: str, initrd: Path, types, console: Path) -> None:
    limit = BACKGROUND_TIMEOUT if all(t.startswith("&") for t in types) else BOOT_TIMEOUT
    argv = ["timeout", "-s", "KILL", str(limit),
            "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "512M", "-smp", "2",
            "-serial", f"file:{console}", "-kernel", kernel, "-initrd", str(initrd),
            "-append", f"console=ttyS0 panic=-1 rdinit=/init LKDTM_TYPES={','.join(types)}"]
    print(" ".join(argv), flush=True)
    subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)


def main(kernel: str, outdir: str, *boots: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    initrd = out / "initramfs.cpio"
    build_initramfs(initrd)
    queue = [b.split(",") for b in boots]
    n = 0
    while queue:
        types = queue.pop(0)
        n += 1
        console = out / f"console-{n}.log"
        boot(kernel, initrd, types, console)
        ran = DONE.findall(console.read_text(errors="replace"))
        names = [t.lstrip("&") for t in types]
        last = names.index(ran[-1]) if ran and ran[-1] in names else 0  # none ran: skip the first
        if last + 1 < len(types):  # the guest died at types[last]: the rest boot again
            queue.insert(0, types[last + 1:])
    os.unlink(initrd)
    for console in sorted(out.glob("console-*.log")):
        split(console.read_text(errors="replace"), out)


def split(text: str, out: Path) -> None:
    """Write each type's part of a console log to OUTDIR/lkdtm-TYPE.log."""
    name, part = None, []
    for line in text.splitlines(keepends=True):
        m = DONE.search(line)
        if m or not line:
            if name:
                (out / f"lkdtm-{name}.log").write_text("".join(part))
            name, part = m.group(1), []
        part.append(line)
    if name:
        (out / f"lkdtm-{name}.log").write_text("".join(part))


if __name__ == "__main__":
    main(*sys.argv[1:])
