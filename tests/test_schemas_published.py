"""The published flow schemas are fresh (their bytes made by this project's code alone, whatever
the msgspec and Python versions: tests/kernel/test_schema.py), shipped in the package, the only
documents with their ``$id``, and validate real flows."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from backpackflow import FlowLoader, Node, hookimpl
from backpackflow.config import CURRENT_VERSION
from backpackflow.loader import dumps_schema, export_schema, shipped_schema_path
from backpackflow.plugins import build_registry

ROOT = Path(__file__).resolve().parents[1]


def _load_tool() -> Any:
    """tools/publish_schema.py (outside the kernel: it imports the first-party plugins)."""
    spec = importlib.util.spec_from_file_location(
        "publish_schema", ROOT / "tools" / "publish_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tool = _load_tool()
FIRST_PARTY_NODE_PLUGINS = _tool.FIRST_PARTY_NODE_PLUGINS
published_schema = _tool.published_schema
COMMITTED = ROOT / "schemas" / "flow" / f"{CURRENT_VERSION}.json"


def test_committed_schema_is_fresh():
    expected = dumps_schema(published_schema())
    assert COMMITTED.read_text(encoding="utf-8") == expected, (
        f"{COMMITTED} is stale: regenerate it with\n"
        "  python tools/publish_schema.py --write\n"
        "(released versions are never edited)"
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


# ------------------------------------------------------------------------------- one $id


def first_party_plugins() -> list[Any]:
    return [importlib.import_module(name) for name in FIRST_PARTY_NODE_PLUGINS]


class ThirdPartyNodes:
    __name__ = "third_party_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("shout", Node)


def test_schema_export_of_the_first_party_plugins_is_the_published_document():
    registry = build_registry(plugins=first_party_plugins(), autoload=False)
    assert dumps_schema(export_schema(registry)) == COMMITTED.read_text(encoding="utf-8")


def test_any_other_composition_does_not_carry_the_published_id():
    published_id = json.loads(COMMITTED.read_text(encoding="utf-8"))["$id"]
    assert published_id == f"https://backpackflow.dev/schemas/flow/{CURRENT_VERSION}.json"
    more = build_registry(plugins=[*first_party_plugins(), ThirdPartyNodes()], autoload=False)
    fewer = build_registry(plugins=first_party_plugins()[:1], autoload=False)
    for registry in (more, fewer):
        schema = export_schema(registry)
        assert "$id" not in schema
        Draft202012Validator.check_schema(schema)
    assert "shout" in export_schema(more)["$defs"]["node"]["properties"]["type"]["enum"]


def test_a_flow_file_may_name_its_schema_for_editors(tmp_path):
    published_id = json.loads(COMMITTED.read_text(encoding="utf-8"))["$id"]
    research = ROOT / "examples" / "research" / "flow.json"
    document = {"$schema": published_id, **json.loads(research.read_text(encoding="utf-8"))}
    errors = list(
        Draft202012Validator(json.loads(COMMITTED.read_text("utf-8"))).iter_errors(document)
    )
    assert errors == []
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    loader = FlowLoader()
    assert loader.validate(path).errors == []
    flow = loader.load_flow(path)
    assert loader.export_flow(flow)["$schema"] == published_id  # kept, as everything given
    document["$schema"] = 7
    assert loader.validate(document).errors == ["$.$schema: 7 is not of type 'string'"]
