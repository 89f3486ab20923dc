"""The ``router`` node: a CEL or JSON Logic rule sets ``branch``, visible in its events, and
edges gate on it; rule errors name the node."""

from __future__ import annotations

import pytest
from nodes_support import SHORT_PROMPT, flow_doc, llm, load, router, run_flow

from backpackflow import Backpack
from backpackflow.errors import ConfigError

SIZE_RULE = "inputs.n > 10 ? 'big' : 'small'"


def gated(rule, **params):
    """decide -> big (when branch == 'big') | small (when branch == 'small')."""
    return flow_doc(
        router("decide", rule, **params),
        llm("big", SHORT_PROMPT),
        llm("small", SHORT_PROMPT + " Small."),
        edges=[
            {"from": "decide", "to": "big", "when": "branch == 'big'"},
            {"from": "decide", "to": "small", "when": "branch == 'small'"},
        ],
    )


@pytest.mark.parametrize(("n", "branch"), [(20, "big"), (3, "small")])
def test_the_branch_gates_the_edges_both_ways(n, branch):
    ran = run_flow(gated(SIZE_RULE, branches=["big", "small"]), inputs={"n": n})

    assert ran.result.ok, ran.result.error
    assert ran.ran() == ["decide", branch]
    assert ran.one("exec_complete", "decide")["exec_result"] == {
        "branch": branch,
        "rule": SIZE_RULE,
        "value": branch,
    }
    assert ran.one("node_end", "decide")["writes"] == ["decide"]
    assert ran.result.backpack.peek("decide") == branch
    assert ran.types("decide") == [
        "node_start",
        "prep_complete",
        "exec_complete",
        "backpack_pack",
        "node_end",
    ]


@pytest.mark.parametrize(("n", "branch"), [(20, "big"), (3, "small")])
def test_a_json_logic_rule(n, branch):
    rule = {"if": [{">": [{"var": "inputs.n"}, 10]}, "big", "small"]}
    ran = run_flow(gated(rule), inputs={"n": n})
    assert ran.ran() == ["decide", branch]
    assert ran.one("exec_complete", "decide")["exec_result"]["rule"] == rule


def test_a_boolean_rule_gives_true_or_false():
    doc = flow_doc(
        router("check", "inputs.n > 10"),
        llm("yes", SHORT_PROMPT),
        edges=[{"from": "check", "to": "yes", "when": "branch == 'true'"}],
    )
    assert run_flow(doc, inputs={"n": 11}).ran() == ["check", "yes"]
    ran = run_flow(doc, inputs={"n": 1})
    assert ran.ran() == ["check"]
    assert ran.one("exec_complete")["exec_result"]["branch"] == "false"


def test_the_rule_sees_bindings_node_outputs_and_state():
    backpack = Backpack()
    backpack.pack("mode", "careful", node_id="setup")
    doc = flow_doc(
        llm("first", SHORT_PROMPT),
        router(
            "decide",
            "size(text) > 20 && state.mode == 'careful' && node.first.output == text"
            " ? 'long' : 'short'",
            inputs={"text": "{{ node.first.output }}"},
        ),
    )
    ran = run_flow(doc, backpack=backpack)
    assert ran.result.ok, ran.result.error
    assert ran.one("exec_complete", "decide")["exec_result"]["branch"] == "long"


def test_the_default_is_taken_when_the_rule_gives_null():
    doc = flow_doc(router("decide", "inputs.n > 10 ? 'big' : null", default="small"))
    assert run_flow(doc, inputs={"n": 1}).result.backpack.peek("decide") == "small"
    assert run_flow(doc, inputs={"n": 99}).result.backpack.peek("decide") == "big"


def test_prep_complete_is_a_snapshot_taken_before_the_rule_ran():
    backpack = Backpack()
    backpack.pack("mode", "careful", node_id="setup")
    doc = flow_doc(llm("first", SHORT_PROMPT), router("decide", "state.mode"))
    ran = run_flow(doc, backpack=backpack)
    assert ran.result.ok, ran.result.error

    prep = ran.one("prep_complete", "decide")
    # the outputs as they were when the router prepared: its own output did not exist yet
    assert sorted(prep["prep_result"]["node"]) == ["first"]
    assert prep["prep_result"]["state"]["mode"] == "careful"
    # every Backpack read the router made is recorded with its prep
    unpacked = {p["key"] for p in ran.of("backpack_unpack", "decide")}
    assert "mode" in unpacked
    assert set(prep["reads"]) == unpacked


# ------------------------------------------------------------------------------- errors


def test_a_branch_outside_branches_fails_naming_the_node():
    ran = run_flow(gated("'sideways'", branches=["big", "small"]))
    assert ran.result.status == "failed"
    error = ran.one("error", "decide")
    assert error["error_type"] == "RoutingError"
    assert "node 'decide'" in error["error"]
    assert "'sideways'" in error["error"] and "['big', 'small']" in error["error"]
    assert ran.ran() == ["decide"]


def test_a_rule_that_fails_to_evaluate_names_the_node_and_the_rule():
    ran = run_flow(gated("inputs.missing > 1 ? 'big' : 'small'"), inputs={"n": 1})
    assert ran.result.status == "failed"
    error = ran.one("error", "decide")
    assert error["phase"] == "exec"
    assert "node 'decide'" in error["error"]
    assert "inputs.missing > 1" in error["error"]


def test_a_rule_that_gives_no_branch_name_fails():
    ran = run_flow(gated("[1, 2]"))
    assert "must give a branch name" in ran.error and "node 'decide'" in ran.error


def test_a_rule_with_a_syntax_error_is_a_load_time_error_naming_the_node():
    with pytest.raises(ConfigError) as caught:
        load(gated("inputs.n >"))
    assert "node 'decide' params.rule" in str(caught.value)


def test_an_unknown_json_logic_operation_is_a_load_time_error():
    with pytest.raises(ConfigError, match="unknown JSON Logic operation 'frobnicate'"):
        load(gated({"frobnicate": [1]}))


def test_a_default_outside_branches_is_a_load_time_error():
    with pytest.raises(ConfigError) as caught:
        load(gated(SIZE_RULE, branches=["big", "small"], default="medium"))
    assert "node 'decide'" in str(caught.value) and "'medium'" in str(caught.value)


def test_a_rule_with_no_matching_edge_ends_the_flow_after_the_router():
    ran = run_flow(gated("'neither'"))
    assert ran.result.ok
    assert ran.ran() == ["decide"]
