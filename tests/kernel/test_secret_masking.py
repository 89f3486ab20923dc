"""Secrets are masked in every event of a loaded flow's runs, wherever they came from and in
whatever value they ended up (a prompt, a result, an error), at the event bus: no sink, no
subscriber and no export sees them. Runs without secrets pay nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backpackflow import Backpack, EventStreamer, Flow, FlowLoader, Node, current_run
from backpackflow.events import LLMResponsePayload, StreamEventType
from backpackflow.plugins import build_registry
from backpackflow.policy import MASK, MaskedLazy, SecretMasker, is_secret_name
from backpackflow.runner import NodeFrame

CANARY = "canary-7f3a9c1e5b"


class Echo(Node):
    """Puts the secret it was configured with into everything a node can emit: its prep
    result, exec result, a Backpack value, a log, a custom LLM event; fails on request."""

    def prep(self, backpack: Any) -> Any:
        return {"prompt": f"use {self.params['token']} now"}

    def exec(self, prep_res: Any) -> Any:
        run = current_run()
        token = self.params["token"]
        run.log(f"calling with {token}", data={"headers": {"Authorization": f"Bearer {token}"}})
        run.emit(
            StreamEventType.LLM_RESPONSE,
            LLMResponsePayload("p", "m", f"the key is {token}", {}, 1.0, "0", True, None),
        )
        if self.params.get("fail"):
            raise RuntimeError(f"upstream refused key {token}")
        return [token, {"nested": f"x{token}x"}]

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack("result", exec_res)
        backpack.pack(f"key-{self.params['token'][:3]}", "v")
        return None


def _loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("echo", Echo)
    return loader


def _doc(**params: Any) -> dict[str, Any]:
    return {
        "version": "2.0.0",
        "nodes": [
            {"type": "echo", "id": "first", "params": {"token": "${BPF_CANARY}", **params}},
            {"type": "echo", "id": "second", "params": {"token": "${BPF_CANARY}"}},
        ],
        "edges": [{"from": "first", "to": "second"}],
    }


@pytest.fixture(autouse=True)
def canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPF_CANARY", CANARY)


def _serialized(events: EventStreamer) -> str:
    return events.to_json_str()


def test_no_event_shows_a_resolved_secret_or_anything_derived_from_it() -> None:
    flow = _loader().load_flow(_doc())
    events = EventStreamer()
    seen: list[Any] = []
    events.subscribe("*", seen.append)
    result = flow.execute_sync(Backpack(), events=events)
    assert result.ok
    text = _serialized(events)
    assert CANARY not in text
    assert "${BPF_CANARY}" in text  # where it was, the reference that named it
    # subscribers get the masked payloads too, with their classes (sinks read fields)
    [response, *_] = [e.payload for e in seen if e.type == StreamEventType.LLM_RESPONSE]
    assert isinstance(response, LLMResponsePayload)
    assert response.text == "the key is ${BPF_CANARY}"
    for event in seen:
        assert CANARY not in json.dumps(event.to_json(), default=repr)


def test_errors_are_masked_in_error_and_run_end_events() -> None:
    flow = _loader().load_flow(_doc(fail=True))
    events = EventStreamer()
    result = flow.execute_sync(Backpack(), events=events)
    assert result.status == "failed"
    text = _serialized(events)
    assert CANARY not in text
    [error] = events.get_events(type="error")
    assert error.payload.error == "upstream refused key ${BPF_CANARY}"
    assert CANARY not in error.payload.stack
    [end] = events.get_events(type="run_end")
    assert end.payload.error == "upstream refused key ${BPF_CANARY}"


def test_state_snapshots_stay_lazy_and_are_masked_when_serialized() -> None:
    flow = _loader().load_flow(_doc())
    events = EventStreamer()
    flow.execute_sync(Backpack(), events=events)
    starts = events.get_events(type="node_start")
    assert isinstance(starts[1].payload.state, MaskedLazy)
    state = starts[1].to_json()["payload"]["state"]["changed"]
    assert state["result"][0] == "${BPF_CANARY}"


def test_secret_named_options_of_dependencies_and_sinks_are_masked() -> None:
    doc = _doc()
    doc["nodes"][0]["params"]["token"] = "literal-api-key-12345"
    doc["dependencies"] = {"svc": {"type": "EventStreamer", "config": {}}}
    flow = _loader().load_flow(doc)
    flow.secrets.add("literal-api-key-12345")  # as a secret-named option would add it
    events = EventStreamer()
    flow.execute_sync(Backpack(), events=events)
    assert "literal-api-key-12345" not in _serialized(events)
    assert MASK in _serialized(events)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("secret", True),
        ("Authorization", True),
        ("x-api-key", True),
        ("access_token", True),
        ("password", True),
        ("api_key_env", False),  # the name of a variable, not a secret
        ("secret_env", False),
        ("url", False),
        ("path", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_the_masker_matches_encoded_forms_and_keeps_unchanged_values() -> None:
    masker = SecretMasker({"TOKEN": 'a"b/c d+e'})
    assert masker.mask_text('json: "a\\"b/c d+e"') == 'json: "${TOKEN}"'
    assert masker.mask_text("url: ?k=a%22b%2Fc%20d%2Be") == "url: ?k=${TOKEN}"
    assert masker.mask_text("form: k=a%22b%2Fc+d%2Be") == "form: k=${TOKEN}"
    value = {"a": ["plain"], "b": 1}
    assert masker.mask(value) is value
    assert masker.mask({'a"b/c d+e': 1}) == {"${TOKEN}": 1}


def test_short_values_are_not_masked() -> None:
    masker = SecretMasker({"FLAG": "1", "MODE": "dev"})
    assert not masker
    assert masker.mask_text("1 dev") == "1 dev"


def test_runs_without_secrets_use_the_plain_frames() -> None:
    class Plain(Node):
        pass

    flow = Flow(Plain(id="p"))
    run = flow._make_run(Backpack(), loopless=True)
    assert run._node_frame is NodeFrame  # no masking code on the hot path
    loaded = _loader().load_flow(_doc())
    assert loaded._make_run(Backpack(), loopless=True)._node_frame is not NodeFrame


def test_the_export_of_a_loaded_flow_keeps_the_reference() -> None:
    loader = _loader()
    exported = loader.export_json(loader.load_flow(_doc()))
    assert CANARY not in exported
    assert "${BPF_CANARY}" in exported
