"""qemu argv building and accelerator detection, against fake files."""
import pytest

from harness import qemu
from harness.errors import InputError

TCG = qemu.Accel("tcg", "test")
KVM = qemu.Accel("kvm", "test")

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse {extra} sse sse2
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu vme de pse {extra} sse sse2
"""


def cpuinfo(tmp_path, extra=""):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    return str(path)


def test_cpu_flags():
    flags = qemu.cpu_flags(CPUINFO.format(extra="svm hypervisor"))
    assert {"svm", "hypervisor", "sse2"} <= flags
    assert qemu.cpu_flags("processor : 0\n") == frozenset()


def test_accel_without_kvm_device(tmp_path):
    accel = qemu.detect_accel(cpuinfo(tmp_path, "vmx"), str(tmp_path / "kvm"))
    assert accel.name == "tcg"
    assert "no " in accel.reason and "kvm" in accel.reason


def test_accel_kvm_device_but_no_vmx_svm(tmp_path):
    # This machine's case: /dev/kvm from a software virtualizer, no vmx/svm flag.
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    accel = qemu.detect_accel(cpuinfo(tmp_path, "hypervisor"), str(kvm))
    assert accel.name == "tcg"
    assert "no vmx/svm" in accel.reason


def test_accel_flag_but_device_is_not_kvm(tmp_path):
    # The probe's ioctl fails on anything that is not the kvm device (ENOTTY).
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    accel = qemu.detect_accel(cpuinfo(tmp_path, "vmx"), str(kvm))
    assert accel.name == "tcg"
    assert "cannot create a VM" in accel.reason and "ENOTTY" in accel.reason


def test_accel_unreadable_cpuinfo(tmp_path):
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    accel = qemu.detect_accel(str(tmp_path / "missing"), str(kvm))
    assert accel.name == "tcg" and "cannot read" in accel.reason


def test_probe_kvm_cannot_open(tmp_path):
    assert "cannot open" in qemu.probe_kvm(str(tmp_path / "nope"))


def test_accel_kvm_when_probe_passes(tmp_path, monkeypatch):
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    monkeypatch.setattr(qemu, "probe_kvm", lambda path: None)
    accel = qemu.detect_accel(cpuinfo(tmp_path, "svm"), str(kvm))
    assert accel == qemu.Accel("kvm", f"CPU flag svm and {kvm} creates VMs")


@pytest.mark.parametrize("text,mib", [("2048", 2048), ("2048M", 2048), ("2G", 2048), ("4g", 4096), ("512MiB", 512)])
def test_parse_memory(text, mib):
    assert qemu.parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "0", "2T", "lots", "-1G"])
def test_parse_memory_rejects(text):
    with pytest.raises(InputError, match="--memory"):
        qemu.parse_memory(text)


def machine(**kw):
    base = dict(kernel="/k/bzImage", initrd="/c/initramfs.cpio", accel=TCG, console="/dev/fd/5", output="/dev/fd/6")
    base.update(kw)
    return qemu.Machine(**base)


def values(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_default_two_nodes():
    argv = qemu.build_argv(machine())
    assert argv[0] == "qemu-system-x86_64"
    assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(argv)
    assert values(argv, "-machine") == ["q35,mem-merge=off"]
    assert values(argv, "-accel") == ["tcg"]
    assert values(argv, "-cpu") == ["max"]
    assert values(argv, "-m") == ["2048M"]
    assert values(argv, "-smp") == ["2,sockets=2,cores=1,threads=1"]
    assert values(argv, "-object") == ["memory-backend-ram,id=m0,size=1024M", "memory-backend-ram,id=m1,size=1024M"]
    assert values(argv, "-numa") == ["node,nodeid=0,memdev=m0,cpus=0", "node,nodeid=1,memdev=m1,cpus=1"]
    assert values(argv, "-serial") == ["file:/dev/fd/5", "file:/dev/fd/6"]
    assert values(argv, "-kernel") == ["/k/bzImage"]
    assert values(argv, "-initrd") == ["/c/initramfs.cpio"]
    assert values(argv, "-append") == ["console=ttyS0 panic=-1 rdinit=/init log_buf_len=8M"]


def test_argv_four_nodes_eight_cpus():
    argv = qemu.build_argv(machine(numa=4, cpus=8, memory_mib=4096, kernel_args=("numa_balancing=disable",)))
    assert values(argv, "-smp") == ["8,sockets=4,cores=2,threads=1"]
    assert values(argv, "-numa")[3] == "node,nodeid=3,memdev=m3,cpus=6-7"
    assert values(argv, "-object")[3] == "memory-backend-ram,id=m3,size=1024M"
    assert values(argv, "-append")[0].endswith("log_buf_len=8M numa_balancing=disable")


def test_argv_kvm_uses_host_cpu():
    argv = qemu.build_argv(machine(accel=KVM))
    assert values(argv, "-accel") == ["kvm"] and values(argv, "-cpu") == ["host"]


def test_argv_shares():
    shares = (qemu.Share("hostroot", "/", True), qemu.Share("results", "/tmp/r", False))
    argv = qemu.build_argv(machine(shares=shares))
    assert values(argv, "-fsdev") == [
        "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap",
        "local,id=fs1,path=/tmp/r,security_model=none,multidevs=remap",
    ]
    assert values(argv, "-device") == [
        "virtio-9p-pci,fsdev=fs0,mount_tag=hostroot",
        "virtio-9p-pci,fsdev=fs1,mount_tag=results",
    ]


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(numa=0), "--numa"),
        (dict(numa=2, cpus=3), "--cpus"),
        (dict(numa=4, cpus=2), "--cpus"),
        (dict(numa=2, memory_mib=2047), "--memory"),
        (dict(numa=2, memory_mib=200), "--memory"),
    ],
)
def test_argv_rejects_uneven_machines(kw, field):
    with pytest.raises(InputError, match=field):
        qemu.build_argv(machine(**kw))


def fake_bzimage(tmp_path, version=b"6.1.192 (root@vm) #9 SMP"):
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x400).to_bytes(2, "little")  # string at 0x400 + 0x200
    head[0x600 : 0x600 + len(version)] = version
    path = tmp_path / "bzImage"
    path.write_bytes(bytes(head))
    return str(path)


def test_kernel_version(tmp_path):
    path = fake_bzimage(tmp_path)
    assert qemu.is_bzimage(path)
    assert qemu.kernel_version(path) == "6.1.192 (root@vm) #9 SMP"


def test_not_a_bzimage(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(b"\x7fELF" + bytes(0x300))
    assert not qemu.is_bzimage(str(path))
    assert qemu.kernel_version(str(path)) is None
    assert not qemu.is_bzimage(str(tmp_path / "missing"))
