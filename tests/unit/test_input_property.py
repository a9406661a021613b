"""Property: no scenario file, however broken, gets past load with anything
but a scenario or one InputError line `FILE:LINE: FIELD: message` (exit 2 from
the CLI, before the run starts), in bounded time and memory.  Documents come
from Hypothesis: the shipped scenarios with parts generated from the JSON
schema, and the shipped scenarios mutated (a value replaced, a key dropped or
added, a list emptied)."""
import json
import re
import tracemalloc
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from harness import cli, runner, scenario  # noqa: E402
from harness.errors import InputError  # noqa: E402
from harness.knobs import Knobs  # noqa: E402
from harness.limits import Limits  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "harness/schema/scenario.schema.json").read_text())
SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "scenarios").rglob("*.yaml"))]
LIMITS = Limits(memory_pages=(8 << 30) // scenario.PAGE)
ONE_LINE = re.compile(r"^\S+\.yaml(:\d+)?: (\S+: )?[^\n]+$")
PEAK_BYTES = 64 << 20  # what loading one document may allocate at most

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["all", "a[0]", "r", "10-5", "last 200%", "4M", "0",
                                                           "${x}", "../run", "run", "2", "-1", "1G"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def paths(doc, prefix=()):
    """Every (path, value) inside a document."""
    yield prefix, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        yield from paths(v, prefix + (k,))


@st.composite
def mutated(draw):
    doc = json.loads(json.dumps(draw(st.sampled_from(SHIPPED))))
    for _ in range(draw(st.integers(1, 4))):
        where, _ = draw(st.sampled_from(list(paths(doc))))
        if not where:
            continue
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "drop", "add", "empty"]))
        if how == "replace":
            parent[where[-1]] = draw(values)
        elif how == "drop":
            del parent[where[-1]]
        elif how == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(values)
        elif how == "empty":
            parent[where[-1]] = [] if isinstance(parent[where[-1]], list) else {}
    return doc


def assert_loads_or_one_line(tmp_path, doc):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    tracemalloc.start()
    try:
        scenario.load_file(path, LIMITS, Knobs(tmp_path / "no-ksm"))
    except InputError as exc:
        assert ONE_LINE.match(str(exc)), str(exc)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < PEAK_BYTES


# max_examples from the profile conftest.py loads (quick: 200, deep: 1000)
SETTINGS = settings(deadline=10000, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(doc=mutated())
def test_mutated_scenarios(tmp_path_factory, doc):
    assert_loads_or_one_line(tmp_path_factory.mktemp("m"), doc)


def unrolled(schema):
    """The schema with one level of nested steps: hypothesis-jsonschema cannot
    resolve the recursion step -> concurrent/repeat -> step, so the steps
    inside those are steps without concurrent or repeat."""
    schema = json.loads(json.dumps(schema))
    step = schema["$defs"]["step"]
    leaf = dict(step, oneOf=[alt for alt in step["oneOf"]
                             if not {"concurrent", "repeat"} & set(alt.get("properties", {}))])
    schema["$defs"]["leafStep"] = leaf
    for alt in step["oneOf"]:
        for key in ("concurrent", "steps"):
            if key in alt.get("properties", {}):
                alt["properties"][key]["items"] = {"$ref": "#/$defs/leafStep"}
    return schema


def set_in(*path):
    """Put a fragment at `path` of a document (an index past the end appends)."""
    def put(doc, fragment):
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, list) and path[-1] >= len(parent):
            parent.append(fragment)
        else:
            parent[path[-1]] = fragment
    return put


# Where a fragment generated from each part of the schema goes in a shipped
# scenario.  Whole documents from the schema would be the simplest, but
# hypothesis-jsonschema takes about 2 s to draw one (oneOf over the step
# kinds, each with patterns); a part takes a few milliseconds.
PARTS = {"region": set_in("workers", 0, "regions", 0), "workerGroup": set_in("workers", 0),
         "step": set_in("steps", 0), "leafStep": set_in("steps", 99), "requires": set_in("requires"),
         "setup": set_in("setup"), "expectation": set_in("expect", 0)}


@pytest.fixture(scope="module")
def schema_parts():
    from_schema = pytest.importorskip("hypothesis_jsonschema").from_schema
    schema = unrolled(SCHEMA)
    parts = {name: from_schema({"$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}) for name in PARTS}

    @st.composite
    def documents(draw):
        doc = json.loads(json.dumps(draw(st.sampled_from(SHIPPED))))
        doc.setdefault("expect", [])
        name = draw(st.sampled_from(sorted(PARTS)))
        PARTS[name](doc, draw(parts[name]))
        return doc

    return documents()


@SETTINGS
@given(data=st.data())
def test_documents_from_the_schema(tmp_path_factory, schema_parts, data):
    assert_loads_or_one_line(tmp_path_factory.mktemp("g"), data.draw(schema_parts))


def test_cli_rejects_before_the_run_starts(tmp_path, monkeypatch, capsys):
    """Bad input through `ksm-harness run`: exit 2, one line on stderr, and
    runner.run_all (the only way to the lock, the journal and the knobs) is
    never entered."""
    entered = []
    monkeypatch.setattr(runner, "run_all", lambda *a, **k: entered.append(a))
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "scenarios/core/merge-unmerge.yaml").read_text().replace(
        "pages_to_scan", "../../../../proc/sys/vm/drop_caches", 1))
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a knob name" in err[0], err
    assert not entered
