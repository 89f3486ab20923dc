"""The flow commands through ``backpackflow.cli.main``: ``validate FILE...`` (errors as
``file: $.path: message``, exit status 1; ``--json``), ``schema export [--output FILE]`` and
``migrate FILE`` (stdout, ``--output``, ``--in-place``, ``--check``, ``--json``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import attrs
import msgspec
import pytest

import backpackflow.plugins.manager as plugins_module
import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import Node, hookimpl
from backpackflow.cli import main
from backpackflow.config import CURRENT_VERSION
from backpackflow.loader import dumps_schema, flow_schema
from backpackflow.plugins import build_registry

V = CURRENT_VERSION


@attrs.frozen
class ChatParams:
    model: Literal["gpt-4", "gpt-4-turbo"] = "gpt-4"
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    api_key: str = ""


class ChatNode(Node):
    Params = ChatParams


class NoteNode(Node):
    pass


def v1_to_current(document):
    return {
        "version": V,
        "nodes": [{"type": "note", "id": name} for name in document["names"]],
        "edges": [
            {"from": a, "to": b}
            for a, b in zip(document["names"], document["names"][1:], strict=False)
        ],
    }


class Plugin:
    __name__ = "command_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("chat", ChatNode)
        register("note", NoteNode)

    @hookimpl
    def backpackflow_register_migrations(self, register):
        register("1", V, v1_to_current)


@pytest.fixture
def registry(monkeypatch):
    registry = build_registry(plugins=[Plugin(), conditions_plugin], autoload=False)
    monkeypatch.setattr(plugins_module, "_default", registry)
    return registry


def write(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def three_nodes(**chat_params):
    return {
        "version": V,
        "nodes": [
            {"type": "note", "id": "a"},
            {"type": "note", "id": "b"},
            {"type": "chat", "id": "c", "params": {"model": "gpt-4", **chat_params}},
        ],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
    }


# ------------------------------------------------------------------------------- validate


def test_validate_a_good_file_exits_0(registry, tmp_path, capsys):
    path = write(tmp_path / "good.json", three_nodes())
    assert main(["validate", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    assert err == ""


def test_validate_reports_file_path_and_message_and_exits_1(registry, tmp_path, capsys):
    path = write(tmp_path / "hot.json", three_nodes(temperature=5))
    assert main(["validate", path]) == 1
    out, err = capsys.readouterr()
    assert err == f"{path}: $.nodes[2].params.temperature: 5 is greater than the maximum of 2\n"
    assert out == ""


def test_validate_reports_graph_problems(registry, tmp_path, capsys):
    document = three_nodes()
    document["edges"].append({"from": "c", "to": "ghost"})
    document["edges"].append({"from": "c", "to": "a"})
    path = write(tmp_path / "graph.json", document)
    assert main(["validate", path]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{path}: $.edges[2].to: unknown node id 'ghost' (nodes: 'a', 'b', 'c')"]
    document["edges"].pop(2)
    write(tmp_path / "graph.json", document)
    assert main(["validate", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: $.edges: the graph has a cycle (a -> b -> c -> a)")


def test_validate_reports_invalid_conditions_naming_the_edge(registry, tmp_path, capsys):
    document = three_nodes()
    document["edges"][0]["when"] = "branch =="
    path = write(tmp_path / "when.json", document)
    assert main(["validate", path]) == 1
    assert capsys.readouterr().err.startswith(f"{path}: $.edges[0].when: invalid cel condition")


def test_validate_prints_warnings_but_passes(registry, tmp_path, capsys):
    document = three_nodes()
    document["nodes"].append({"type": "note", "id": "lonely"})
    path = write(tmp_path / "warn.json", document)
    assert main(["validate", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    assert err == (
        f"{path}: warning: $.nodes[3]: node 'lonely' is unreachable from the entry node 'a'; "
        "it will never run\n"
    )


def test_validate_several_files_fails_if_any_fails(registry, tmp_path, capsys):
    good = write(tmp_path / "good.json", three_nodes())
    bad = write(tmp_path / "bad.json", three_nodes(temperature=-1, model="gpt-2"))
    assert main(["validate", good, bad]) == 1
    out, err = capsys.readouterr()
    assert out == f"{good}: ok\n"
    assert err.splitlines() == [
        f"{bad}: $.nodes[2].params.model: 'gpt-2' is not one of ['gpt-4', 'gpt-4-turbo']",
        f"{bad}: $.nodes[2].params.temperature: -1 is less than the minimum of 0",
    ]


def test_validate_json_reports_every_file(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BPF_TEST_KEY", raising=False)
    document = three_nodes(api_key="${BPF_TEST_KEY}")
    document["nodes"].append({"type": "note", "id": "lonely"})
    good = write(tmp_path / "good.json", document)
    bad = write(tmp_path / "bad.json", three_nodes(temperature=5))
    assert main(["validate", "--json", "--allow-unset-env", good, bad]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {
        "ok": False,
        "files": [
            {
                "file": good,
                "ok": True,
                "errors": [],
                "warnings": [
                    "$.nodes[3]: node 'lonely' is unreachable from the entry node 'a'; "
                    "it will never run"
                ],
            },
            {
                "file": bad,
                "ok": False,
                "errors": ["$.nodes[2].params.temperature: 5 is greater than the maximum of 2"],
                "warnings": [],
            },
        ],
    }
    assert main(["validate", "--json", "--allow-unset-env", good]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_validate_quiet_prints_problems_only(registry, tmp_path, capsys):
    good = write(tmp_path / "good.json", three_nodes())
    assert main(["validate", "--quiet", good]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "not valid JSON: Expecting property name enclosed in double quotes"),
        ("[]", "a flow config is a JSON object, got list"),
    ],
)
def test_validate_unreadable_files_names_the_file_once(
    registry, tmp_path, capsys, content, message
):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: {message}")
    assert err.count(str(path)) == 1


def test_validate_a_missing_file(registry, tmp_path, capsys):
    path = tmp_path / "missing.json"
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: cannot read the flow file")
    assert err.count(str(path)) == 1


def test_validate_an_unset_env_reference(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BPF_TEST_KEY", raising=False)
    path = write(tmp_path / "env.json", three_nodes(api_key="${BPF_TEST_KEY}"))
    assert main(["validate", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{path}: $.nodes[2].params.api_key: environment variable BPF_TEST_KEY is not set"
    )
    # says how to validate where the secrets are not set
    assert "'backpackflow validate --allow-unset-env' checks ${NAME} references" in err
    assert main(["validate", "--allow-unset-env", path]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"
    monkeypatch.setenv("BPF_TEST_KEY", "set-now")
    assert main(["validate", path]) == 0


def test_allow_unset_env_still_applies_defaults(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BPF_TEST_MODEL", raising=False)
    path = write(tmp_path / "model.json", three_nodes(model="${BPF_TEST_MODEL:-gpt-4-turbo}"))
    assert main(["validate", path]) == 0
    assert main(["validate", "--allow-unset-env", path]) == 0
    path = write(tmp_path / "model2.json", three_nodes(model="${BPF_TEST_MODEL:-gpt-5}"))
    assert main(["validate", "--allow-unset-env", path]) == 1
    # messages show the reference as written, never what it resolved to (it may be a secret)
    assert "'${BPF_TEST_MODEL:-gpt-5}' is not one of" in capsys.readouterr().err


def test_validate_migrates_older_versions_with_a_warning(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", {"version": "1", "names": ["x", "y"]})
    assert main(["validate", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    assert err.startswith(f"{path}: warning: $.version: flow config version '1' was migrated")
    assert f"run 'backpackflow migrate --in-place {path}'" in err


def test_validate_needs_a_file(registry, capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2


# ------------------------------------------------------------------------------- schema


def test_schema_export_writes_the_composed_schema_to_stdout(registry, capsys):
    assert main(["schema", "export"]) == 0
    out = capsys.readouterr().out
    assert out == dumps_schema(flow_schema(registry))
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "chat.ChatParams" in schema["$defs"]
    assert schema["$defs"]["chat.ChatParams"]["properties"]["temperature"]["maximum"] == 2


def test_schema_export_output_writes_a_file(registry, tmp_path, capsys):
    target = tmp_path / "flow-schema.json"
    assert main(["schema", "export", "--output", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert str(target) in err
    assert target.read_text(encoding="utf-8") == dumps_schema(flow_schema(registry))


def test_schema_export_of_another_version_is_refused(registry, capsys):
    assert main(["schema", "export", "--version", "1.0.0"]) == 1
    assert "only the current config version" in capsys.readouterr().err


def test_schema_needs_an_action(registry):
    with pytest.raises(SystemExit) as info:
        main(["schema"])
    assert info.value.code == 2


# ------------------------------------------------------------------------------- migrate


OLD = {"version": "1", "names": ["first", "second"]}


def test_migrate_writes_the_migrated_config_to_stdout_and_leaves_the_file(
    registry, tmp_path, capsys
):
    path = write(tmp_path / "old.json", OLD)
    assert main(["migrate", path]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == v1_to_current(OLD)
    assert "migrated 1 -> 2.0.0 (on stdout)" in err
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8")) == OLD


def test_migrate_in_place_rewrites_the_file_in_the_current_version(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", OLD)
    assert main(["migrate", path, "--in-place"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"migrated 1 -> 2.0.0, wrote {path}" in err
    rewritten = json.loads((tmp_path / "old.json").read_text(encoding="utf-8"))
    assert rewritten == v1_to_current(OLD)
    # it is current now
    assert main(["migrate", "--check", path]) == 0
    assert main(["validate", path]) == 0


def test_migrate_json_reports_and_carries_the_document(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", OLD)
    assert main(["migrate", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "file": path,
        "version": "1",
        "current_version": V,
        "needs_migration": True,
        "written": None,
        "errors": [],
        "document": v1_to_current(OLD),
    }
    target = tmp_path / "new.json"
    assert main(["migrate", path, "-o", str(target), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == str(target) and "document" not in report
    assert main(["migrate", path, "--check", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["needs_migration"] is True
    bad = write(tmp_path / "bad.json", {"version": "1", "names": ["dup", "dup"]})
    assert main(["migrate", bad, "--json"]) == 1
    assert "duplicate node id 'dup'" in json.loads(capsys.readouterr().out)["errors"][0]


def test_migrate_output_leaves_the_original_alone(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", OLD)
    target = tmp_path / "new.json"
    assert main(["migrate", path, "--output", str(target)]) == 0
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8")) == OLD
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == V


def test_migrate_check_says_whether_a_file_needs_migrating(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", OLD)
    assert main(["migrate", "--check", path]) == 1
    assert "needs migrating" in capsys.readouterr().err
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8")) == OLD
    current = write(tmp_path / "current.json", three_nodes())
    assert main(["migrate", "--check", current]) == 0


def test_migrate_a_current_file_changes_nothing(registry, tmp_path, capsys):
    path = write(tmp_path / "current.json", three_nodes())
    before = (tmp_path / "current.json").read_text(encoding="utf-8")
    assert main(["migrate", path, "--in-place"]) == 0
    assert "already at version" in capsys.readouterr().err
    assert (tmp_path / "current.json").read_text(encoding="utf-8") == before
    assert main(["migrate", path]) == 0  # stdout: the config as it is
    assert json.loads(capsys.readouterr().out) == three_nodes()


def test_migrate_an_unknown_version_fails(registry, tmp_path, capsys):
    path = write(tmp_path / "future.json", {"version": "9", "nodes": []})
    assert main(["migrate", path]) == 1
    err = capsys.readouterr().err
    assert "'9'" in err and "unsupported" in err
    assert json.loads((tmp_path / "future.json").read_text(encoding="utf-8"))["version"] == "9"


def test_migrate_does_not_write_a_migrated_config_that_is_invalid(registry, tmp_path, capsys):
    path = write(tmp_path / "old.json", {"version": "1", "names": ["dup", "dup"]})
    assert main(["migrate", path]) == 1
    err = capsys.readouterr().err
    assert "duplicate node id 'dup'" in err
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8"))["version"] == "1"


def test_migrate_a_file_that_is_not_json(registry, tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{", encoding="utf-8")
    assert main(["migrate", str(path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [["--check", "--output", "x.json"], ["--in-place", "-o", "x.json"], ["--check", "--in-place"]],
)
def test_migrate_check_output_and_in_place_are_exclusive(registry, tmp_path, options):
    path = write(tmp_path / "old.json", OLD)
    with pytest.raises(SystemExit) as info:
        main(["migrate", path, *options])
    assert info.value.code == 2
    assert json.loads((tmp_path / "old.json").read_text(encoding="utf-8")) == OLD
