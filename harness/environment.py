"""What machine and kernel a run ran on, as text, for the reports that carry
it (KCIDB's environment, the kernel matrix): recorded by the run itself, so a
run inside a qemu guest describes the guest, not the host that wrote the report.

Every reader takes its root path so unit tests can point it at a fake tree;
a fact that cannot be read is left out, never guessed.
"""
import hashlib
import platform
from pathlib import Path
from typing import Dict

from . import kernel, numa


def _first_line(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip().splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def _cpuinfo(proc: Path) -> Dict[str, str]:
    """The CPU model and the count of CPUs, from /proc/cpuinfo ("model name"
    and one "processor" line per CPU, arch/x86/kernel/cpu/proc.c show_cpuinfo())."""
    try:
        lines = (proc / "cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return {}
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    count = sum(1 for line in lines if line.startswith("processor"))
    return {"cpu": models[0] if models else "", "cpus": str(count) if count else ""}


def _config(proc: Path, boot: Path) -> Dict[str, str]:
    """Where the kernel's .config was read from, and a digest of its options:
    two runs with the same digest ran kernels built with the same config."""
    config = kernel.read_config(str(proc), str(boot))
    if config is None:
        return {}
    text = "".join(f"{k}={v}\n" for k, v in sorted(config.options.items()))
    return {
        "kernel_config": config.source,
        "kernel_config_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "kernel_config_ksm": config.get("KSM") or "not set",
    }


def describe(proc: Path = Path("/proc"), sys: Path = Path("/sys"), boot: Path = Path("/boot")) -> Dict[str, str]:
    """The running kernel and machine as {name: text}; unreadable facts are absent."""
    proc, sys, boot = Path(proc), Path(sys), Path(boot)
    facts = {
        "kernel_release": _first_line(proc / "sys/kernel/osrelease"),
        "kernel_version": _first_line(proc / "version"),
        "machine": platform.machine(),
        "hostname": platform.node(),
        # DMI names the board: "Standard PC (Q35 + ICH9, 2009)" for a qemu guest
        "product": _first_line(sys / "class/dmi/id/product_name"),
        "numa_nodes": str(len(numa.nodes_with_memory(sys / "devices/system/node"))),
    }
    facts.update(_cpuinfo(proc))
    facts.update(_config(proc, boot))
    return {k: v for k, v in facts.items() if v}

