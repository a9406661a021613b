"""`ksm-harness explore`: randomized scenarios built from the registry of step
kinds (harness/steps/), run on the kernel, a failure shrunk to the smallest
scenario that still fails and written as a YAML file `ksm-harness run` takes.

    vocabulary.py   what this machine and the PATHS let explore generate
    strategies.py   Hypothesis strategies of a step's fields, from their Specs
    machine.py      the Hypothesis state machine that writes a scenario document
    session.py      runs each document (executor.py) within the budget, keeps count
    executor.py     one document through the runner (load_file + run_all)
    reproducer.py   the smallest failing document as YAML, and its replay
    report.py       the progress line, the summary and the JSON result
    command.py      the command: options, the Hypothesis run, the result

Generation, shrinking and the example database are Hypothesis's (stateful
testing): each example is a whole scenario document run through the runner,
so every check the runner makes without being asked (data, the
nothing-shared invariant, the page truth of the counters, the kernel log,
taint) follows it, and a shrunk example is a scenario file as it ran.
"""
