"""The published flow schemas are fresh, shipped in the package, and validate real flows."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from backpackflow.config import CURRENT_VERSION
from backpackflow.schema import dumps_schema, published_schema, shipped_schema_path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "schemas" / "flow" / f"{CURRENT_VERSION}.json"


def test_committed_schema_is_fresh():
    expected = dumps_schema(published_schema())
    assert COMMITTED.read_text(encoding="utf-8") == expected, (
        f"{COMMITTED} is stale: regenerate it with\n"
        "  python -c 'from backpackflow.schema import *; "
        'print(dumps_schema(published_schema()), end="")\' > schemas/flow/2.0.0.json\n'
        "and copy it to kernel/backpackflow/schemas/flow/ (released versions are never edited)"
    )


def test_schema_is_shipped_inside_the_package():
    assert shipped_schema_path().read_text(encoding="utf-8") == COMMITTED.read_text("utf-8")


def test_every_published_version_is_shipped_and_valid_draft_2020_12():
    for path in sorted((ROOT / "schemas" / "flow").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert shipped_schema_path(path.stem).read_text("utf-8") == path.read_text("utf-8")


def test_published_schema_validates_the_examples():
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    for flow in (ROOT / "examples").glob("*/flow.json"):
        document = json.loads(flow.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == [], f"{flow}: {errors}"


def test_published_schema_rejects_a_bad_param_at_its_path():
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    document = json.loads((ROOT / "examples" / "research" / "flow.json").read_text("utf-8"))
    document["nodes"][1]["params"]["temperature"] = 5
    errors = list(Draft202012Validator(schema).iter_errors(document))
    assert [list(e.absolute_path) for e in errors] == [["nodes", 1, "params", "temperature"]]
    assert errors[0].message == "5 is greater than the maximum of 2"
