"""harness/schema/scenario.schema.json is what `ksm-harness schema` prints:
the schema generated from the step and action classes (harness/steps/), so
that the schema and the loader cannot drift; where a rule spans fields (a
fork needs count, duration or until_done) both say it."""
import json
from pathlib import Path

import pytest

from harness import cli, scenario, steps, yamlload
from harness.errors import InputError
from harness.steps import document, schema

from test_scenario import BASE

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "harness/schema/scenario.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def test_committed_schema_is_generated(capsys):
    assert cli.main(["schema"]) == 0
    assert capsys.readouterr().out == schema.text() == SCHEMA_PATH.read_text(), \
        "run: ksm-harness schema > harness/schema/scenario.schema.json"


def test_schema_is_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["type"] == "object" and SCHEMA["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


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


def test_every_kind_and_action_is_described():
    kinds = {alt["required"][0] for alt in SCHEMA["$defs"]["step"]["oneOf"] if "required" in alt}
    assert kinds | {"do"} == set(steps.STEPS)
    actions = {alt["properties"]["do"]["const"]: alt for alt in SCHEMA["$defs"]["doStep"]["oneOf"]}
    assert set(actions) == set(steps.ACTIONS)
    for name, cls in steps.ACTIONS.items():
        assert set(actions[name]["properties"]) == cls.keys(), name
        assert set(actions[name]["required"]) == set(cls.required()), name


def test_value_key_sets_match_the_document_parts():
    """values.py parses patterns and knob waits with key sets of its own (it
    cannot import document.py): they are document.py's."""
    assert document.keys("pattern") == ({"kind", "seed", "groups"}, ("kind",))
    assert document.keys("waitFor") == ({"knob", "value", "timeout"}, ("knob", "value"))


FORK = BASE + "  - do: fork\n    workers: a\n"


@pytest.mark.parametrize("extra,valid", [("", False), ("    count: 3\n", True), ("    duration: 1\n", True),
                                         ("    count: 0\n", False), ("    depth: 17\n", False),
                                         ("    live_cap: -1\n", False)])
def test_schema_and_loader_agree_on_fork(tmp_path, extra, valid):
    jsonschema = pytest.importorskip("jsonschema")
    path = tmp_path / "s.yaml"
    path.write_text(FORK + extra)
    by_schema = jsonschema.Draft202012Validator(SCHEMA).is_valid(yamlload.load(path.read_text(), str(path)))
    try:
        scenario.load_file(path)
        by_loader = True
    except InputError:
        by_loader = False
    assert by_schema == by_loader == valid


SCENARIOS = sorted((REPO / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_scenarios_validate(path):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(SCHEMA).validate(yamlload.load(path.read_text(), str(path)))


def test_committed_reference_is_generated(capsys):
    from harness.steps import reference
    assert cli.main(["schema", "--reference"]) == 0
    assert capsys.readouterr().out == reference.text() == (REPO / "docs/reference.md").read_text(), \
        "run: ksm-harness schema --reference > docs/reference.md"
