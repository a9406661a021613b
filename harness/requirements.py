"""Does this machine offer what a scenario needs?  An unmet requirement is a
skip with the reason, never a failure: users run kernels from 3.9 to today.

Besides what `requires:` lists, a scenario needs every knob it writes, a swap
kind it sets up, memcg when it sets up a cgroup and node N+1 nodes when it
places a region (or binds a cpuset) on node N, a cpuset controller for
setup.cpuset, and the userfaultfd modes its steps register:
those are derived here, so a scenario cannot forget
them.
"""
from . import cgroup, damage, kernel, lkdtm, numa, steps, uffd
from .errors import Skip
from .sampler import read_vmstat


def written_knobs(sc):
    """Every KSM file sc writes (setup and knob steps) or waits on (wait_for)."""
    return [n for n, _ in sc.knobs] + [k for step in steps.walk(sc.steps) for k in step.knobs_needed()]


def actions(sc):
    """Every `do:` step of sc, nested ones too."""
    return [step for step in steps.walk(sc.steps) if isinstance(step, steps.Action)]


def kernel_damage(sc, ctx):
    """Unmet requirements of steps that damage the kernel: the guard first, then LKDTM."""
    damaging = [a.action for a in actions(sc) if a.damaging]
    if not sc.requires.lkdtm and not damaging:
        return []
    refused = damage.refusal(damaging, ctx.allow_kernel_damage, ctx.roots.proc)
    if refused:
        return [refused]
    crashes = {a.crash for a in actions(sc) if a.action == "provoke"} or ({None} if sc.requires.lkdtm else set())
    return sorted({lkdtm.unavailable(c, ctx.roots.sys / "kernel/debug") for c in crashes} - {None})


def numa_nodes_wanted(sc):
    """NUMA nodes with memory sc needs: requires.numa_nodes, or N+1 for a region
    placed on node N or a cpuset bound to it."""
    placed = [r.node for w in sc.workers for r in w.regions if r.node is not None]
    bound = cgroup.parse_list(sc.cpuset["mems"]) if sc.cpuset else set()
    return max([sc.requires.numa_nodes] + [n + 1 for n in placed + sorted(bound)])


def cpuset_reasons(sc, roots):
    """Why setup.cpuset cannot be made here: no cpuset controller, or CPUs this machine has not online."""
    if not sc.cpuset:
        return []
    why = cgroup.available(str(roots.proc), "cpuset")
    if why:
        return [why]
    if sc.cpuset["cpus"] is None:
        return []
    try:
        online = cgroup.parse_list((roots.sys / "devices/system/cpu/online").read_text())
    except FileNotFoundError:
        return []
    missing = sorted(cgroup.parse_list(sc.cpuset["cpus"]) - online)
    return [f"setup.cpuset wants CPUs {missing} that are not online here (online: "
            f"{(roots.sys / 'devices/system/cpu/online').read_text().strip()})"] if missing else []


def reasons(sc, ctx):
    """Every unmet requirement of sc on this machine, in words."""
    req, roots = sc.requires, ctx.roots
    out = []
    release = kernel.release(str(roots.proc))
    if req.kernel and not kernel.version_at_least(release, req.kernel):
        out.append(f"needs Linux {req.kernel}+, this is {release}")
    missing = sorted({k for k in list(req.knobs) + written_knobs(sc) if not ctx.knobs.has(k)})
    if missing:
        out.append(f"this kernel has no /sys/kernel/mm/ksm/{', '.join(missing)}")
    nodes = numa.nodes_with_memory(roots.sys / "devices/system/node")
    wanted = numa_nodes_wanted(sc)
    if len(nodes) < wanted:
        out.append(f"needs {wanted} NUMA nodes with memory, this machine has {len(nodes)} "
                   f"(boot a VM: ksm-harness vm --numa {wanted})")
    for kind in {k for k in (req.swap, sc.swap and sc.swap["kind"]) if k}:
        why = ctx.swap.available("file" if kind == "any" else kind)
        if why:
            out.append(f"swap ({kind}): {why}")
    if req.thp and kernel.thp(str(roots.sys)) is None:
        out.append("needs transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE)")
    if req.fault_injection:
        why = ctx.faults.available()
        if why:
            out.append(why)
    if req.memory_failure:
        why = ctx.poison.available()
        if why:
            out.append(why)
    if req.memcg or sc.cgroup:
        why = cgroup.available(str(roots.proc))
        if why:
            out.append(why)
    out.extend(cpuset_reasons(sc, roots))
    if req.ksm_stat and not kernel.ksm_stat_present(str(roots.proc)):
        out.append("needs /proc/PID/ksm_stat (Linux 6.1+)")
    for mode in sorted({a.mode for a in actions(sc) if a.action == "userfaultfd"}):
        why = uffd.unavailable(mode)
        if why:
            out.append(why)
    have = read_vmstat(roots.proc, req.vmstat)
    absent = [f for f in req.vmstat if f not in have]
    if absent:
        out.append(f"/proc/vmstat has no {', '.join(absent)} on this kernel")
    return out + kernel_damage(sc, ctx)


def check(sc, ctx):
    found = reasons(sc, ctx)
    if found:
        raise Skip("; ".join(found))
