"""Flow inputs and outputs (issue 15): declared inputs are checked against their JSON Schemas,
defaults filled, and packed into the Backpack at run start as ordinary commits; declared outputs
come back in the run's result, from Python, the CLI and the service alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from backpackflow import Backpack, ConfigError, Node
from backpackflow.cli import main
from backpackflow.loader import FlowLoader, load_flow, prepare_inputs
from backpackflow.plugins import build_registry

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class CopyParams:
    source: str
    target: str


class CopyNode(Node):
    """Copies the value under ``params.source`` to ``params.target``."""

    Params = CopyParams

    def prep(self, backpack: Any) -> Any:
        return backpack.unpack_required(self.params.source)

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack(self.params.target, prep_res)


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "version": "2.0.0",
        "inputs": {
            "question": {"schema": {"type": "string", "minLength": 1}, "required": True},
            "options": {
                "schema": {
                    "type": "object",
                    "properties": {"depth": {"type": "integer", "minimum": 1}},
                },
                "default": {"depth": 2},
            },
        },
        "outputs": ["answer"],
        "nodes": [
            {"type": "copy", "id": "c", "params": {"source": "question", "target": "answer"}}
        ],
        **extra,
    }


@pytest.fixture
def loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("copy", CopyNode)
    return loader


def test_inputs_are_packed_as_commits_and_outputs_returned(loader: FlowLoader) -> None:
    flow = loader.load_flow(doc())
    backpack = Backpack()
    assert flow.run(backpack, inputs={"question": "why?"}) == {"answer": "why?"}
    history = backpack.get_history()
    assert [(c.key, c.node_name) for c in history] == [
        ("question", "inputs"),
        ("options", "inputs"),  # the declared default
        ("answer", "CopyNode"),
    ]
    assert backpack.get_snapshot_before_node("c") == {
        "question": "why?",
        "options": {"depth": 2},
    }
    result = flow.execute_sync(Backpack(), inputs={"question": "how?"})
    events = result.events.get_events(run_id=result.run_id)
    types = [e.type for e in events]
    assert types[:3] == ["run_start", "backpack_pack", "backpack_pack"]
    assert events[1].payload.key == "question" and events[1].payload.value == "how?"
    assert result.outputs == {"answer": "how?"}


def test_ill_typed_and_unknown_inputs_name_the_input_and_the_path(loader: FlowLoader) -> None:
    flow = loader.load_flow(doc())
    with pytest.raises(ConfigError) as error:
        flow.run(Backpack(), inputs={"question": 3, "options": {"depth": 0}, "extra": 1})
    assert error.value.problems == [
        "inputs.extra: unknown input; the flow declares 'question', 'options'",
        "inputs.question: 3 is not of type 'string'",
        "inputs.options.depth: 0 is less than the minimum of 1",
    ]
    with pytest.raises(ConfigError, match=r"inputs\.question: required input missing"):
        flow.run(Backpack())
    with pytest.raises(ConfigError, match=r"\$\.input_vars\.question: 3 is not"):
        prepare_inputs(flow, {"question": 3}, path="$.input_vars")


def test_a_bad_input_schema_or_default_fails_at_load(loader: FlowLoader) -> None:
    bad = doc()
    bad["inputs"]["question"]["schema"] = {"type": "strin"}
    bad["inputs"]["options"]["default"] = {"depth": "deep"}
    report = loader.validate(bad)
    assert report.errors == [
        "$.inputs.question.schema.type: not a valid JSON Schema: 'strin' is not valid under "
        "any of the given schemas",
        "$.inputs.options.default.depth: 'deep' is not of type 'integer'",
    ]
    with pytest.raises(ConfigError):
        loader.load_flow(bad)


def test_a_flow_without_declared_inputs_takes_any_and_packs_none(loader: FlowLoader) -> None:
    plain = doc()
    del plain["inputs"], plain["outputs"]
    flow = loader.load_flow(plain)
    backpack = Backpack({"question": "q"})
    assert flow.run(backpack, inputs={"anything": 1}) is None  # its last action
    assert backpack.keys() == ["question", "answer"]


def test_python_callers_get_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "examples" / "research")
    flow = load_flow("flow.json")
    backpack = Backpack()
    flow.run(backpack)  # doc and topic: their defaults
    assert backpack.unpack("doc") == "notes.md"
    assert backpack.unpack("topic") == "costs and revenue"


def test_run_json_returns_the_outputs(
    loader: FlowLoader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(doc()), encoding="utf-8")
    registry = build_registry(plugins=[_CopyPlugin()], autoload=False)
    argv = ["run", str(path), "--sink", "none", "--input", "question=hi", "--json"]
    code = main(argv, registry=registry)
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out)["outputs"] == {"answer": "hi"}


class _CopyPlugin:
    from backpackflow import hookimpl

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("copy", CopyNode)
