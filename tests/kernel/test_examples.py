"""Examples that plugins ship (``backpackflow_register_examples``) and ``backpackflow examples
list|copy``; the first-party examples are registered the same way and copy out runnable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import backpackflow.plugins.manager as plugins_module
import backpackflow_examples.plugin as first_party_examples
from backpackflow import hookimpl
from backpackflow.cli import main
from backpackflow.config import CURRENT_VERSION
from backpackflow.plugins import build_registry

ROOT = Path(__file__).resolve().parents[2]


def make_example(folder: Path, flow: str = "flow.json", **document: object) -> Path:
    folder.mkdir(parents=True)
    (folder / flow).write_text(json.dumps({"version": CURRENT_VERSION, **document}))
    (folder / "data.txt").write_text("what the flow reads")
    (folder / "nested").mkdir()
    (folder / "nested" / "more.txt").write_text("more")
    return folder


class ShipsExamples:
    """A third party's plugin shipping two examples."""

    __name__ = "acme_examples"

    def __init__(self, root: Path) -> None:
        self.triage = make_example(root / "triage", description="Sort tickets by urgency.")
        self.legacy = make_example(root / "legacy", flow="old.json")

    @hookimpl
    def backpackflow_register_examples(self, register):
        register("triage", self.triage)
        register("legacy", self.legacy, flow="old.json", description="an older flow")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    registry = build_registry(plugins=[ShipsExamples(tmp_path / "pkg")], autoload=False)
    monkeypatch.setattr(plugins_module, "_default", registry)
    return registry


def test_registered_examples_know_their_folder_flow_and_description(registry, tmp_path):
    triage = registry.example("triage")
    assert triage.folder == tmp_path / "pkg" / "triage"
    assert triage.flow_path == triage.folder / "flow.json"
    assert triage.description == "Sort tickets by urgency."  # the flow's own
    legacy = registry.example("legacy")
    assert (legacy.flow, legacy.description, legacy.plugin) == (
        "old.json",
        "an older flow",
        "acme_examples",
    )
    assert registry.plugins["acme_examples"].registered == {"examples": ["triage", "legacy"]}


def test_an_example_without_its_flow_file_breaks_only_its_plugin(tmp_path):
    class Broken:
        __name__ = "broken_examples"

        @hookimpl
        def backpackflow_register_examples(self, register):
            register("ghost", tmp_path / "nowhere")

    registry = build_registry(plugins=[Broken()], autoload=False)
    assert registry.plugins["broken_examples"].status == "broken"
    assert any(
        "plugin 'broken_examples': example 'ghost': no flow file 'flow.json'" in error
        for error in registry.errors
    )
    assert registry.examples == {}


def test_examples_list(registry, capsys):
    assert main(["examples", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "legacy  old.json   an older flow",
        "triage  flow.json  Sort tickets by urgency.",
    ]
    assert main(["examples", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["examples"]
    assert [(e["name"], e["flow"], e["plugin"]) for e in listing] == [
        ("legacy", "old.json", "acme_examples"),
        ("triage", "flow.json", "acme_examples"),
    ]


def test_examples_copy_copies_the_whole_folder(registry, tmp_path, capsys):
    target = tmp_path / "mine"
    assert main(["examples", "copy", "triage", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"copied example 'triage' to {target}: data.txt, flow.json, nested/more.txt" in out
    assert f"run it: backpackflow run {target / 'flow.json'}" in out
    assert (target / "nested" / "more.txt").read_text() == "more"
    assert json.loads((target / "flow.json").read_text())["description"] == (
        "Sort tickets by urgency."
    )


def test_examples_copy_defaults_to_a_folder_named_after_the_example(
    registry, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["examples", "copy", "legacy"]) == 0
    assert (tmp_path / "legacy" / "old.json").is_file()


def test_examples_copy_never_overwrites(registry, tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "flow.json").write_text("mine")
    assert main(["examples", "copy", "triage", str(target)]) == 1
    assert f"{target} exists and is not an empty folder" in capsys.readouterr().err
    assert (target / "flow.json").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["examples", "copy", "triage", str(empty)]) == 0


def test_examples_copy_of_an_unknown_example_names_the_known_ones(registry, tmp_path, capsys):
    assert main(["examples", "copy", "nope", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "unknown example 'nope' (known: 'legacy', 'triage')" in err
    assert not (tmp_path / "x").exists()


def test_the_first_party_examples_are_every_flow_folder_of_examples():
    registry = build_registry(plugins=[first_party_examples], autoload=False)
    folders = {p.parent.name for p in (ROOT / "examples").glob("*/*.json")}
    assert set(registry.examples) == folders == {"research", "csv-report", "flowtrace", "agent"}
    for example in registry.examples.values():
        assert example.flow_path.is_file()
        assert example.description
