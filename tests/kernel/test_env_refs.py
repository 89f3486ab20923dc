"""``"${ENV_VAR}"`` references (PRD-003 security): resolved at load with a clear error when unset,
and never shown in exports or events, which keep the reference as written."""

from __future__ import annotations

import json
from typing import Annotated

import attrs
import msgspec
import pytest

import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import Backpack, ConfigError, EventStreamer, Node, hookimpl
from backpackflow.config import (
    CURRENT_VERSION,
    KeepUnset,
    env_ref_paths,
    has_env_refs,
    resolve_env_refs,
    restore_env_refs,
)
from backpackflow.loader import FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import DependencyContainer

V = CURRENT_VERSION
SECRET = "sk-live-0123456789abcdef"


# ------------------------------------------------------------------------------- the functions


def test_references_are_found_anywhere_in_json_data():
    assert has_env_refs("${A}")
    assert has_env_refs({"a": [1, {"b": "Bearer ${TOKEN}"}]})
    assert not has_env_refs({"a": ["$A", "${", "${1A}", "{A}", "$ {A}", 5, None]})


def test_resolution_replaces_whole_and_embedded_references():
    env = {"KEY": SECRET, "HOST": "example.com"}
    data = {
        "key": "${KEY}",
        "url": "https://${HOST}/v1?k=${KEY}",
        "list": ["${HOST}", 3, None, True],
        "plain": "no refs here",
    }
    assert resolve_env_refs(data, environ=env) == {
        "key": SECRET,
        "url": f"https://example.com/v1?k={SECRET}",
        "list": ["example.com", 3, None, True],
        "plain": "no refs here",
    }


def test_defaults_apply_only_when_the_variable_is_unset():
    assert resolve_env_refs("${MODEL:-gpt-4}", environ={}) == "gpt-4"
    assert resolve_env_refs("${MODEL:-gpt-4}", environ={"MODEL": "o1"}) == "o1"
    assert resolve_env_refs("${MODEL:-}", environ={}) == ""
    # a set but empty variable is set
    assert resolve_env_refs("${MODEL:-gpt-4}", environ={"MODEL": ""}) == ""


def test_an_unset_variable_is_an_error_naming_the_path_and_the_variable():
    with pytest.raises(ConfigError) as info:
        resolve_env_refs(
            {"nodes": [{"params": {"api_key": "${OPENAI_API_KEY}", "x": "${OTHER}"}}]},
            environ={},
        )
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("$.nodes[0].params.api_key: environment variable OPENAI_API_KEY")
    assert "is not set" in problems[0] and "${OPENAI_API_KEY:-value}" in problems[0]
    assert problems[1].startswith("$.nodes[0].params.x: environment variable OTHER")


def test_keep_unset_keeps_unset_references_but_still_applies_defaults():
    env = KeepUnset({"SET": "yes"})
    assert resolve_env_refs(["${SET}", "${UNSET}", "${DEFAULTED:-d}"], environ=env) == [
        "yes",
        "${UNSET}",
        "d",
    ]


def test_resolved_values_can_be_put_back_as_references():
    raw = {"a": "${KEY}", "b": ["x", "Bearer ${KEY}"], "c": 1}
    resolved = resolve_env_refs(raw, environ={"KEY": SECRET})
    refs = env_ref_paths(raw, resolved)
    assert refs == {("a",): ("${KEY}", SECRET), ("b", 1): ("Bearer ${KEY}", f"Bearer {SECRET}")}
    assert restore_env_refs(json.loads(json.dumps(resolved)), refs) == raw
    # a value changed since loading is exported as it is now
    changed = {"a": "other", "b": ["x", f"Bearer {SECRET}"], "c": 1}
    assert restore_env_refs(changed, refs) == {"a": "other", "b": ["x", "Bearer ${KEY}"], "c": 1}


# ------------------------------------------------------------------------------- in flows


@attrs.frozen
class ApiParams:
    api_key: str
    base_url: str = "https://api.example.com"
    headers: dict[str, str] = attrs.field(factory=dict)


class ApiNode(Node):
    """Uses its key without ever putting it into events or the Backpack."""

    Params = ApiParams

    def exec(self, prep_res):
        return {"key_length": len(self.params.api_key), "url": self.params.base_url}

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("seen_key_length", exec_res["key_length"])
        backpack.pack("key_matches", self.params.api_key == SECRET)


class DictNode(Node):
    def post(self, backpack, prep_res, exec_res):
        backpack.pack("token_ok", self.params["token"] == f"Bearer {SECRET}")
        backpack.pack("input_ok", self.inputs["auth"] == SECRET)


@attrs.frozen
class ClientOptions:
    key: str


class Nodes:
    __name__ = "env_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("api", ApiNode)
        register("dict", DictNode)

    @hookimpl
    def backpackflow_register_dependency_factories(self, register):
        register("client", lambda options, container: {"key": options.key}, options=ClientOptions)


@pytest.fixture
def loader():
    return FlowLoader(build_registry(plugins=[Nodes(), conditions_plugin], autoload=False))


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.delenv("UNSET_FOR_TEST", raising=False)


def secret_flow():
    return {
        "version": V,
        "nodes": [
            {
                "type": "api",
                "id": "call",
                "params": {
                    "api_key": "${SECRET_KEY}",
                    "headers": {"Authorization": "Bearer ${SECRET_KEY}"},
                },
            },
            {
                "type": "dict",
                "id": "raw",
                "params": {"token": "Bearer ${SECRET_KEY}", "plain": "x"},
                "inputs": {"auth": "${SECRET_KEY}"},
            },
        ],
        "edges": [{"from": "call", "to": "raw"}],
    }


def test_the_node_gets_the_secret(loader, secret_env):
    flow = loader.load_flow(secret_flow())
    backpack = Backpack()
    flow.run(backpack)
    state = backpack.to_dict()
    assert state["key_matches"] is True and state["seen_key_length"] == len(SECRET)
    assert state["token_ok"] is True and state["input_ok"] is True


def test_exports_show_the_reference_never_the_secret(loader, secret_env):
    flow = loader.load_flow(secret_flow())
    text = loader.export_json(flow)
    assert SECRET not in text
    exported = json.loads(text)
    call, raw = exported["nodes"]
    assert call["params"]["api_key"] == "${SECRET_KEY}"
    assert call["params"]["headers"] == {"Authorization": "Bearer ${SECRET_KEY}"}
    assert raw["params"]["token"] == "Bearer ${SECRET_KEY}"
    assert raw["inputs"] == {"auth": "${SECRET_KEY}"}
    assert SECRET not in repr(flow.start_node.to_config())
    # and the export loads again, with the secret resolved again
    assert loader.export_json(loader.load_flow(text)) == text


def test_events_show_the_reference_never_the_secret(loader, secret_env):
    flow = loader.load_flow(secret_flow())
    streamer = EventStreamer()
    flow.run(Backpack(), events=streamer)
    starts = streamer.get_events(type="node_start")
    assert [e.node_id for e in starts] == ["call", "raw"]
    call_params = starts[0].to_json()["payload"]["params"]
    assert call_params == {
        "api_key": "${SECRET_KEY}",
        "base_url": "https://api.example.com",
        "headers": {"Authorization": "Bearer ${SECRET_KEY}"},
    }
    assert starts[1].to_json()["payload"]["params"] == {
        "token": "Bearer ${SECRET_KEY}",
        "plain": "x",
    }
    for event in streamer.get_events():
        assert SECRET not in event.to_json_str(), event.type
    assert SECRET not in streamer.to_json_str()


def test_an_unset_variable_fails_the_load_naming_the_place(loader, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        loader.load_flow(secret_flow())
    problems = info.value.problems
    assert problems[0].startswith("$.nodes[0].params.api_key: environment variable SECRET_KEY")
    assert any(p.startswith("$.nodes[1].inputs.auth:") for p in problems)


def test_an_explicit_environment_can_be_given(loader, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    flow = loader.load_flow(secret_flow(), environ={"SECRET_KEY": SECRET})
    backpack = Backpack()
    flow.run(backpack)
    assert backpack.to_dict()["key_matches"] is True


def test_references_in_the_dependencies_section_are_resolved_and_exported_as_written(
    loader, secret_env
):
    document = {
        "version": V,
        "nodes": [{"type": "dict", "id": "n", "params": {"token": "x"}, "inputs": {"auth": "y"}}],
        "dependencies": {"client": {"type": "client", "config": {"key": "${SECRET_KEY}"}}},
    }
    deps = DependencyContainer()
    flow = loader.load_flow(document, deps)
    assert deps.get("client") == {"key": SECRET}
    text = loader.export_json(flow)
    assert SECRET not in text
    assert json.loads(text)["dependencies"] == document["dependencies"]


def test_references_in_edge_conditions_are_exported_as_written(loader, secret_env):
    document = {
        "version": V,
        "nodes": [
            {"type": "dict", "id": "a", "params": {"token": "x"}, "inputs": {"auth": "y"}},
            {"type": "dict", "id": "b", "params": {"token": "x"}, "inputs": {"auth": "y"}},
        ],
        "edges": [{"from": "a", "to": "b", "when": "action == '${SECRET_KEY}'"}],
    }
    text = loader.export_json(loader.load_flow(document))
    assert SECRET not in text
    assert json.loads(text)["edges"] == document["edges"]


def test_a_changed_param_is_exported_as_it_is_now(loader, secret_env):
    flow = loader.load_flow(secret_flow())
    node = flow.start_node
    node.params = attrs.evolve(node.params, api_key="replaced-in-code")
    exported = loader.export_flow(flow)
    assert exported["nodes"][0]["params"]["api_key"] == "replaced-in-code"
    assert exported["nodes"][0]["params"]["headers"] == {"Authorization": "Bearer ${SECRET_KEY}"}


def test_a_reference_is_never_resolved_twice(loader, monkeypatch):
    # a secret that itself looks like a reference is taken literally
    monkeypatch.setenv("SECRET_KEY", "${OTHER}")
    monkeypatch.delenv("OTHER", raising=False)
    flow = loader.load_flow(secret_flow())
    assert flow.start_node.params.api_key == "${OTHER}"


def test_validation_errors_never_quote_a_resolved_secret(monkeypatch):
    @attrs.frozen
    class ShortKey:
        key: Annotated[str, msgspec.Meta(max_length=8)]

    class KeyNode(Node):
        Params = ShortKey

    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("key", KeyNode)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    document = {
        "version": V,
        "nodes": [{"type": "key", "id": "k", "params": {"key": "${SECRET_KEY}"}}],
    }
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert "$.nodes[0].params.key" in str(info.value)
    assert SECRET not in str(info.value)
