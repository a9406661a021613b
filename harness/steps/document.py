"""The parts of a scenario file around its steps, described field by field
like the steps (fields.Spec): the top level, requires, setup, worker groups,
regions, patterns, knob waits and expectations.  scenario.py takes its key
sets from here; the schema and the reference are generated from them."""
from typing import Dict, Tuple

from .actions import MAX_NODE
from .fields import Spec
from .values import PATTERNS, Pattern

NAME_PATTERN = r"[a-z][a-z0-9_-]*"
SWAP_KINDS = ("file", "zram")
DATA_MODES = ("intact", "sigbus-or-intact")
MAX_WORKERS = 1000  # workers in one group
DEFAULT_TIMEOUT = 300  # seconds for a whole scenario

SCENARIO = (
    Spec("name", "name", "Scenario name; with a matrix, results are named NAME[param=value,...].", required=True),
    Spec("description", "str", "What the scenario checks."),
    Spec("requires", "requires", "What the machine must have; a scenario whose requirements are missing is "
                                 "skipped with the reason."),
    Spec("matrix", "matrix", "One scenario per point; ${name} in any string is replaced (a whole-string "
                             "reference keeps the value's type; quote it inside a flow mapping)."),
    Spec("setup", "setup", "What the harness prepares before the workers start."),
    Spec("workers", "worker_groups", "Worker groups.", required=True),
    Spec("steps", "steps", "What happens, in order.", required=True),
    Spec("expect", "expectations", "Checked at the end; 'data: intact' is implied."),
    Spec("timeout", "number", "Seconds for the whole scenario.", default=DEFAULT_TIMEOUT, minimum=0,
         exclusive_minimum=True),
)
REQUIRES = (
    Spec("kernel", "version", "Minimum kernel version, e.g. '3.9'."),
    Spec("knobs", "strings", "/sys/kernel/mm/ksm files that must exist."),
    Spec("numa_nodes", "int", "NUMA nodes with memory needed.", default=1, minimum=1, maximum=MAX_NODE + 1),
    Spec("swap", "choice", "A swap device of this kind must be creatable.", choices=SWAP_KINDS + ("any",)),
    Spec("thp", "bool", "Transparent huge pages must be available.", default=False),
    Spec("fault_injection", "bool", "CONFIG_FAIL_MAKE_REQUEST (fail_make_request) must be available.",
         default=False),
    Spec("memcg", "bool", "The memory cgroup controller must be available.", default=False),
    Spec("ksm_stat", "bool", "/proc/PID/ksm_stat must exist (6.1+).", default=False),
    Spec("vmstat", "strings", "/proc/vmstat fields that must exist."),
    Spec("memory_failure", "bool", "CONFIG_MEMORY_FAILURE and the hwpoison injector (CONFIG_HWPOISON_INJECT, "
                                   "debugfs) must be available; hwpoison steps need it.", default=False),
    Spec("lkdtm", "bool", "LKDTM (debugfs provoke-crash/DIRECT) must be available; implied by do: provoke.",
         default=False),
)
SETUP = (
    Spec("knobs", "knob_writes", "Knobs written in order after run=2, before the workers start."),
    Spec("swap", "swap", "A swap device made for this scenario and removed after it."),
    Spec("cgroup", "cgroup", "Run the workers in a memory cgroup."),
    Spec("cpuset", "cpuset", "Run the workers in a cpuset bound to NUMA nodes and CPUs (LTP ksm02/ksm04)."),
)
SWAP = (
    Spec("kind", "choice", "file: a swap file on a loop device; zram: a zram device.", required=True,
         choices=SWAP_KINDS),
    Spec("size", "size", "Its size.", required=True),
)
CGROUP = (
    Spec("limit", "size", "The memory limit (memory.max, or v1's limit_in_bytes).", required=True),
    Spec("oom_kill", "bool", "false: a worker over the limit waits in the page fault instead of being "
                             "OOM-killed (v1 memory.oom_control).", default=True),
)
CPU_LIST = r"\d+(-\d+)?(,\d+(-\d+)?)*"  # a kernel CPU or node list: 0-1,3 (lib/bitmap.c bitmap_parselist())
CPUSET = (
    Spec("mems", "str", "NUMA nodes the workers' pages come from (cpuset.mems), a list such as 0 or 0-1.",
         required=True, pattern=CPU_LIST, message="mems must be a node list such as 0 or 0-1,3; not {value!r}"),
    Spec("cpus", "str", "CPUs the workers run on (cpuset.cpus), a list such as 0-1; default the parent's.",
         pattern=CPU_LIST, message="cpus must be a CPU list such as 0 or 0-1,3; not {value!r}"),
)
WORKER_GROUP = (
    Spec("name", "name", "Group name: the workers are NAME[0] .. NAME[count-1] (not 'all').", required=True),
    Spec("count", "int", "How many workers.", default=1, minimum=1, maximum=MAX_WORKERS),
    Spec("regions", "regions", "The regions each worker maps.", required=True),
    Spec("prctl_merge", "bool", "prctl(PR_SET_MEMORY_MERGE, 1) before mapping (Linux 6.4+).", default=False),
)
REGION = (
    Spec("name", "name", "Region name, unique within its worker group (not 'all').", required=True),
    Spec("size", "size", "Region size.", required=True),
    Spec("pattern", "pattern", "Content.", default=Pattern("same")),
    Spec("mergeable", "bool", "madvise(MADV_MERGEABLE) after the fill.", default=True),
    Spec("node", "int", "NUMA node to place the region on (mbind).", minimum=0, maximum=MAX_NODE),
    Spec("thp", "bool", "true: MADV_HUGEPAGE, false: MADV_NOHUGEPAGE; unset: the system default."),
    Spec("memfd", "bool", "Map a memfd (shmem file) MAP_PRIVATE instead of anonymous memory: written pages "
                          "are anonymous copies KSM merges; userfaultfd minor mode needs it.", default=False),
)
PATTERN = (
    Spec("kind", "choice", "same: every page equal; groups: page i equals page j when i % groups == j % groups; "
                           "unique: every page different; zero: zero-filled pages.", required=True,
         choices=PATTERNS),
    Spec("seed", "int", "Content seed: regions with different seeds never merge with each other.", default=1),
    Spec("groups", "int", "For kind groups: the number of distinct pages.", default=1, minimum=1),
)
WAIT_FOR = (
    Spec("knob", "str", "The KSM file to watch.", required=True),
    Spec("value", "knob_value", "The value to wait for (e.g. run reads 2 while an unmerge runs).", required=True),
    Spec("timeout", "number", "Seconds.", default=60, minimum=0, exclusive_minimum=True),
)
EXPECTATION = (
    Spec("that", "condition", "The condition holds at the end."),
    Spec("data", "choice", "intact: every page has its content; sigbus-or-intact: a page may also SIGBUS "
                           "(after injected read errors).", default="intact", choices=DATA_MODES),
    Spec("crash", "regex", "A regex on the title of the kernel report (oops, WARNING) the scenario provokes."),
)

# part name -> (its fields, one line about it): the schema's $defs and the reference's sections
PARTS: Dict[str, Tuple[Tuple[Spec, ...], str]] = {
    "scenario": (SCENARIO, "A scenario file."),
    "requires": (REQUIRES, "What the machine must have; a scenario whose requirements are missing is skipped."),
    "setup": (SETUP, "What the harness prepares before the workers start."),
    "swap": (SWAP, "setup.swap: a swap device made for this scenario and removed after it."),
    "cgroup": (CGROUP, "setup.cgroup: run the workers in a memory cgroup."),
    "cpuset": (CPUSET, "setup.cpuset: run the workers in a cpuset (made for the scenario, removed after)."),
    "workerGroup": (WORKER_GROUP, "A group of identical worker processes."),
    "region": (REGION, "One private mapping of each worker (anonymous, or of a memfd)."),
    "pattern": (PATTERN, "What a region is filled with: a kind, or a mapping with kind, seed, groups."),
    "waitFor": (WAIT_FOR, "Before acting, wait until a KSM file reads a value."),
    "expectation": (EXPECTATION, "Checked after the steps: a condition, or a mapping with one of that, data, "
                                 "crash."),
}

def keys(part):
    """The keys a part allows, and those it requires."""
    fields = PARTS[part][0]
    return {s.key for s in fields}, tuple(s.key for s in fields if s.required)
