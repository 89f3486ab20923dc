"""Templating of node params and input bindings (jinja2's immutable sandbox): what templates see,
load-time and run-time errors that name the node, the field and the reference, recorded
Backpack reads, native values, and the sandbox refusing code."""

from __future__ import annotations

import json

import pytest
from nodes_support import SHORT_PROMPT, flow_doc, llm, load, router, run_flow, tool

from backpackflow import Backpack
from backpackflow.errors import ConfigError

# ------------------------------------------------------------------------------- load time


@pytest.mark.parametrize(
    ("node", "field", "name"),
    [
        (llm("a", "Hi {{ topic }}"), "params.prompt", "topic"),
        (llm("a", "Hi", system="You are {{ persona.name }}"), "params.system", "persona"),
        (llm("a", "Hi", inputs={"text": "{{ notes }}"}), "inputs.text", "notes"),
        (tool("a", "read_file", arguments={"path": "{{ doc }}"}), "params.arguments.path", "doc"),
        (router("a", "x == 1", inputs={"x": "{{ y }}"}), "inputs.x", "y"),
    ],
)
def test_an_undefined_name_is_a_load_time_error_naming_node_field_and_name(node, field, name):
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(node))
    message = str(caught.value)
    assert f"node 'a' {field}" in message
    assert f"'{name}'" in message and "not defined" in message
    assert "$.nodes[0]" in message


def test_bindings_are_names_the_templates_of_the_node_may_use():
    node = llm("a", "Summarize in 1 sentence:\n\n{{ text }}", inputs={"text": "{{ inputs.doc }}"})
    ran = run_flow(flow_doc(node), inputs={"doc": "The tide came in. Boats rose."})
    assert ran.one("llm_request")["messages"][-1]["content"].endswith(
        "The tide came in. Boats rose."
    )


def test_a_template_syntax_error_is_a_load_time_error():
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(llm("a", "line one\n{{ inputs.x ")))
    assert "node 'a' params.prompt: template syntax error at line 2" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "why"), [("node", "reserved"), ("state", "reserved"), ("my-text", "identifier")]
)
def test_binding_names_must_be_usable_in_templates(name, why):
    with pytest.raises(ConfigError, match=why):
        load(flow_doc(llm("a", SHORT_PROMPT, inputs={name: "x"})))


# ------------------------------------------------------------------------------- run time


def test_a_reference_to_a_node_that_has_not_run_names_node_field_and_reference():
    doc = flow_doc(llm("a", "Summarize: {{ node.b.output }}"), llm("b", SHORT_PROMPT))
    ran = run_flow(doc)
    assert ran.result.status == "failed"
    error = ran.one("error", "a")
    assert error["phase"] == "prep"
    assert error["error_type"] == "TemplateError"
    message = error["error"]
    assert "node 'a' params.prompt" in message
    assert "node.b" in message
    assert "_Outputs" not in message  # no internals
    assert ran.of("llm_request") == []


def test_a_missing_run_input_names_the_reference():
    ran = run_flow(flow_doc(llm("a", "Summarize: {{ inputs.topic }}")), inputs={"other": 1})
    message = ran.one("error", "a")["error"]
    assert "node 'a' params.prompt" in message
    assert "inputs.topic" in message
    assert "run inputs: other" in message


def test_a_missing_backpack_key_names_the_reference():
    ran = run_flow(flow_doc(tool("a", "read_file", arguments={"path": "{{ state.doc }}"})))
    message = ran.one("error", "a")["error"]
    assert "node 'a' params.arguments.path" in message
    assert "state.doc" in message


def test_a_missing_field_of_an_output_fails_at_run_time():
    doc = flow_doc(llm("a", SHORT_PROMPT), llm("b", "Summarize: {{ node.a.output.summary }}"))
    ran = run_flow(doc)
    message = ran.one("error", "b")["error"]
    assert "node 'b' params.prompt" in message and "summary" in message


def test_state_reads_are_recorded_in_prep_complete():
    backpack = Backpack()
    backpack.pack("topic", "ferries", node_id="setup")
    backpack.pack("unused", "x", node_id="setup")
    node = llm(
        "a", "Summarize in 1 sentence, about {{ state.topic }}:\n\nThe ferry ran. It rained."
    )
    ran = run_flow(flow_doc(node), backpack=backpack)
    assert ran.one("prep_complete", "a")["reads"] == ["topic"]
    unpacks = ran.of("backpack_unpack", "a")
    assert unpacks == [{"key": "topic", "access_granted": True, "reason": None, "found": True}]


def test_state_reads_go_through_the_node_permissions():
    backpack = Backpack()
    backpack.pack("secret", "s3cr3t", node_id="setup")
    backpack.register_permissions("a", read=["topic"])
    ran = run_flow(flow_doc(llm("a", "Summarize: {{ state.secret }}")), backpack=backpack)
    assert ran.result.status == "failed"
    error = ran.one("error", "a")
    assert (error["phase"], error["error_type"]) == ("prep", "AccessDenied")
    assert ran.one("backpack_unpack", "a")["access_granted"] is False
    assert ran.of("prep_complete") == [] and ran.of("llm_request") == []


def test_a_single_expression_keeps_its_native_value():
    node = tool("a", "read_file", arguments={"path": "notes.md", "max_bytes": "{{ inputs.size }}"})
    ran = run_flow(flow_doc(node), inputs={"size": 7})
    assert ran.one("tool_request")["arguments"]["max_bytes"] == 7  # an int, not "7"


def test_an_object_in_a_prompt_is_written_as_json():
    node = llm("a", "{{ inputs.data }}")
    ran = run_flow(flow_doc(node), inputs={"data": {"city": "Paris", "n": 2}})
    assert ran.one("llm_request")["messages"][0]["content"] == '{"city": "Paris", "n": 2}'


def test_whole_context_objects_render_as_json_in_the_shape_templates_read():
    doc = flow_doc(
        llm("a", SHORT_PROMPT),
        llm("b", "{{ node }}"),
        llm("c", "{{ inputs }}"),
    )
    ran = run_flow(doc, inputs={"k": "v"})
    first = ran.one("llm_response", "a")["text"]
    assert json.loads(ran.one("llm_request", "b")["messages"][0]["content"]) == {
        "a": {"output": first}
    }
    assert ran.one("llm_request", "c")["messages"][0]["content"] == '{"k": "v"}'


# ------------------------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "x {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ {'k': 1}.update({'a': 1}) }}",
        "{{ [1].append(2) }}",
        "{{ state._view }}",
        "{{ node._outputs }}",
        "{{ (inputs.items() | list).append(1) }}",
    ],
)
def test_the_sandbox_refuses_attribute_tricks_and_mutation(template):
    ran = run_flow(flow_doc(llm("a", template)), inputs={"a": 1})
    assert ran.result.status == "failed"
    error = ran.one("error", "a")
    assert error["error_type"] == "TemplateError"
    assert "node 'a' params.prompt" in error["error"]
    assert "unsafe" in error["error"] or "sandbox" in error["error"]
    assert ran.of("llm_request") == []


def test_the_sandbox_bounds_ranges():
    ran = run_flow(flow_doc(llm("a", "{{ range(10 ** 9) | list | length }}")))
    assert ran.result.status == "failed"
    assert "node 'a' params.prompt" in ran.one("error", "a")["error"]


# ------------------------------------------------------------------------------- compiling

REFERENCES = [
    "{{ node.fetch.output }}",
    "  {{text}}\n",
    "{{ inputs.doc }}",
    "{{ state.notes.items }}",
    "{{ loop.index }}",
    "{{ caller }}",
    # words jinja reads otherwise, and globals: left to the full compile
    "{{ self.x }}",
    "{{ none.x }}",
    "{{ None }}",
    "{{ TRUE }}",
    "{{ range }}",
    "{{ namespace.x }}",
]


@pytest.mark.parametrize("source", REFERENCES)
def test_a_plain_reference_reads_and_renders_as_the_full_compile_does(source, monkeypatch):
    """A ``{{ a.b }}`` reference is compiled at its first render, not at load (a shortcut):
    the names it reads and what it renders, or the error it raises, are the full compile's."""
    import re

    from backpackflow_nodes import templating

    context = {
        "node": {"fetch": {"output": {"content": "c"}}},
        "text": "t",
        "inputs": {"doc": "d"},
        "state": {"notes": {"items": [1]}},
        "loop": {"index": 3},
        "caller": "me",
        "TRUE": 1,
    }

    def outcome(template):
        try:
            return template.names, template.render(context)
        except Exception as exc:  # noqa: BLE001 - the shortcut must fail alike
            return template.names, f"{type(exc).__name__}: {exc}"

    shortcut = templating.Template(source, where="node 'a' inputs.x")
    monkeypatch.setattr(templating, "_REFERENCE", re.compile(r"(?!)"))  # no shortcut
    full = templating.Template(source, where="node 'a' inputs.x")
    assert full._compiled is not None
    assert outcome(shortcut) == outcome(full)


def test_templates_of_one_source_are_compiled_once_and_fail_each_in_its_own_field():
    from backpackflow_nodes.templating import Template

    first = Template("Hi {{ name | upper }}", where="node 'a' params.prompt")
    again = Template("Hi {{ name | upper }}", where="node 'b' params.prompt")
    assert first._compiled is again._compiled
    assert again.render({"name": "x"}) == "Hi X"
    for node in ("a", "b"):
        with pytest.raises(ConfigError, match=f"^node '{node}' params.prompt: template syntax"):
            Template("{{ x | nofilter }}", where=f"node '{node}' params.prompt")


def test_a_template_nested_deeper_than_python_compiles_is_a_load_time_error():
    deep = llm("a", "{{ " + "1 + " * 300 + "1 }}")
    with pytest.raises(
        ConfigError, match=r"node 'a' params.prompt: the template cannot be compiled"
    ):
        load(flow_doc(deep))
