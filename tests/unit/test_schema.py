"""harness/schema/scenario.schema.json describes what harness/scenario.py accepts.

The key sets are read from scenario.py itself (its _keys(...) calls, parsed with
ast, and Parser.ACTIONS), so that the schema and the validator cannot drift.
"""
import ast
import json
from pathlib import Path

import pytest

from harness import scenario, yamlload

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "harness/schema/scenario.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
STEP_KINDS = ("knob", "wait", "check", "do", "concurrent", "repeat", "fault_injection", "cgroup", "swapoff")


def resolve(node):
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def keys(node):
    return set(resolve(node)["properties"])


def objects(node):
    """The object alternatives of a schema node (through anyOf/oneOf/$ref)."""
    node = resolve(node)
    if node.get("type") == "object" and "properties" in node:
        return [node]
    return [o for alt in node.get("anyOf", []) + node.get("oneOf", []) for o in objects(alt)]


def source_key_sets():
    """Every literal `allowed` set passed to _keys() in scenario.py."""
    tree = ast.parse(Path(scenario.__file__).read_text())
    return [ast.literal_eval(call.args[3]) for call in ast.walk(tree)
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "_keys"
            and isinstance(call.args[3], ast.Set)]


def step_schemas():
    """Step kind -> its schema object (do: the per-action list)."""
    out = {}
    for alt in SCHEMA["$defs"]["step"]["oneOf"]:
        if alt.get("$ref") == "#/$defs/doStep":
            out["do"] = resolve(alt)["oneOf"]
        else:
            out[alt["required"][0]] = alt
    return out


def test_schema_is_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["type"] == "object" and SCHEMA["additionalProperties"] is False


def test_every_ref_resolves_and_has_description():
    def walk(node, path):
        if isinstance(node, dict):
            if "$ref" in node:
                assert node["$ref"].removeprefix("#/$defs/") in SCHEMA["$defs"], path
            for k, v in node.items():
                walk(v, f"{path}/{k}")
            if path.count("/") == 2 and path.startswith("/properties"):
                assert "description" in node or "$ref" in node, path
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")
    walk(SCHEMA, "")
    for name, d in SCHEMA["$defs"].items():
        assert d.get("description"), name


def test_top_level_keys():
    tree = ast.parse(Path(scenario.__file__).read_text())
    top = next(ast.literal_eval(c.args[3]) for c in ast.walk(tree) if isinstance(c, ast.Call)
               and getattr(c.func, "id", None) == "_keys" and ast.unparse(c.args[2]) == "'scenario'")
    assert set(SCHEMA["properties"]) == top
    assert set(SCHEMA["required"]) == {"name", "workers", "steps"}


def test_step_kinds():
    tree = ast.parse(Path(scenario.__file__).read_text())
    step_fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "step")
    kinds = next(ast.literal_eval(s) for s in ast.walk(step_fn) if isinstance(s, ast.Set)
                 and {"knob", "do"} <= {getattr(e, "value", None) for e in s.elts})
    assert kinds == set(STEP_KINDS) == set(step_schemas())


def test_actions_match_parser():
    per_action = {a["properties"]["do"]["const"]: a for a in step_schemas()["do"]}
    assert set(per_action) == set(scenario.Parser.ACTIONS)
    for action, (allowed, required) in scenario.Parser.ACTIONS.items():
        a = per_action[action]
        assert set(a["properties"]) == allowed | {"do", "workers", "name"}, action
        assert set(a["required"]) == set(required) | {"do"}, action
        assert a["additionalProperties"] is False


def test_every_keys_call_is_described():
    """The multiset of key sets in scenario.py equals that of the schema's objects."""
    steps = step_schemas()
    (wait_body,) = objects(steps["wait"]["properties"]["wait"])
    expect_keys = set().union(*(keys(o) for o in objects(SCHEMA["$defs"]["expectation"])))
    schema_sets = [
        set(SCHEMA["properties"]),
        keys(SCHEMA["$defs"]["requires"]),
        keys(SCHEMA["$defs"]["setup"]),
        keys(SCHEMA["$defs"]["setup"]["properties"]["swap"]),
        keys(SCHEMA["$defs"]["setup"]["properties"]["cgroup"]),
        keys(objects(SCHEMA["$defs"]["pattern"])[0]),
        keys(SCHEMA["$defs"]["workerGroup"]),
        keys(SCHEMA["$defs"]["region"]),
        keys(SCHEMA["$defs"]["waitFor"]),
        set(steps["knob"]["properties"]),
        set(wait_body["properties"]),
        set(steps["repeat"]["properties"]),
        set(steps["fault_injection"]["properties"]),
        set(steps["cgroup"]["properties"]),
        keys(steps["cgroup"]["properties"]["cgroup"]),
        set(steps["concurrent"]["properties"]),
        set(steps["swapoff"]["properties"]),
        # knob_writes is accepted by the parser only to explain that it is not an expectation
        expect_keys | {"knob_writes"},
    ]
    assert sorted(map(sorted, source_key_sets())) == sorted(map(sorted, schema_sets))
    assert objects(steps["check"]["properties"]["check"]) == [wait_body]


def test_enums_match_parser():
    d = SCHEMA["$defs"]
    assert d["pattern"]["anyOf"][0]["enum"] == list(scenario.PATTERNS)
    assert d["writeResult"]["enum"] == list(scenario.WRITE_RESULTS)
    assert d["limitResult"]["anyOf"][0]["enum"] == list(scenario.LIMIT_RESULTS)
    assert d["setup"]["properties"]["swap"]["properties"]["kind"]["enum"] == list(scenario.SWAP_KINDS)
    advise = next(a for a in step_schemas()["do"] if a["properties"]["do"]["const"] == "advise")
    assert advise["properties"]["advice"]["enum"] == list(scenario.ADVICE)


SCENARIOS = sorted((REPO / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_scenarios_validate(path):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(yamlload.load(path.read_text(), str(path)))
