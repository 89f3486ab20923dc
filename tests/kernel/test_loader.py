"""FlowLoader (PRD-003 success criteria, DESIGN §3.4): a JSON flow loads and runs, exports back
byte-identically, invalid params fail with JSON paths, custom node types load from config, configs
differing only in params run without code changes; reading, migrations, dependencies, and the
``to_config`` / ``from_config`` every node class gets from the kernel."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import attrs
import msgspec
import pytest

import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import (
    Backpack,
    BackpackFlowError,
    ConfigError,
    EventStreamer,
    Flow,
    GuardrailExceeded,
    Node,
    hookimpl,
)
from backpackflow.config import CURRENT_VERSION, FlowConfig, NodeConfig, structure
from backpackflow.loader import ConfigWarning, FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import DependencyContainer

V = CURRENT_VERSION


# ------------------------------------------------------------------------------- node types


@attrs.frozen
class ChatParams:
    model: str
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    system_prompt: str | None = None


class ChatNode(Node):
    """An offline chat model: answers with its model name and the question."""

    Params = ChatParams

    def prep(self, backpack):
        return backpack.unpack("question", "")

    def exec(self, question):
        return {"answer": f"[{self.params.model}@{self.params.temperature}] {question}"}

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(f"answer.{self.id}", exec_res["answer"])
        backpack.pack("question", exec_res["answer"])
        return None


@attrs.frozen
class DecideParams:
    key: str
    threshold: Annotated[int, msgspec.Meta(ge=0)] = 10


class DecideNode(Node):
    """Returns "long" or "short" depending on the length of a Backpack value."""

    Params = DecideParams

    def prep(self, backpack):
        return backpack.unpack(self.params.key, "")

    def exec(self, text):
        return {"branch": "deep" if len(text) > self.params.threshold else "shallow"}

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("branch", exec_res["branch"])
        return "long" if exec_res["branch"] == "deep" else "short"


class RecordNode(Node):
    """Params are a plain dict (no Params class): records them in the Backpack."""

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(f"record.{self.id}", dict(self.params))
        return self.params.get("action")


@attrs.frozen
class GreetParams:
    greeting: str = "hello"


class GreetNode(Node):
    """A third-party node that needs a dependency (an ``llm`` client)."""

    Params = GreetParams

    def exec(self, prep_res):
        return self.dependency("llm").complete(self.params.greeting)

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("greeting", exec_res)


class EchoClient:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def complete(self, text: str) -> str:
        return f"{self.prefix}{text}"


@attrs.frozen
class EchoOptions:
    prefix: str = ""


class TestNodes:
    """Registers the test node types, the way a third-party package would."""

    __name__ = "test_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("chat", ChatNode, params=ChatParams)
        register("decide", DecideNode)
        register("record", RecordNode)
        register("greet", GreetNode, dependencies=["llm"])

    @hookimpl
    def backpackflow_register_dependency_factories(self, register):
        register(
            "echo",
            lambda options, container: EchoClient(options.prefix),
            options=EchoOptions,
        )


@pytest.fixture
def registry():
    return build_registry(plugins=[TestNodes(), conditions_plugin], autoload=False)


@pytest.fixture
def loader(registry):
    return FlowLoader(registry)


def three_node_flow() -> dict[str, Any]:
    return {
        "version": V,
        "name": "qa",
        "namespace": "support",
        "nodes": [
            {"type": "chat", "id": "ask", "params": {"model": "m1", "temperature": 0.2}},
            {"type": "decide", "id": "route", "params": {"key": "question", "threshold": 5}},
            {"type": "record", "id": "done", "params": {"note": "finished"}},
        ],
        "edges": [
            {"from": "ask", "to": "route"},
            {"from": "route", "to": "done", "condition": "long"},
            {"from": "route", "to": "done", "condition": "short"},
        ],
    }


def run(flow, data=None):
    backpack = Backpack(data or {})
    streamer = EventStreamer()
    flow.run(backpack, events=streamer)
    return backpack.to_dict(), streamer


# ------------------------------------------------------------------------------- success criteria


def test_a_json_three_node_flow_loads_and_runs(loader, tmp_path):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(three_node_flow()), encoding="utf-8")
    flow = loader.load_flow(path)
    assert isinstance(flow, Flow)
    state, streamer = run(flow, {"question": "why is the sky blue?"})
    assert state["answer.ask"] == "[m1@0.2] why is the sky blue?"
    assert state["branch"] == "deep"
    assert state["record.done"] == {"note": "finished"}
    started = [e.node_id for e in streamer.get_events(type="node_start")]
    assert started == ["ask", "route", "done"]
    namespaces = {e.node_id: e.namespace for e in streamer.get_events(type="node_start")}
    assert namespaces["ask"] == "support"


@pytest.mark.parametrize("form", ["path", "str_path", "json_text", "dict", "flow_config"])
def test_every_source_form_loads_the_same_flow(loader, tmp_path, form):
    document = three_node_flow()
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    source = {
        "path": path,
        "str_path": str(path),
        "json_text": json.dumps(document),
        "dict": document,
        "flow_config": structure(document, FlowConfig),
    }[form]
    flow = loader.load_flow(source)
    assert loader.export_json(flow) == loader.export_json(loader.load_flow(document))


def test_loading_does_not_change_the_callers_document(loader):
    document = three_node_flow()
    before = json.dumps(document, sort_keys=True)
    loader.load_flow(document)
    assert json.dumps(document, sort_keys=True) == before


def test_export_of_a_loaded_flow_is_byte_identical_after_reload(loader):
    first = loader.export_json(loader.load_flow(three_node_flow()))
    second = loader.export_json(loader.load_flow(first))
    third = loader.export_json(loader.load_flow(json.loads(second)))
    assert first == second == third
    exported = json.loads(first)
    assert exported["version"] == V
    assert exported["name"] == "qa" and exported["namespace"] == "support"
    # params are exported with every field, so the config says what the node ran with
    assert exported["nodes"][0]["params"] == {
        "model": "m1",
        "temperature": 0.2,
        "system_prompt": None,
    }


@pytest.mark.parametrize("cost", ["0.0000001", "0.50", "0", "12"])
def test_a_max_cost_is_exported_exactly_as_written(loader, cost):
    document = three_node_flow()
    document["limits"] = {"max_cost": cost}
    flow = loader.load_flow(document)
    exported = loader.export_flow(flow)
    assert exported["limits"] == {"max_cost": cost}  # str(Decimal) would give "1E-7"
    assert loader.export_flow(loader.load_flow(exported)) == exported


def build_in_code() -> Flow:
    ask = ChatNode(id="ask", params=ChatParams(model="gpt-4", temperature=1.0))
    route = DecideNode(id="route", params={"key": "question"}, namespace="routing")
    deep = RecordNode(id="deep", params={"depth": 2}, name="Deep dive")
    shallow = RecordNode(id="shallow", max_retries=3, wait=0.5)
    ask >> route
    route - "long" >> deep
    route - "short" >> shallow
    return Flow(ask, name="in-code", namespace="lab", max_steps=20)


def test_round_trip_of_a_flow_built_in_code(loader):
    original = build_in_code()
    config = loader.export_flow(original)
    restored = loader.load_flow(config)
    assert loader.export_flow(restored) == config
    assert loader.export_json(restored) == loader.export_json(original)
    assert config["name"] == "in-code" and config["namespace"] == "lab"
    assert config["limits"] == {"max_steps": 20}
    assert restored.limits.max_steps == 20
    by_id = {n["id"]: n for n in config["nodes"]}
    assert by_id["deep"]["name"] == "Deep dive"
    assert by_id["route"]["namespace"] == "routing"
    assert by_id["shallow"]["retry"] == {"max_retries": 3, "wait": 0.5}
    shallow = next(n for n in restored.nodes() if n.id == "shallow")
    assert (shallow.max_retries, shallow.wait) == (3, 0.5)
    # and the two flows behave the same
    data = {"question": "a long question"}
    assert run(original, data)[0] == run(restored, data)[0]


def test_round_trip_includes_nested_flows(loader):
    inner_a = ChatNode(id="inner-a", params={"model": "small"})
    inner_b = RecordNode(id="inner-b", params={"x": 1})
    inner_a >> inner_b
    inner = Flow(inner_a, id="sub", name="Sub", namespace="sub")
    first = ChatNode(id="first", params={"model": "big"})
    last = RecordNode(id="last")
    first >> inner >> last
    outer = Flow(first, name="outer")
    config = loader.export_flow(outer)
    sub = next(n for n in config["nodes"] if n["id"] == "sub")
    assert sub["type"] == "flow"
    assert sub["name"] == "Sub" and sub["namespace"] == "sub"
    assert [n["id"] for n in sub["params"]["nodes"]] == ["inner-a", "inner-b"]
    assert sub["params"]["edges"] == [{"from": "inner-a", "to": "inner-b"}]
    restored = loader.load_flow(config)
    assert loader.export_json(restored) == loader.export_json(outer)
    state, streamer = run(restored, {"question": "q"})
    assert state["record.inner-b"] == {"x": 1}
    assert "record.last" in state
    namespaces = {e.node_id: e.namespace for e in streamer.get_events(type="node_start")}
    assert namespaces["inner-a"] == "sub"


def test_nested_flows_from_config_round_trip_with_entry_and_parallel(loader):
    document = {
        "version": V,
        "nodes": [
            {
                "type": "flow",
                "id": "sub",
                "params": {
                    "entry": "b",
                    "parallel": True,
                    "nodes": [
                        {"type": "record", "id": "a"},
                        {"type": "record", "id": "b"},
                    ],
                    "edges": [{"from": "b", "to": "a"}],
                },
            },
            {"type": "record", "id": "after"},
        ],
        "edges": [{"from": "sub", "to": "after"}],
    }
    flow = loader.load_flow(document)
    exported = loader.export_flow(flow)
    assert exported["nodes"][0]["params"]["entry"] == "b"
    assert exported["nodes"][0]["params"]["parallel"] is True
    assert loader.export_json(loader.load_flow(exported)) == loader.export_json(flow)
    _, streamer = run(flow)
    started = [e.node_id for e in streamer.get_events(type="node_start")]
    assert started == ["sub", "b", "a", "after"]


def test_an_entry_that_is_not_the_first_node_is_kept(loader):
    document = {
        "version": V,
        "entry": "b",
        "nodes": [{"type": "record", "id": "a"}, {"type": "record", "id": "b"}],
        "edges": [{"from": "b", "to": "a"}],
    }
    flow = loader.load_flow(document)
    assert flow.start_node.id == "b"
    exported = loader.export_flow(flow)
    assert exported["entry"] == "b"
    assert [n["id"] for n in exported["nodes"]] == ["a", "b"]
    assert loader.export_json(loader.load_flow(exported)) == loader.export_json(flow)


def test_unreachable_nodes_survive_export(loader):
    document = {
        "version": V,
        "nodes": [
            {"type": "record", "id": "a"},
            {"type": "record", "id": "island", "params": {"keep": True}},
            {"type": "record", "id": "shore"},
        ],
        "edges": [{"from": "island", "to": "shore"}],
    }
    with pytest.warns(ConfigWarning, match="unreachable"):
        flow = loader.load_flow(document)
    exported = loader.export_flow(flow)
    assert [n["id"] for n in exported["nodes"]] == ["a", "island", "shore"]
    assert exported["edges"] == [{"from": "island", "to": "shore"}]


def test_changes_made_in_code_after_loading_are_exported(loader):
    from backpackflow import Limits

    flow = loader.load_flow(three_node_flow())
    unchanged = loader.export_flow(flow)
    flow.name = "renamed"
    flow.namespace = "billing"
    flow.limits = Limits(max_steps=7)
    flow.start_node.params = ChatParams(model="changed")
    exported = loader.export_flow(flow)
    assert exported["name"] == "renamed" and exported["namespace"] == "billing"
    assert exported["limits"] == {"max_steps": 7}
    assert exported["nodes"][0]["params"]["model"] == "changed"
    assert "limits" not in unchanged and unchanged["name"] == "qa"


def test_an_invalid_param_fails_with_a_json_path_error(loader):
    document = three_node_flow()
    document["nodes"].append({"type": "chat", "id": "hot", "params": {"model": "m"}})
    document["nodes"][3]["params"]["temperature"] = 5
    document["nodes"][2], document["nodes"][3] = document["nodes"][3], document["nodes"][2]
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert info.value.problems == [
        "$.nodes[2].params.temperature: 5 is greater than the maximum of 2"
    ]
    assert "$.nodes[2].params.temperature: 5 is greater than the maximum of 2" in str(info.value)


def test_every_invalid_param_of_every_node_is_reported(loader):
    document = three_node_flow()
    document["nodes"][0]["params"] = {"temperature": -1, "colour": "red"}
    document["nodes"][1]["params"]["threshold"] = "ten"
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    joined = "\n".join(info.value.problems)
    assert "$.nodes[0].params: 'model' is a required property" in joined
    assert "$.nodes[0].params.temperature: -1 is less than the minimum of 0" in joined
    assert "$.nodes[0].params: Additional properties are not allowed ('colour'" in joined
    assert "$.nodes[1].params.threshold: 'ten' is not of type 'integer'" in joined


def test_a_custom_node_type_loads_from_config_with_its_dependency(loader):
    document = {
        "version": V,
        "nodes": [{"type": "greet", "id": "hi", "params": {"greeting": "good morning"}}],
        "dependencies": {"llm": {"type": "echo", "config": {"prefix": ">> "}}},
    }
    flow = loader.load_flow(document)
    state, _ = run(flow)
    assert state["greeting"] == ">> good morning"
    # the dependency section is exported as written
    assert loader.export_flow(flow)["dependencies"] == document["dependencies"]


def test_a_custom_node_type_registered_on_the_loader(registry):
    class Shout(Node):
        def exec(self, prep_res):
            return str(self.params["text"]).upper()

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("shout", exec_res)

    loader = FlowLoader(registry)
    document = {"version": V, "nodes": [{"type": "shout", "id": "s", "params": {"text": "hey"}}]}
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.type: unknown node type 'shout'"):
        loader.load_flow(document)
    loader.register("shout", Shout)
    state, _ = run(loader.load_flow(document))
    assert state["shout"] == "HEY"
    assert loader.export_flow(loader.load_flow(document))["nodes"][0]["type"] == "shout"
    # registered on that loader only
    with pytest.raises(ConfigError):
        FlowLoader(registry).load_flow(document)


def test_a_node_class_may_build_itself_with_its_own_from_config(registry):
    built = []

    class SelfBuilt(Node):
        @classmethod
        def from_config(cls, config, deps):
            built.append((config.id, deps.get("llm")))
            node = cls(id=config.id, params=config.params)
            return node

    loader = FlowLoader(registry)
    loader.register("self-built", SelfBuilt, dependencies=["llm"])
    deps = DependencyContainer()
    client = EchoClient()
    deps.register("llm", client)
    flow = loader.load_flow(
        {"version": V, "nodes": [{"type": "self-built", "id": "x", "params": {"a": 1}}]}, deps
    )
    assert built == [("x", client)]
    assert loader.export_flow(flow)["nodes"] == [
        {"type": "self-built", "id": "x", "params": {"a": 1}}
    ]


def test_a_failing_node_constructor_is_a_config_error_naming_the_node(registry):
    class Broken(Node):
        def __init__(self, **kwargs):
            raise RuntimeError("cannot connect")

    loader = FlowLoader(registry)
    loader.register("broken", Broken)
    with pytest.raises(ConfigError) as info:
        loader.load_flow({"version": V, "nodes": [{"type": "broken", "id": "b"}]})
    assert "$.nodes[0]" in str(info.value) and "'b'" in str(info.value)
    assert "cannot connect" in str(info.value)


def test_two_configs_differing_only_in_params_run_without_code_changes(loader):
    production = three_node_flow()
    experiment = json.loads(json.dumps(production))
    experiment["nodes"][0]["params"]["model"] = "gpt-4-turbo"
    experiment["nodes"][1]["params"]["threshold"] = 1000
    prod_state, _ = run(loader.load_flow(production), {"question": "why?"})
    exp_state, _ = run(loader.load_flow(experiment), {"question": "why?"})
    assert prod_state["answer.ask"] == "[m1@0.2] why?"
    assert exp_state["answer.ask"] == "[gpt-4-turbo@0.2] why?"
    assert prod_state["branch"] == "deep" and exp_state["branch"] == "shallow"


def test_params_are_data_never_executed(loader, tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        "{{maliciousCode}}",
        f"__import__('os').system('touch {marker}')",
        f"${{{{ __import__('os').system('touch {marker}') }}}}",
        "lambda: 1",
    ]
    document = {
        "version": V,
        "nodes": [
            {"type": "record", "id": f"n{i}", "params": {"value": p}, "inputs": {"x": p}}
            for i, p in enumerate(payloads)
        ],
        "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(len(payloads) - 1)],
    }
    flow = loader.load_flow(document)
    state, _ = run(flow)
    assert [state[f"record.n{i}"]["value"] for i in range(len(payloads))] == payloads
    assert not marker.exists()


@pytest.mark.parametrize("type_name", ["os.system", "builtins.eval", "backpackflow.node:Node"])
def test_node_types_are_names_in_the_registry_never_imports(loader, type_name):
    modules_before = set(sys.modules)
    with pytest.raises(ConfigError) as info:
        loader.load_flow({"version": V, "nodes": [{"type": type_name, "id": "x"}]})
    assert "$.nodes[0].type" in str(info.value)
    assert set(sys.modules) == modules_before


def test_limits_from_the_config_bound_the_run(loader):
    document = {
        "version": V,
        "allow_cycles": True,
        "limits": {"max_steps": 3, "timeout": 30},
        "nodes": [{"type": "record", "id": "a"}, {"type": "record", "id": "b"}],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
    }
    flow = loader.load_flow(document)
    assert flow.limits.max_steps == 3 and flow.limits.timeout == 30
    result = flow.execute_sync(Backpack())
    assert result.status == "failed"
    assert isinstance(result.error, GuardrailExceeded)
    assert loader.export_flow(flow)["limits"] == {"max_steps": 3, "timeout": 30}


def test_edge_conditions_and_when_clauses_route_and_export(loader):
    document = {
        "version": V,
        "nodes": [
            {"type": "decide", "id": "route", "params": {"key": "text", "threshold": 3}},
            {"type": "record", "id": "deep"},
            {"type": "record", "id": "shallow"},
            {"type": "record", "id": "audit"},
        ],
        "edges": [
            {"from": "route", "to": "deep", "condition": "long", "when": "branch == 'deep'"},
            {"from": "route", "to": "shallow", "condition": "short"},
            {"from": "route", "to": "audit", "condition": "long", "when": {"var": "branch"}},
        ],
    }
    flow = loader.load_flow(document)
    state, _ = run(flow, {"text": "long enough"})
    assert "record.deep" in state and "record.audit" in state
    assert "record.shallow" not in state
    state, _ = run(flow, {"text": "ab"})
    assert set(state) >= {"record.shallow"} and "record.deep" not in state
    # edges are exported grouped by node and action (the order the runner follows them in)
    edges = document["edges"]
    assert loader.export_flow(flow)["edges"] == [edges[0], edges[2], edges[1]]


def test_a_python_callable_condition_cannot_be_exported(loader):
    a, b = RecordNode(id="a"), RecordNode(id="b")
    a.next(b, when=lambda context: True)
    with pytest.raises(ConfigError, match="Python"):
        loader.export_flow(Flow(a))


def test_a_node_of_an_unregistered_class_cannot_be_exported(loader):
    class Unknown(Node):
        pass

    with pytest.raises(ConfigError, match="no registered node type"):
        loader.export_flow(Flow(Unknown(id="u")))


# ------------------------------------------------------------------------------- to/from config


def test_from_config_and_to_config_come_for_free(loader):
    config = {
        "type": "chat",
        "id": "c",
        "name": "Chatty",
        "namespace": "sales",
        "params": {"model": "gpt-4", "temperature": 0.5},
        "inputs": {"question": "{{ inputs.q }}"},
        "dependencies": ["llm"],
        "retry": {"max_retries": 2},
    }
    deps = DependencyContainer()
    node = ChatNode.from_config(config, deps)
    assert isinstance(node, ChatNode)
    assert (node.id, node.name, node.namespace) == ("c", "Chatty", "sales")
    assert node.params == ChatParams(model="gpt-4", temperature=0.5)
    assert node.inputs == {"question": "{{ inputs.q }}"}
    assert node.deps is deps
    assert node.max_retries == 2
    exported = node.to_config("chat")
    assert isinstance(exported, NodeConfig)
    assert exported.params == {"model": "gpt-4", "temperature": 0.5, "system_prompt": None}
    assert ChatNode.from_config(exported, deps).to_config() == node.to_config()


def test_a_node_built_from_config_remembers_its_type(loader):
    node = ChatNode.from_config({"type": "chat", "id": "c", "params": {"model": "m"}})
    # to_config() without a loader: the config said what type the node is
    assert node.to_config().type == "chat"


def test_node_from_config_rejects_bad_config_with_config_errors():
    with pytest.raises(ConfigError):
        ChatNode.from_config({"type": "chat", "id": "c", "params": {"model": 3}}, None)
    with pytest.raises(ConfigError):
        ChatNode.from_config({"type": "chat", "id": "c", "extra": 1}, None)
    with pytest.raises(ConfigError, match="dependencies"):
        ChatNode.from_config(
            {"type": "chat", "id": "c", "params": {"model": "m"}, "dependencies": "llm"},
            None,
        )


def test_node_to_config_of_a_code_built_node_uses_the_loader_registration(loader):
    node = DecideNode(id="d", params={"key": "k"})
    assert loader.export_flow(Flow(node))["nodes"] == [
        {"type": "decide", "id": "d", "params": {"key": "k", "threshold": 10}}
    ]


# ------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a flow config is a JSON object"),
        ("", "not valid JSON"),
    ],
)
def test_unreadable_documents_are_config_errors(loader, tmp_path, content, expected):
    path = tmp_path / "flow.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as info:
        loader.load_flow(path)
    assert str(path) in str(info.value)


def test_a_missing_file_is_a_config_error(loader, tmp_path):
    with pytest.raises(ConfigError, match="cannot read the flow file"):
        loader.load_flow(tmp_path / "missing.json")


def test_a_file_that_is_not_utf8_is_a_config_error(loader, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"version": "2.0.0", "name": "caf\xe9", "nodes": []}')
    with pytest.raises(ConfigError) as info:
        loader.load_flow(path)
    assert str(path) in str(info.value)


def test_a_path_with_a_nul_byte_is_a_config_error(loader):
    with pytest.raises(ConfigError):
        loader.load_flow("flows/a\x00b.json")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_constants_are_rejected(loader, tmp_path, constant):
    path = tmp_path / "flow.json"
    path.write_text(
        '{"version": "2.0.0", "nodes": [{"type": "record", "id": "r", '
        f'"params": {{"x": {constant}}}}}]}}',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        loader.load_flow(path)
    assert constant.lstrip("-") in str(info.value)


@pytest.mark.parametrize("source", [b"{}", 42, None, ["version"]])
def test_sources_of_the_wrong_kind_are_config_errors(loader, source):
    with pytest.raises(ConfigError, match="a flow config is a path, JSON text, a dict"):
        loader.load_flow(source)


# ------------------------------------------------------------------------------- migrations


def migrate_1_to_1_5(document):
    # FlowTrace-like v1: {"version": "1", "steps": [{"kind": ..., "key": ...}]}
    return {
        "version": "1.5",
        "nodes": [
            {"type": step["kind"], "id": step["key"], "params": step.get("with", {})}
            for step in document["steps"]
        ],
        "links": [
            [a["key"], b["key"]]
            for a, b in zip(document["steps"], document["steps"][1:], strict=False)
        ],
    }


def migrate_1_5_to_2(document):
    return {
        "version": "2.0.0",
        "nodes": document["nodes"],
        "edges": [{"from": a, "to": b} for a, b in document["links"]],
    }


class TestMigrations:
    __name__ = "test_migrations"

    @hookimpl
    def backpackflow_register_migrations(self, register):
        register("1", "1.5", migrate_1_to_1_5, description="steps to nodes")
        register("1.5", V, migrate_1_5_to_2, description="links to edges")
        register("0.9", "1", self.broken)

    @staticmethod
    def broken(document):
        raise KeyError("steps")


OLD = {
    "version": "1",
    "steps": [
        {"kind": "chat", "key": "ask", "with": {"model": "m"}},
        {"kind": "record", "key": "done"},
    ],
}


@pytest.fixture
def migrating_loader():
    return FlowLoader(
        build_registry(plugins=[TestNodes(), TestMigrations(), conditions_plugin], autoload=False)
    )


def test_an_older_version_is_migrated_with_a_warning_naming_both_versions(migrating_loader):
    with pytest.warns(ConfigWarning) as caught:
        flow = migrating_loader.load_flow(OLD)
    messages = [str(w.message) for w in caught]
    assert any("'1'" in m and f"'{V}'" in m and "backpackflow migrate" in m for m in messages)
    state, _ = run(flow, {"question": "q"})
    assert state["answer.ask"] == "[m@0.7] q"
    exported = migrating_loader.export_flow(flow)
    assert exported["version"] == V
    assert exported["edges"] == [{"from": "ask", "to": "done"}]


def test_migration_does_not_change_the_callers_document(migrating_loader):
    document = json.loads(json.dumps(OLD))
    with pytest.warns(ConfigWarning):
        migrating_loader.load_flow(document)
    assert document == OLD


def test_the_current_version_is_not_migrated(migrating_loader):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        migrating_loader.load_flow(three_node_flow())


def test_an_unknown_version_names_the_known_migrations(migrating_loader):
    with pytest.raises(ConfigError) as info:
        migrating_loader.load_flow({"version": "7", "nodes": []})
    message = str(info.value)
    assert "$.version" in message and "'7'" in message and "1->1.5" in message


def test_a_failing_migration_names_its_plugin(migrating_loader):
    with pytest.raises(ConfigError) as info:
        migrating_loader.load_flow({"version": "0.9"})
    message = str(info.value)
    assert "0.9 -> 1" in message and "test_migrations" in message and "KeyError" in message


@pytest.mark.parametrize("version", [None, 2, 2.0, ["2.0.0"]])
def test_a_missing_or_non_string_version_is_a_config_error(loader, version):
    document = three_node_flow()
    if version is None:
        del document["version"]
    else:
        document["version"] = version
    with pytest.raises(ConfigError, match=r"\$\.version"):
        loader.load_flow(document)


def test_without_migrations_an_old_version_is_a_config_error(loader):
    with pytest.raises(ConfigError, match="unsupported flow config version '1'"):
        loader.load_flow(OLD)


# ------------------------------------------------------------------------------- dependencies


def test_declared_dependencies_come_from_plugin_factories_built_lazily(loader):
    document = {
        "version": V,
        "nodes": [{"type": "greet", "id": "hi"}],
        "dependencies": {"llm": {"type": "echo", "config": {"prefix": "* "}}},
    }
    deps = DependencyContainer()
    flow = loader.load_flow(document, deps)
    assert flow.deps is deps
    assert "llm" in deps and deps.has("llm")
    state, _ = run(flow)
    assert state["greeting"] == "* hello"
    assert deps.get("llm") is deps.get("llm")


def test_what_the_caller_registered_wins_over_the_flows_section(loader):
    document = {
        "version": V,
        "nodes": [{"type": "greet", "id": "hi"}],
        "dependencies": {"llm": {"type": "echo", "config": {"prefix": "config: "}}},
    }
    deps = DependencyContainer()
    deps.register("llm", EchoClient("caller: "))
    state, _ = run(loader.load_flow(document, deps))
    assert state["greeting"] == "caller: hello"


def test_a_missing_dependency_is_an_error_naming_the_node(loader):
    document = {"version": V, "nodes": [{"type": "greet", "id": "hi"}]}
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    message = str(info.value)
    assert "$.nodes[0]" in message and "'hi'" in message and "'llm'" in message


def test_a_node_level_dependency_must_be_provided_too(loader):
    document = {
        "version": V,
        "nodes": [{"type": "record", "id": "r", "dependencies": ["cache"]}],
    }
    with pytest.raises(ConfigError, match="'cache'"):
        loader.load_flow(document)
    deps = DependencyContainer()
    deps.register("cache", {})
    flow = loader.load_flow(document, deps)
    assert loader.export_flow(flow)["nodes"][0]["dependencies"] == ["cache"]


def test_dependencies_of_nodes_in_nested_flows_are_checked(loader):
    document = {
        "version": V,
        "nodes": [
            {"type": "flow", "id": "sub", "params": {"nodes": [{"type": "greet", "id": "g"}]}}
        ],
    }
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.params\.nodes\[0\]"):
        loader.load_flow(document)


@pytest.mark.parametrize(
    ("dependencies", "expected"),
    [
        ({"llm": {"type": "nope"}}, "$.dependencies.llm.type: unknown dependency factory 'nope'"),
        ({"llm": {"type": "echo", "config": {"prefix": 3}}}, "$.dependencies.llm.config.prefix"),
        ({"llm": {"type": "echo", "config": {"colour": "x"}}}, "$.dependencies.llm.config"),
        ({"llm": "echo", "ev": {"type": "EventStreamer", "config": {"bogus": 1}}}, "bogus"),
    ],
)
def test_bad_dependency_sections_are_config_errors(loader, dependencies, expected):
    document = {
        "version": V,
        "nodes": [{"type": "greet", "id": "hi"}],
        "dependencies": dependencies,
    }
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert expected in str(info.value)


def test_an_event_streamer_dependency_is_configurable_from_the_flow(loader):
    document = {
        "version": V,
        "nodes": [{"type": "record", "id": "r", "dependencies": ["event_streamer"]}],
        "dependencies": {
            "event_streamer": {"type": "EventStreamer", "config": {"history_size": 5}}
        },
    }
    deps = DependencyContainer()
    loader.load_flow(document, deps)
    streamer = deps.get("event_streamer")
    assert isinstance(streamer, EventStreamer)


def test_all_loader_errors_are_project_errors(loader):
    for bad in [{"version": V}, {"version": V, "nodes": [{"type": "chat", "id": "x"}]}]:
        with pytest.raises(BackpackFlowError):
            loader.load_flow(bad)


def test_validate_reports_without_raising(loader):
    report = loader.validate(three_node_flow())
    assert report.ok and report.errors == [] and report.warnings == []
    bad = three_node_flow()
    bad["nodes"][0]["params"]["temperature"] = 5
    report = loader.validate(bad)
    assert not report.ok
    assert report.errors == ["$.nodes[0].params.temperature: 5 is greater than the maximum of 2"]


def test_a_dict_source_is_read_as_a_path_only_when_it_is_a_string(loader, tmp_path):
    # a JSON text that starts with whitespace is still JSON text, not a file name
    text = "\n  " + json.dumps(three_node_flow())
    assert isinstance(loader.load_flow(text), Flow)
    path = Path(tmp_path / "x.json")
    path.write_text(json.dumps(three_node_flow()), encoding="utf-8")
    assert isinstance(loader.load_flow(str(path)), Flow)
