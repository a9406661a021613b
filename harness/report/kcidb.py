"""KCIDB JSON (KernelCI's common results database), schema v5.3: the latest
that the `kcidb-io` package validates (tests/unit/test_kcidb.py checks every
document with it).

One checkout (the kernel source: its identity comes from the submitter), one
build (the kernel that ran: architecture, config), and one test per scenario
and matrix point, with a dotted path (report/testid.py kcidb_path:
"ksm.seed.stale_stable_nodes.from_1.far_0"), status, duration, start time,
the environment the run recorded itself (kernel release and config digest,
NUMA nodes, machine: harness/environment.py) in environment.misc, the failed
checks and crash lines as log_excerpt, and reason, notes, matrix parameters,
deltas in misc.

Identity, from the environment (so that it passes into a `ksm-harness vm`
guest, whose environment keeps KSM_HARNESS_* variables):

    KSM_HARNESS_KCIDB_ORIGIN    the submitting CI system, [a-z0-9_]+ (default ksm_harness)
    KSM_HARNESS_KCIDB_CHECKOUT  checkout id after "origin:" (default: from the kernel's version string)
    KSM_HARNESS_KCIDB_BUILD     build id after "origin:" (default: checkout id + kernel config digest)
    KSM_HARNESS_KCIDB_RUN       run id in every test id, after the build id (default: host name + run start time)
    KSM_HARNESS_KCIDB_TREE, _REPO, _BRANCH, _COMMIT   checkout tree_name, git_repository_url,
                                git_repository_branch, git_commit_hash (40 hex digits), when known
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import InputError
from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import clean, crash_text, exercised, one_line, problems
from .testid import kcidb_path, slug

MAJOR, MINOR = 5, 3  # the schema version written (kcidb_io.schema.V5_3)
LOG_EXCERPT_MAX = 16384  # characters: the schema's maxLength of log_excerpt
ORIGIN_RE = re.compile(r"^[a-z0-9_]+$")  # kcidb_io schema v3+ origin_pattern
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")  # a git commit hash (sha1), as the schema wants
STATUS = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP", ERROR: "ERROR"}
ENV_PREFIX = "KSM_HARNESS_KCIDB_"


@dataclass(frozen=True)
class Identity:
    """Who submits, and which checkout, build and run the tests belong to."""

    origin: str  # the CI system, [a-z0-9_]+
    checkout: Optional[str]  # checkout id after "origin:"; None: derived from the kernel
    build: Optional[str]  # build id after "origin:"; None: derived from the kernel and its config
    run: Optional[str]  # run id inside every test id; None: host name + start time
    checkout_fields: Mapping[str, str]  # tree_name, git_repository_url, ... as given


def identity(env: Mapping[str, str] = os.environ) -> Identity:
    """The Identity the KSM_HARNESS_KCIDB_* variables give; InputError naming a bad one."""
    origin = env.get(ENV_PREFIX + "ORIGIN", "ksm_harness")
    if not ORIGIN_RE.match(origin):
        raise InputError(f"{origin!r}: a KCIDB origin is lower case letters, digits and _",
                         field=ENV_PREFIX + "ORIGIN")
    fields = {name: env[ENV_PREFIX + var] for var, name in (
        ("TREE", "tree_name"), ("REPO", "git_repository_url"), ("BRANCH", "git_repository_branch"),
        ("COMMIT", "git_commit_hash")) if env.get(ENV_PREFIX + var)}
    if "git_commit_hash" in fields and not COMMIT_RE.match(fields["git_commit_hash"]):
        raise InputError(f"{fields['git_commit_hash']!r}: want the 40 hex digits of a git commit",
                         field=ENV_PREFIX + "COMMIT")
    return Identity(origin, env.get(ENV_PREFIX + "CHECKOUT"), env.get(ENV_PREFIX + "BUILD"),
                    env.get(ENV_PREFIX + "RUN"), fields)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _log_excerpt(s) -> str:
    """The reason, failed checks and crash reports with their lines, cut to the schema's limit."""
    lines = [one_line(s.reason)] if s.reason else []
    lines += problems(s)
    for c in s.crashes:
        lines += [f"{crash_text(c)}:"] + [clean(line) for line in c.lines]
    return "\n".join(lines)[:LOG_EXCERPT_MAX]


def _test(s, run, ident, build_id, run_id):
    path = kcidb_path(s)
    test = {
        "build_id": build_id,
        "id": f"{build_id}:{run_id}:{path}",  # unique per kernel and run, even with KSM_HARNESS_KCIDB_RUN set
        "origin": ident.origin,
        "path": path,
        "status": STATUS.get(s.status, "ERROR"),
        "duration": s.duration,
        "environment": {
            "comment": one_line(f"{run.environment.get('hostname', '?')}: {run.kernel} on "
                                f"{run.environment.get('machine', '?')}, "
                                f"{run.environment.get('numa_nodes', '?')} NUMA nodes"),
            "misc": dict(run.environment),
        },
        "misc": {
            "scenario": s.name,
            "file": s.file,
            "line": s.line,
            "params": dict(s.params),
            "reason": one_line(s.reason),
            "notes": [one_line(n) for n in s.notes],
            "failed_checks": problems(s),
            "taint": [one_line(t) for t in s.taint],
            "deltas": dict(s.deltas),
            "exercised": exercised(s),
        },
    }
    if s.started or run.started:
        test["start_time"] = s.started or run.started
    if s.reason:
        test["comment"] = one_line(s.reason)
    excerpt = _log_excerpt(s)
    if excerpt:
        test["log_excerpt"] = excerpt
    return test


def to_dict(run, ident: Optional[Identity] = None) -> dict:
    """The KCIDB v5.3 document for `run`."""
    ident = ident or identity()
    env = run.environment
    kernel_id = f"kernel-{slug(run.kernel)}-{_digest(env.get('kernel_version', run.kernel))}"
    checkout = ident.checkout or kernel_id
    build = ident.build or f"{checkout}-config-{env.get('kernel_config_sha256', 'unknown')[:12]}"
    run_id = ident.run or slug(f"{env.get('hostname', 'host')}-{run.started}")
    checkout_id, build_id = f"{ident.origin}:{checkout}", f"{ident.origin}:{build}"
    build_doc = {"id": build_id, "checkout_id": checkout_id, "origin": ident.origin,
                 "misc": {k: env[k] for k in ("kernel_release", "kernel_version", "kernel_config",
                                              "kernel_config_sha256") if k in env}}
    if env.get("machine"):
        build_doc["architecture"] = env["machine"]
    return {
        "version": {"major": MAJOR, "minor": MINOR},
        "checkouts": [{"id": checkout_id, "origin": ident.origin, **ident.checkout_fields}],
        "builds": [build_doc],
        "tests": [_test(s, run, ident, build_id, run_id) for s in run.scenarios],
    }


def render(run) -> str:
    """`run` as KCIDB JSON text."""
    return json.dumps(to_dict(run), indent=1) + "\n"
