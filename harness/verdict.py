"""A scenario's status from its checks and errors: FAIL is the kernel's,
ERROR is ours (the harness or the machine), else PASS."""
from .results import ERROR, FAIL, PASS, ScenarioResult


def errored(name, file, line, reason, checks):
    """The result of a scenario (or of the run's final restore) that the
    harness could not carry through."""
    return ScenarioResult(name, file, line, ERROR, 0.0, reason=reason, checks=tuple(checks))


def verdict(checks, errors):
    """(status, reason): FAIL is the kernel's (a check it did not pass, even
    when harness trouble came after), ERROR is ours (the harness or machine
    could not do the test, or a race missed its window), else PASS."""
    failed = [c for c in checks if not c.passed and c.kernel]
    errors = errors + [f"{c.what}: {c.detail.strip().splitlines()[-1]}" for c in checks
                       if not c.passed and not c.kernel]
    if failed:
        also = f" (then: {errors[0]})" if errors else ""
        return FAIL, f"{failed[0].what}: {failed[0].detail}{also}"
    if errors:
        return ERROR, "; ".join(errors)
    return PASS, ""
