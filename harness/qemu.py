"""qemu for ksm-harness guests: accelerator detection and the command line.

Pure functions over their inputs (cpuinfo text, the kvm device path, a
Machine), so unit tests can check every argv without starting qemu.
"""
import errno
import fcntl
import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import InputError

QEMU = "qemu-system-x86_64"

# ioctls from include/uapi/linux/kvm.h: _IO(KVMIO=0xAE, 0x00) and _IO(KVMIO, 0x01).
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12  # the only version the kernel has ever reported


@dataclass(frozen=True)
class Accel:
    """The accelerator qemu runs the guest with."""

    name: str  # "kvm" or "tcg": the value of qemu's -accel
    reason: str  # why this one was chosen, one line for the log


def cpu_flags(cpuinfo: str) -> frozenset:
    """The flags of the first processor in a /proc/cpuinfo text."""
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def probe_kvm(kvm: str) -> Optional[str]:
    """Why `kvm` cannot create a VM, or None when it can.

    Opening the device, asking its API version and creating (then dropping) an
    empty VM costs a few milliseconds and catches a missing module, a device
    without permission and a kvm that is not the kernel's.
    """
    try:
        fd = os.open(kvm, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {kvm}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            return f"{kvm} reports KVM API version {version}, not {KVM_API_VERSION}"
        os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
    except OSError as exc:
        return f"{kvm} cannot create a VM: {errno.errorcode.get(exc.errno or 0, exc.errno)} ({exc.strerror})"
    finally:
        os.close(fd)
    return None


def detect_accel(cpuinfo: str = "/proc/cpuinfo", kvm: str = "/dev/kvm") -> Accel:
    """KVM where hardware virtualization really works, TCG otherwise, with the reason.

    A /dev/kvm alone proves little: a software virtualizer can offer one that
    fails on ordinary kernels ("failed to set MSR", emulation failures).  Real
    KVM needs the CPU's vmx (Intel VT-x) or svm (AMD-V) flag, which the kernel
    shows in /proc/cpuinfo only when the CPU (or the outer hypervisor, for
    nested guests) provides it; then a cheap probe of the device decides.
    """
    if not os.path.exists(kvm):
        return Accel("tcg", f"no {kvm}")
    try:
        with open(cpuinfo) as f:
            flags = cpu_flags(f.read())
    except OSError as exc:
        return Accel("tcg", f"cannot read {cpuinfo}: {exc.strerror}")
    virt = sorted(flags & {"vmx", "svm"})
    if not virt:
        return Accel(
            "tcg",
            f"{kvm} exists but the CPU has no vmx/svm flag in {cpuinfo}: "
            "no hardware virtualization, so that kvm cannot run ordinary kernels",
        )
    problem = probe_kvm(kvm)
    if problem:
        return Accel("tcg", problem)
    return Accel("kvm", f"CPU flag {virt[0]} and {kvm} creates VMs")


def describe_accel() -> str:
    """This machine's accelerator and why, one line (for `ksm-harness env`)."""
    accel = detect_accel()
    return f"{accel.name} ({accel.reason})"


def parse_memory(text: str) -> int:
    """Guest memory in MiB from "2048", "2048M" or "2G"."""
    match = re.fullmatch(r"\s*(\d+)\s*([MmGg]?)(?:i?[Bb])?\s*", str(text))
    if not match or int(match.group(1)) == 0:
        raise InputError(f"{text!r}: want a size like 2048M or 2G", field="--memory")
    value = int(match.group(1))
    return value * 1024 if match.group(2).lower() == "g" else value


@dataclass(frozen=True)
class Share:
    """A host directory exported to the guest over virtio-9p."""

    tag: str  # mount_tag the guest mounts it by
    path: str  # host directory
    readonly: bool  # the guest cannot write through it


@dataclass(frozen=True)
class Machine:
    """Everything that decides the qemu command line."""

    kernel: str  # bzImage / vmlinuz
    initrd: str  # the initramfs (harness/initramfs.py)
    accel: Accel
    console: str  # host file or /dev/fd/N that ttyS0 (the kernel console) goes to
    output: str  # host file or /dev/fd/N that ttyS1 (the guest command's output) goes to
    numa: int = 2  # NUMA nodes, one socket and one memory backend each
    cpus: int = 2  # vCPUs, spread evenly over the nodes
    memory_mib: int = 2048  # guest RAM, split evenly over the nodes
    shares: Tuple[Share, ...] = ()
    kernel_args: Tuple[str, ...] = ()  # appended after the harness's own

    def check(self) -> None:
        """Raise InputError unless nodes, CPUs and memory divide evenly."""
        if self.numa < 1:
            raise InputError(f"{self.numa}: want at least 1 node", field="--numa")
        if self.cpus < self.numa or self.cpus % self.numa:
            raise InputError(
                f"{self.cpus} CPUs cannot be spread evenly over {self.numa} nodes "
                "(want a multiple of --numa)",
                field="--cpus",
            )
        if self.memory_mib % self.numa or self.memory_mib // self.numa < 128:
            raise InputError(
                f"{self.memory_mib} MiB cannot be split into {self.numa} nodes of at least "
                "128 MiB each (want a multiple of --numa)",
                field="--memory",
            )


# console on ttyS0 for the crash scanner; panic=-1 reboots at once on a panic,
# and with -no-reboot qemu then exits instead of rebooting; log_buf_len: room
# for the kernel log while the harness reads it (memory failure logs two lines
# a page: a few thousand pages overran the default CONFIG_LOG_BUF_SHIFT buffer)
BASE_KERNEL_ARGS = ("console=ttyS0", "panic=-1", "rdinit=/init", "log_buf_len=8M")


def build_argv(machine: Machine, qemu: str = QEMU) -> list:
    """The qemu command line for a machine."""
    machine.check()
    per_node_cpus = machine.cpus // machine.numa
    per_node_mib = machine.memory_mib // machine.numa
    argv = [
        qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        # mem-merge=off: no MADV_MERGEABLE on guest RAM, so the host's KSM
        # (global state another test may be measuring) never sees it.
        "-machine", "q35,mem-merge=off",
        "-accel", machine.accel.name,
        "-cpu", "host" if machine.accel.name == "kvm" else "max",
        "-m", f"{machine.memory_mib}M",
        # One socket per node: CPUs of one package split over nodes make the
        # kernel warn about the topology at boot (topology_sane(), x86 smpboot.c).
        "-smp", f"{machine.cpus},sockets={machine.numa},cores={per_node_cpus},threads=1",
    ]
    for node in range(machine.numa):
        first = node * per_node_cpus
        cpus = str(first) if per_node_cpus == 1 else f"{first}-{first + per_node_cpus - 1}"
        argv += [
            "-object", f"memory-backend-ram,id=m{node},size={per_node_mib}M",
            "-numa", f"node,nodeid={node},memdev=m{node},cpus={cpus}",
        ]
    for i, share in enumerate(machine.shares):
        readonly = ",readonly=on" if share.readonly else ""
        argv += [
            # multidevs=remap: the host tree spans several filesystems; remap
            # keeps inode numbers unique across them in the guest.
            "-fsdev", f"local,id=fs{i},path={share.path},security_model=none{readonly},multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={share.tag}",
        ]
    argv += [
        "-serial", f"file:{machine.console}",
        "-serial", f"file:{machine.output}",
        "-kernel", machine.kernel,
        "-initrd", machine.initrd,
        "-append", " ".join(BASE_KERNEL_ARGS + tuple(machine.kernel_args)),
    ]
    return argv


def kernel_version(path: str) -> Optional[str]:
    """The version string a bzImage carries in its setup header, or None.

    Documentation/x86/boot.rst: "HdrS" at 0x202 marks the header; the 16-bit
    kernel_version at 0x20E points (offset + 0x200) to a NUL-terminated string
    like "6.1.192 (user@host) #1 SMP ...".
    """
    try:
        with open(path, "rb") as f:
            head = f.read(0x8000)
    except OSError:
        return None
    if head[0x202:0x206] != b"HdrS":
        return None
    offset = int.from_bytes(head[0x20E:0x210], "little")
    if not offset:
        return None
    start = offset + 0x200
    end = head.find(b"\0", start)
    return head[start:end].decode(errors="replace") if end > start else None


def is_bzimage(path: str) -> bool:
    """Whether path is an x86 boot image qemu's -kernel can load (setup header "HdrS")."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x206)
    except OSError:
        return False
    return head[0x202:0x206] == b"HdrS"

