"""The conditions plugin: edge ``when`` clauses as CEL strings (``"branch == 'deep'"``) and JSON
Logic objects. Invalid expressions fail at load naming the edge, evaluation errors at run time
name the edge, and nothing in a condition is ever executed as code."""

from __future__ import annotations

import pytest

import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import Backpack, ConfigError, EventStreamer, FlowError, Node, hookimpl
from backpackflow.config import CURRENT_VERSION
from backpackflow.loader import CompiledCondition, FlowLoader, compile_condition
from backpackflow.plugins import build_registry
from backpackflow_conditions.plugin import ConditionError, compile_cel, compile_json_logic

V = CURRENT_VERSION


class Emit(Node):
    """Returns its ``output`` param from exec (the value conditions see) and its ``action``."""

    def exec(self, prep_res):
        return self.params.get("output")

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(f"ran.{self.id}", True)
        return self.params.get("action")


class Nodes:
    __name__ = "condition_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("emit", Emit)


@pytest.fixture
def registry():
    return build_registry(plugins=[Nodes(), conditions_plugin], autoload=False)


@pytest.fixture
def loader(registry):
    return FlowLoader(registry)


def routed(loader, output, whens, *, action=None, inputs=None, state=None):
    """Load a flow whose node ``src`` emits ``output`` with an edge per ``when``; return the ids
    of the targets that ran."""
    document = {
        "version": V,
        "nodes": [
            {"type": "emit", "id": "src", "params": {"output": output, "action": action}},
            *({"type": "emit", "id": f"t{i}"} for i in range(len(whens))),
        ],
        "edges": [
            {
                "from": "src",
                "to": f"t{i}",
                "when": when,
                **({"condition": action} if action else {}),
            }
            for i, when in enumerate(whens)
        ],
    }
    flow = loader.load_flow(document)
    backpack = Backpack(state or {})
    flow.run(backpack, inputs=inputs)
    return sorted(k.split(".", 1)[1] for k in backpack.to_dict() if k.startswith("ran.t"))


# ------------------------------------------------------------------------------- CEL


@pytest.mark.parametrize("expression", ["branch=='deep'", "branch == 'deep'", 'branch == "deep"'])
def test_flowtrace_style_branch_expressions_route(loader, expression):
    other = expression.replace("deep", "shallow")
    assert routed(loader, {"branch": "deep"}, [expression, other]) == ["t0"]
    assert routed(loader, {"branch": "shallow"}, [expression, other]) == ["t1"]


def test_the_flowtrace_length_rule_with_len_and_the_ternary():
    rule = compile_cel("len(text) > 2000 ? 'deep' : 'shallow'")
    assert rule({"text": "x" * 2001}) == "deep"
    assert rule({"text": "x" * 2000}) == "shallow"
    assert compile_cel("size(text) == len(text)")({"text": "abc"}) is True


def test_the_length_rule_as_an_edge_condition(loader):
    deep = "(len(text) > 2000 ? 'deep' : 'shallow') == 'deep'"
    shallow = "len(text) <= 2000"
    assert routed(loader, {"text": "x" * 2500}, [deep, shallow]) == ["t0"]
    assert routed(loader, {"text": "short"}, [deep, shallow]) == ["t1"]


def test_cel_sees_output_action_inputs_state_and_earlier_outputs(loader):
    whens = [
        "output.score >= 3 && action == 'go'",
        "inputs.user == 'ada'",
        "state.plan == 'pro'",
        "node.src.output.score == 3",
        "score == 4",
    ]
    ran = routed(
        loader,
        {"score": 3},
        whens,
        action="go",
        inputs={"user": "ada"},
        state={"plan": "pro"},
    )
    assert ran == ["t0", "t1", "t2", "t3"]


def test_cel_standard_functions_and_macros_compile_and_run():
    context = {"tags": ["a", "bb"], "name": "research", "meta": {"k": 1}}
    for expression in [
        "tags.all(t, size(t) > 0)",
        "tags.exists(t, t == 'bb')",
        "tags.exists_one(t, t.startsWith('b'))",
        "tags.map(t, size(t)) == [1, 2]",
        "tags.filter(t, t.endsWith('b')) == ['bb']",
        "has(meta.k) && !has(meta.z)",
        "name.contains('search') && name.matches('^re')",
        "int('3') == 3 && string(3) == '3' && double(1) == 1.0",
        "type(name) == string",
        "name in ['research', 'other']",
    ]:
        assert compile_cel(expression)(context) is True, expression


@pytest.mark.parametrize(
    "expression",
    ["branch ==", "branch == 'deep", "((branch)", "a ? b", "@", "branch = 'deep'", "a &&& b"],
)
def test_cel_syntax_errors_fail_at_load_naming_the_edge(loader, expression):
    document = {
        "version": V,
        "nodes": [{"type": "emit", "id": "a"}, {"type": "emit", "id": "b"}],
        "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "b", "when": expression}],
    }
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("$.edges[1].when: invalid cel condition")
    assert "CEL syntax error" in info.value.problems[0]


@pytest.mark.parametrize("expression", ["foo(1) == 1", "x.frobnicate() == 1", "eval('1') == 1"])
def test_calls_of_unknown_cel_functions_fail_at_load(loader, expression):
    document = {
        "version": V,
        "nodes": [{"type": "emit", "id": "a"}, {"type": "emit", "id": "b"}],
        "edges": [{"from": "a", "to": "b", "when": expression}],
    }
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert info.value.problems[0].startswith("$.edges[0].when: invalid cel condition")
    assert "unknown CEL function" in info.value.problems[0]


def test_cel_evaluation_errors_at_run_time_name_the_edge(loader):
    document = {
        "version": V,
        "nodes": [
            {"type": "emit", "id": "a", "params": {"output": {"n": 1}}},
            {"type": "emit", "id": "b"},
        ],
        "edges": [{"from": "a", "to": "b", "when": "missing_name == 1"}],
    }
    flow = loader.load_flow(document)
    result = flow.execute_sync(Backpack(), events=EventStreamer())
    assert result.status == "failed"
    assert isinstance(result.error, FlowError)
    message = str(result.error)
    assert "edge 'a' -> 'b'" in message
    assert "missing_name == 1" in message and "missing_name" in message
    with pytest.raises(FlowError, match="edge 'a' -> 'b'"):
        flow.run(Backpack())


def test_cel_division_by_zero_is_an_evaluation_error():
    condition = compile_cel("10 / n > 1")
    with pytest.raises(ConditionError, match="CEL evaluation failed"):
        condition({"n": 0})


def test_cel_compares_json_integers_with_decimals():
    assert compile_cel("confidence > 0.7")({"confidence": 1}) is True


# ------------------------------------------------------------------------------- JSON Logic


VIP = {
    "and": [
        {"==": [{"var": "intent"}, "sales"]},
        {"==": [{"var": "vipCustomer"}, True]},
    ]
}
REGULAR = {"==": [{"var": "intent"}, "sales"]}
CONFIDENT = {"and": [{"==": [{"var": "intent"}, "purchase"]}, {">": [{"var": "confidence"}, 0.7]}]}


def test_the_prd_json_logic_routing_example(loader):
    vip = {"intent": "sales", "confidence": 0.92, "vipCustomer": True}
    regular = {"intent": "sales", "confidence": 0.92, "vipCustomer": False}
    support = {"intent": "support", "vipCustomer": True}
    assert routed(loader, vip, [VIP, REGULAR]) == ["t0", "t1"]
    assert routed(loader, regular, [VIP, REGULAR]) == ["t1"]
    assert routed(loader, support, [VIP, REGULAR]) == []


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"intent": "purchase", "confidence": 0.9}, True),
        ({"intent": "purchase", "confidence": 1}, True),
        ({"intent": "purchase", "confidence": 0.5}, False),
        ({"intent": "browse", "confidence": 0.9}, False),
    ],
)
def test_json_logic_and_var_and_comparisons(output, expected):
    assert bool(compile_json_logic(CONFIDENT)(output)) is expected


def test_json_logic_reaches_nested_context_with_dotted_vars():
    condition = compile_json_logic(
        {
            "or": [
                {"==": [{"var": "state.plan"}, "pro"]},
                {"in": [{"var": "inputs.user"}, ["ada", "grace"]]},
            ]
        }
    )
    assert condition({"state": {"plan": "free"}, "inputs": {"user": "grace"}})
    assert not condition({"state": {"plan": "free"}, "inputs": {"user": "bob"}})


@pytest.mark.parametrize(
    ("logic", "expected"),
    [
        ({"nope": [1, 2]}, "unknown JSON Logic operation 'nope'"),
        (
            {"and": [{"==": [1, 1]}, {"exec": ["rm -rf /"]}]},
            "$.and[1]: unknown JSON Logic operation",
        ),
        ({"==": [1, 1], "!=": [1, 2]}, "exactly one key"),
        ({}, "exactly one key"),
        ({"log": ["secret"]}, "side effects"),
    ],
)
def test_invalid_json_logic_fails_at_load_naming_the_edge(loader, logic, expected):
    document = {
        "version": V,
        "nodes": [{"type": "emit", "id": "a"}, {"type": "emit", "id": "b"}],
        "edges": [{"from": "a", "to": "b", "when": logic}],
    }
    with pytest.raises(ConfigError) as info:
        loader.load_flow(document)
    assert info.value.problems[0].startswith("$.edges[0].when: invalid jsonlogic condition")
    assert expected in info.value.problems[0]


def test_json_logic_never_writes_to_stdout(capsys):
    with pytest.raises(ConditionError):
        compile_json_logic({"log": [{"var": "secret"}]})
    assert capsys.readouterr().out == ""


def test_json_logic_of_a_non_dict_output_sees_it_as_output(loader):
    assert routed(loader, 7, [{">": [{"var": "output"}, 5]}, {"<": [{"var": "output"}, 5]}]) == [
        "t0"
    ]


# ------------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('touch {marker}') == 0",
        "().__class__.__bases__[0].__subclasses__() == []",
        "open('{marker}', 'w') == null",
        'exec(\'open("{marker}", "w")\') == null',
    ],
)
def test_python_code_in_a_condition_is_never_executed(loader, tmp_path, source):
    marker = tmp_path / "pwned"
    expression = source.format(marker=marker)
    try:
        condition = compile_condition(expression, loader.registry, where="$.edges[0].when")
    except ConfigError:
        pass  # refused at load: fine
    else:
        with pytest.raises(ConditionError):
            condition({"x": 1})
    assert not marker.exists()


def test_json_logic_strings_are_data(loader, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    condition = compile_json_logic({"==": [{"var": "text"}, payload]})
    assert condition({"text": payload}) is True
    assert not marker.exists()


# ------------------------------------------------------------------------------- compiled form


def test_compiled_conditions_remember_their_source_and_language(registry):
    cel = compile_condition("a == 1", registry, where="w")
    logic = compile_condition({"==": [{"var": "a"}, 1]}, registry, where="w")
    assert isinstance(cel, CompiledCondition) and cel.language == "cel"
    assert cel.source == "a == 1" and cel({"a": 1}) is True
    assert logic.language == "jsonlogic" and logic({"a": 1}) is True
    assert "a == 1" in repr(cel)


def test_conditions_export_exactly_as_written(loader):
    whens = ["branch=='deep'", {"and": [{"var": "a"}, {"!": {"var": "b"}}]}]
    document = {
        "version": V,
        "nodes": [{"type": "emit", "id": "a"}, {"type": "emit", "id": "b"}],
        "edges": [{"from": "a", "to": "b", "when": w} for w in whens],
    }
    flow = loader.load_flow(document)
    assert [e["when"] for e in loader.export_flow(flow)["edges"]] == whens


@pytest.mark.parametrize("source", [3, ["a"], None, True])
def test_a_condition_of_another_kind_is_a_config_error(registry, source):
    with pytest.raises(ConfigError, match="expression string or a JSON Logic object"):
        compile_condition(source, registry, where="$.edges[0].when")


def test_the_plugin_registers_through_its_entry_point():
    registry = build_registry(autoload=True)
    info = registry.plugins.get("conditions")
    assert info is not None and info.status == "loaded", info
    assert registry.condition_language("cel").plugin == "conditions"
    assert registry.condition_language("jsonlogic").source_type is dict
