"""verdict.verdict(): FAIL is the kernel's, ERROR is ours."""
from harness.results import ERROR, FAIL, PASS, Check
from harness.verdict import verdict

OK = Check("pages_shared == 0", True, "pages_shared=0 (want == 0)")
BAD = Check("victim.r.ksm == 0", False, "victim.r.ksm=4096 (want == 0)")
MISSED = "race window missed (line 44): 3 of 1024 faults during run=2 (want >= 50%)"


def test_all_checks_passed():
    assert verdict([OK], []) == (PASS, "")


def test_harness_trouble_is_an_error():
    assert verdict([OK], ["WorkerError: a[0]: map: mmap: Cannot allocate memory"]) == (
        ERROR, "WorkerError: a[0]: map: mmap: Cannot allocate memory")
    assert verdict([OK], [MISSED]) == (ERROR, MISSED)


def test_a_failed_check_is_a_failure_even_with_trouble_after():
    assert verdict([OK, BAD], []) == (FAIL, "victim.r.ksm == 0: victim.r.ksm=4096 (want == 0)")
    assert verdict([BAD], ["DeadlineExceeded: scenario timeout of 60s reached"]) == (
        FAIL, "victim.r.ksm == 0: victim.r.ksm=4096 (want == 0) (then: DeadlineExceeded: scenario timeout of 60s "
              "reached)")
