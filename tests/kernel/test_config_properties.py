"""Property tests of flows as data: random valid configs load, run and export back stably
(``export(load(x))`` is a fixed point after one normalization and keeps what ``x`` said), and
random invalid documents only ever fail with the project's own errors."""

from __future__ import annotations

import copy
import enum
import json
import warnings
from typing import Annotated, Any, Literal

import attrs
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import Backpack, BackpackFlowError, GuardrailExceeded, Node, hookimpl
from backpackflow.config import CURRENT_VERSION, structure_params
from backpackflow.loader import ConfigWarning, FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import DependencyContainer

V = CURRENT_VERSION

# ------------------------------------------------------------------------------- node types


class Mode(str, enum.Enum):
    FAST = "fast"
    DEEP = "deep"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Target:
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=12)]
    weight: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0


@attrs.frozen
class LlmParams:
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    mode: Mode = Mode.FAST
    level: Level = Level.LOW
    stop: list[Annotated[str, msgspec.Meta(max_length=5)]] = attrs.field(factory=list)
    system_prompt: str | None = None


@attrs.frozen
class ToolParams:
    command: Literal["fetch", "store", "search"]
    target: Target | None = None
    targets: list[Target] = attrs.field(factory=list)
    options: dict[str, int] = attrs.field(factory=dict)
    enabled: bool = True


class LlmNode(Node):
    Params = LlmParams

    def exec(self, prep_res):
        return {"model": self.params.model}


class ToolNode(Node):
    Params = ToolParams

    def post(self, backpack, prep_res, exec_res):
        return "yes" if self.params.enabled else "no"


class PlainNode(Node):
    def post(self, backpack, prep_res, exec_res):
        backpack.pack(f"ran.{self.id}", True)


PARAMS = {"llm": LlmParams, "tool": ToolParams}


class Nodes:
    __name__ = "property_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("llm", LlmNode)
        register("tool", ToolNode)
        register("plain", PlainNode)

    @hookimpl
    def backpackflow_register_event_sinks(self, register):
        # options-free sinks: the generated sink options are free-form
        for name in ("file", "console"):
            register(name, lambda options: None)


REGISTRY = build_registry(plugins=[Nodes(), conditions_plugin], autoload=False)


def new_loader() -> FlowLoader:
    return FlowLoader(REGISTRY)


# ------------------------------------------------------------------------------- strategies

# no "$": "${NAME}" would be an environment reference (tested in test_env_refs)
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="$"), max_size=10
)
short_text = st.text(alphabet="abcxyz -_", min_size=1, max_size=8)
ids = st.from_regex(r"[a-z][a-z0-9_-]{0,5}", fullmatch=True)
namespaces = st.from_regex(r"[a-z]{1,4}(\.[a-z]{1,4}){0,2}", fullmatch=True)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)

CEL = [
    "action == 'yes'",
    "action != 'no' && size(state) >= 0",
    "size(inputs) == 0",
    "(len(action) > 3 ? 'deep' : 'shallow') == 'deep'",
    "true",
    "action in ['default', 'yes']",
]
LOGIC = [
    {"==": [{"var": "action"}, "yes"]},
    {"!": {"var": "missing"}},
    {"and": [True, {"var": "action"}]},
    {"in": [{"var": "action"}, ["default", "yes"]]},
    {"or": [{">": [{"var": "n"}, 2]}, {"<=": [1, 2]}]},
]
whens = st.none() | st.sampled_from(CEL) | st.sampled_from(LOGIC)


def optional(strategy):
    return st.none() | strategy


targets = st.builds(
    lambda name, weight: {"name": name, **({} if weight is None else {"weight": weight})},
    short_text,
    optional(st.integers(0, 1000)),
)


@st.composite
def llm_params(draw):
    params: dict[str, Any] = {"model": draw(short_text)}
    extras = {
        "temperature": st.floats(0, 2) | st.integers(0, 2),
        "max_tokens": optional(st.integers(1, 100_000)),
        "mode": st.sampled_from(["fast", "deep"]),
        "level": st.sampled_from([1, 2]),
        "stop": st.lists(st.text(max_size=5, alphabet="abc\n."), max_size=3),
        "system_prompt": optional(text),
    }
    for key in draw(st.sets(st.sampled_from(sorted(extras)))):
        params[key] = draw(extras[key])
    return params


@st.composite
def tool_params(draw):
    params: dict[str, Any] = {"command": draw(st.sampled_from(["fetch", "store", "search"]))}
    extras = {
        "target": optional(targets),
        "targets": st.lists(targets, max_size=2),
        "options": st.dictionaries(text, st.integers(-5, 5), max_size=2),
        "enabled": st.booleans(),
    }
    for key in draw(st.sets(st.sampled_from(sorted(extras)))):
        params[key] = draw(extras[key])
    return params


def node_strategy(node_id: str, dependency_names: list[str], depth: int):
    kinds = ["llm", "tool", "plain"] + (["flow"] if depth < 2 else [])

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(kinds))
        node: dict[str, Any] = {"type": kind, "id": node_id}
        if kind == "flow":
            node["params"] = draw(graph_strategy(dependency_names, depth + 1))
        elif kind == "llm":
            node["params"] = draw(llm_params())
        elif kind == "tool":
            node["params"] = draw(tool_params())
        elif draw(st.booleans()):
            node["params"] = draw(st.dictionaries(text, json_values, max_size=3))
        if draw(st.booleans()):
            node["name"] = "N " + draw(text)
        if draw(st.booleans()):
            node["namespace"] = draw(namespaces)
        if kind != "flow":
            if draw(st.booleans()):
                node["inputs"] = draw(st.dictionaries(short_text, json_values, max_size=2))
            if dependency_names and draw(st.booleans()):
                node["dependencies"] = draw(st.lists(st.sampled_from(dependency_names), max_size=2))
            if draw(st.booleans()):
                retry: dict[str, Any] = {"max_retries": draw(st.integers(1, 4))}
                if draw(st.booleans()):
                    retry["wait"] = draw(st.sampled_from([0, 0.0, 0.5]))
                if draw(st.booleans()):
                    retry["backoff"] = draw(st.sampled_from([1, 1.5, 2.0]))
                if draw(st.booleans()):
                    retry["max_wait"] = draw(optional(st.sampled_from([0.0, 1.0, 2])))
                node["retry"] = retry
        return node

    return build()


def graph_strategy(dependency_names: list[str], depth: int):
    """A graph level: ``nodes`` and acyclic ``edges`` (plus ``entry``/``parallel``)."""

    @st.composite
    def build(draw):
        node_ids = draw(st.lists(ids, min_size=1, max_size=4 if depth == 0 else 2, unique=True))
        nodes = [draw(node_strategy(i, dependency_names, depth)) for i in node_ids]
        edges = []
        if len(node_ids) > 1:
            pairs = st.tuples(
                st.integers(0, len(node_ids) - 1), st.integers(0, len(node_ids) - 1)
            ).filter(lambda p: p[0] < p[1])
            for a, b in draw(st.lists(pairs, max_size=5)):
                edge: dict[str, Any] = {"from": node_ids[a], "to": node_ids[b]}
                condition = draw(optional(st.sampled_from(["default", "yes", "no"])))
                if condition is not None:
                    edge["condition"] = condition
                when = draw(whens)
                if when is not None:
                    edge["when"] = when
                edges.append(edge)
        graph: dict[str, Any] = {"nodes": nodes, "edges": edges}
        if draw(st.booleans()):
            graph["entry"] = draw(st.sampled_from(node_ids))
        if draw(st.booleans()):
            graph["parallel"] = draw(st.booleans())
        return graph

    return build()


@st.composite
def flow_configs(draw):
    dependencies: dict[str, Any] = {}
    if draw(st.booleans()):
        dependencies["events"] = draw(
            st.sampled_from(
                [
                    "EventStreamer",
                    {"type": "EventStreamer"},
                    {"type": "EventStreamer", "config": {"history_size": 50}},
                ]
            )
        )
    document: dict[str, Any] = {"version": V}
    document.update(draw(graph_strategy(sorted(dependencies), 0)))
    if dependencies:
        document["dependencies"] = dependencies
    optional_fields = {
        "name": text,
        "description": text,
        "namespace": namespaces,
        "allow_cycles": st.booleans(),
        "limits": st.fixed_dictionaries(
            {},
            optional={
                "max_steps": st.integers(1, 1000),
                "timeout": st.floats(1, 1000),
                "max_tokens": st.integers(1, 10**6),
                "max_cost": st.sampled_from(["0", "0.50", "12.345"]),
            },
        ),
        "inputs": st.dictionaries(
            ids,  # input names are Backpack keys
            st.fixed_dictionaries(
                {},
                optional={
                    "description": text,
                    "default": json_values,
                    "required": st.booleans(),
                },
            ),
            max_size=2,
        ),
        "sinks": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["file", "console"])},
                optional={"options": st.dictionaries(short_text, json_scalars, max_size=2)},
            ),
            max_size=2,
        ),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional_fields)))):
        document[key] = draw(optional_fields[key])
    return document


def load_quietly(loader: FlowLoader, source: Any, deps: DependencyContainer | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        return loader.load_flow(source, deps)


# ------------------------------------------------------------------------------- valid configs


def edge_multiset(edges: list[dict[str, Any]]) -> list[str]:
    return sorted(
        json.dumps(
            [e["from"], e["to"], e.get("condition", "default"), e.get("when")], sort_keys=True
        )
        for e in edges
    )


def assert_same_graph(original: dict[str, Any], exported: dict[str, Any]) -> None:
    """What the original said survives the export (up to normalization)."""
    assert [n["id"] for n in exported["nodes"]] == [n["id"] for n in original["nodes"]]
    assert edge_multiset(exported["edges"]) == edge_multiset(original["edges"])
    assert exported.get("entry", exported["nodes"][0]["id"]) == original.get(
        "entry", original["nodes"][0]["id"]
    )
    assert bool(exported.get("parallel")) == bool(original.get("parallel"))
    for before, after in zip(original["nodes"], exported["nodes"], strict=True):
        assert after["type"] == before["type"]
        assert after.get("namespace") == before.get("namespace")
        assert after.get("inputs", {}) == before.get("inputs", {})
        assert after.get("dependencies", []) == before.get("dependencies", [])
        if before["type"] == "flow":
            assert_same_graph(before["params"], after["params"])
        elif before["type"] in PARAMS:
            cls = PARAMS[before["type"]]
            assert structure_params(cls, after["params"], where="x") == structure_params(
                cls, before["params"], where="x"
            )
        else:
            assert after.get("params", {}) == before.get("params", {})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_configs())
def test_random_valid_configs_load_and_round_trip_byte_identically(document):
    loader = new_loader()
    original = copy.deepcopy(document)
    flow = load_quietly(loader, document)
    assert document == original  # loading never changes the caller's document
    normalized = loader.export_json(flow)
    assert_same_graph(original, json.loads(normalized))
    for key in ("name", "description", "namespace", "dependencies", "limits", "inputs", "sinks"):
        if key in original and original[key] not in ({}, []):
            assert json.loads(normalized)[key] == original[key], key
    # a fixed point: load -> export -> load -> export is stable, whatever the source form
    reloaded = load_quietly(loader, normalized)
    assert loader.export_json(reloaded) == normalized
    assert loader.export_json(load_quietly(loader, json.loads(normalized))) == normalized
    assert loader.export_flow(reloaded) == json.loads(normalized)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_configs())
def test_random_valid_configs_run(document):
    flow = load_quietly(new_loader(), document)
    required = {
        name: "given"
        for name, spec in document.get("inputs", {}).items()
        if spec.get("required") and spec.get("default") is None
    }
    result = flow.execute_sync(Backpack(), inputs=required)
    assert result.status == "succeeded" or isinstance(result.error, GuardrailExceeded), result.error


# ------------------------------------------------------------------------------- invalid documents


def object_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every dict and list in ``value`` (where a mutation can happen)."""
    found = []
    if isinstance(value, dict):
        found.append(path)
        for key, item in value.items():
            found.extend(object_paths(item, (*path, key)))
    elif isinstance(value, list):
        found.append(path)
        for i, item in enumerate(value):
            found.extend(object_paths(item, (*path, i)))
    return found


def at(document: Any, path: tuple) -> Any:
    for part in path:
        document = document[part]
    return document


BAD_IDS = ["", " ", "-a", "a b", "é", "a/b", 3, None, True, ["a"], {"id": "a"}]
BAD_WHENS = [
    "",
    "branch ==",
    "foo(1)",
    "__import__('os')",
    "(((",
    {},
    {"nope": []},
    {"var": "a", "x": 1},
    {"log": "x"},
    3,
    [1],
    True,
]


def mutate(draw, document: Any) -> Any:
    """``document`` with one random change (earlier changes may have broken its shape)."""
    if not isinstance(document, dict):
        return document
    kind = draw(
        st.sampled_from(
            [
                "replace",
                "unknown_key",
                "delete_key",
                "bad_id",
                "bad_type",
                "bad_edge",
                "cycle",
                "bad_when",
                "duplicate",
                "version",
                "drop_node",
                "bad_param",
            ]
        )
    )
    raw_nodes = document.get("nodes")
    nodes = [n for n in raw_nodes if isinstance(n, dict)] if isinstance(raw_nodes, list) else []
    if not isinstance(document.get("edges", []), list):
        document["edges"] = []
    edges = document.setdefault("edges", [])
    if kind == "replace":
        container = at(document, draw(st.sampled_from(object_paths(document))))
        if container:
            keys = sorted(container) if isinstance(container, dict) else range(len(container))
            container[draw(st.sampled_from(keys))] = draw(json_values)
    elif kind == "unknown_key":
        dicts = [p for p in object_paths(document) if isinstance(at(document, p), dict)]
        at(document, draw(st.sampled_from(dicts)))[draw(short_text) + "_x"] = draw(json_values)
    elif kind == "delete_key":
        containers = [p for p in object_paths(document) if at(document, p)]
        container = at(document, draw(st.sampled_from(containers)))
        if isinstance(container, dict):
            del container[draw(st.sampled_from(sorted(container)))]
        else:
            del container[draw(st.integers(0, len(container) - 1))]
    elif not nodes:
        document["nodes"] = draw(json_values)
    elif kind == "bad_id":
        draw(st.sampled_from(nodes))["id"] = draw(st.sampled_from(BAD_IDS))
    elif kind == "bad_type":
        draw(st.sampled_from(nodes))["type"] = draw(
            st.sampled_from(["nope", "", "os.system", 3, None, ["llm"], "Flow"])
        )
    elif kind == "bad_edge":
        node_ids = [n.get("id") for n in nodes]
        edges.append(
            {
                "from": draw(st.sampled_from([*node_ids, "ghost", 1, None])),
                "to": draw(st.sampled_from([*node_ids, "ghost", [], ""])),
                **draw(st.fixed_dictionaries({}, optional={"condition": json_scalars})),
            }
        )
    elif kind == "cycle":
        document["allow_cycles"] = False
        first, last = nodes[0].get("id"), draw(st.sampled_from(nodes)).get("id")
        edges.extend([{"from": first, "to": last}, {"from": last, "to": first}])
    elif kind == "bad_when":
        if not any(isinstance(e, dict) for e in edges):
            edges.append({"from": nodes[0].get("id"), "to": nodes[-1].get("id")})
        edge = draw(st.sampled_from([e for e in edges if isinstance(e, dict)]))
        edge["when"] = draw(st.sampled_from(BAD_WHENS))
    elif kind == "duplicate":
        raw_nodes.append(copy.deepcopy(draw(st.sampled_from(nodes))))
    elif kind == "version":
        document["version"] = draw(st.sampled_from(["1", "2.0", "", "3.0.0", 2, None, ["2.0.0"]]))
    elif kind == "drop_node":
        raw_nodes.remove(draw(st.sampled_from(nodes)))
    elif kind == "bad_param":
        node = draw(st.sampled_from(nodes))
        params = node.setdefault("params", {})
        if isinstance(params, dict):
            key = draw(st.sampled_from(PARAM_KEYS))
            params[key] = draw(st.sampled_from([5, -1, 10**7, "x", None, [], {}, 2.5, True, "ok"]))
    return document


PARAM_KEYS = [
    "model",
    "temperature",
    "max_tokens",
    "level",
    "mode",
    "command",
    "target",
    "targets",
    "options",
    "nodes",
    "edges",
    "entry",
    "zzz",
]


@st.composite
def invalid_documents(draw):
    document = draw(flow_configs())
    for _ in range(draw(st.integers(1, 3))):
        document = mutate(draw, document)
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_documents())
def test_invalid_documents_only_raise_project_errors(document):
    loader = new_loader()
    report = loader.validate(copy.deepcopy(document))  # never raises
    try:
        flow = load_quietly(loader, document, DependencyContainer())
    except BackpackFlowError as exc:
        assert not report.ok or "dependenc" in str(exc)
        assert str(exc)
        return
    # the mutation left a valid flow: it must behave like one
    assert report.ok
    normalized = loader.export_json(flow)
    assert loader.export_json(load_quietly(loader, normalized)) == normalized


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60) | json_values.map(json.dumps))
def test_arbitrary_text_only_raises_project_errors(source):
    loader = new_loader()
    try:
        load_quietly(loader, "{" + source)
    except BackpackFlowError:
        pass
    try:
        load_quietly(loader, source)
    except BackpackFlowError:
        pass
