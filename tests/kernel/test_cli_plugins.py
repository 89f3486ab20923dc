"""``backpackflow plugins`` and plugin commands, through ``cli.main`` with fake installed
distributions: distribution, version, hooks and registrations of every plugin, unavailable ones
with the reason and the install command, conflicts, and ``--json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backpackflow import __version__, cli
from backpackflow.plugins import DISABLE_AUTOLOAD_ENV, DISABLE_PLUGINS_ENV, build_registry

NODES_PLUGIN = """
from backpackflow import Node, hookimpl

class FetchNode(Node):
    '''Fetches a page.'''

@hookimpl
def backpackflow_register_node_types(register):
    register("fetch", FetchNode)
    register("summarize", FetchNode)

@hookimpl
def backpackflow_register_event_sinks(register):
    register("memory", lambda options: None)
"""

RIVAL_PLUGIN = """
from backpackflow import Node, hookimpl

class Summarize(Node):
    pass

@hookimpl
def backpackflow_register_node_types(register):
    register("summarize", Summarize)
"""

COMMAND_PLUGIN = """
from backpackflow import hookimpl
from backpackflow.errors import BackpackFlowError

def hello_arguments(parser):
    parser.add_argument("--name", default="world")
    parser.add_argument("--fail", action="store_true")

def hello(args, registry):
    if args.fail:
        raise BackpackFlowError("hello failed on purpose")
    print(f"hello {args.name} ({len(registry.plugins)} plugins)")
    return 3

def shadow(args, registry):
    print("the plugin's 'plugins' command ran")
    return 0

@hookimpl
def backpackflow_register_commands(cli):
    cli.add("hello", hello, help="greet someone", arguments=hello_arguments)
    cli.add("plugins", shadow, help="tries to replace a kernel command")
"""


pytestmark = pytest.mark.usefixtures("clean_plugin_environment")  # tests/kernel/conftest.py


@pytest.fixture
def installed(site):
    site.add(
        "acme-nodes",
        "1.4.0",
        {"bpf_cli_nodes": NODES_PLUGIN, "bpf_cli_llm": "import bpf_cli_openai_sdk\n"},
        {"acme": "bpf_cli_nodes", "acme_llm": "bpf_cli_llm [openai]"},
    )
    site.add("rival-nodes", "0.2", {"bpf_cli_rival": RIVAL_PLUGIN}, {"rival": "bpf_cli_rival"})
    site.add("tools-pkg", "3.0", {"bpf_cli_cmds": COMMAND_PLUGIN}, {"greeter": "bpf_cli_cmds"})


def plugin_blocks(text):
    """The listing split into {plugin name: its lines}."""
    blocks, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and not line.startswith("CONFLICT"):
            current = line.split()[0]
            blocks[current] = [line]
        elif current is not None and line.startswith(" "):
            blocks[current].append(line.strip())
    return blocks


def test_plugins_lists_distribution_version_hooks_and_registrations(installed, capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    blocks = plugin_blocks(out)
    acme = blocks["acme"]
    assert acme[0].split() == ["acme", "[loaded]", "acme-nodes", "1.4.0"]
    assert "hooks: backpackflow_register_event_sinks, backpackflow_register_node_types" in acme
    assert "node types: fetch, summarize" in acme
    assert "event sinks: memory" in acme
    greeter = blocks["greeter"]
    assert greeter[0].split() == ["greeter", "[loaded]", "tools-pkg", "3.0"]
    assert "commands: hello, plugins" in greeter


def test_plugins_lists_unavailable_ones_with_reason_and_install_hint(installed, capsys):
    cli.main(["plugins"])
    out = capsys.readouterr().out
    block = plugin_blocks(out)["acme_llm"]
    assert block[0].split()[:2] == ["acme_llm", "[unavailable]"]
    assert any(line.startswith("reason: ModuleNotFoundError") for line in block)
    assert any("bpf_cli_openai_sdk" in line for line in block)
    assert "install: pip install 'acme-nodes[openai]'" in block
    # loaded plugins are listed first
    names = list(plugin_blocks(out))
    assert names.index("acme_llm") > names.index("rival")


def test_plugins_shows_conflicts_naming_both_plugins(installed, capsys):
    cli.main(["plugins"])
    out = capsys.readouterr().out
    conflicts = [line for line in out.splitlines() if line.startswith("CONFLICT")]
    assert conflicts == ["CONFLICT: node types 'summarize' is registered by acme, rival"]


def test_plugins_shows_disabled_ones(installed, monkeypatch, capsys):
    monkeypatch.setenv(DISABLE_PLUGINS_ENV, "rival")
    cli.main(["plugins"])
    out = capsys.readouterr().out
    block = plugin_blocks(out)["rival"]
    assert block[0].split()[:2] == ["rival", "[disabled]"]
    assert f"reason: listed in {DISABLE_PLUGINS_ENV}" in block
    assert "CONFLICT" not in out


def test_plugins_json(installed, capsys):
    assert cli.main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert set(plugins) == {"acme", "acme_llm", "rival", "greeter"}
    acme = plugins["acme"]
    assert acme["status"] == "loaded"
    assert (acme["distribution"], acme["version"], acme["module"]) == (
        "acme-nodes",
        "1.4.0",
        "bpf_cli_nodes",
    )
    assert acme["hooks"] == [
        "backpackflow_register_event_sinks",
        "backpackflow_register_node_types",
    ]
    assert acme["registered"] == {"node_types": ["fetch", "summarize"], "event_sinks": ["memory"]}
    llm = plugins["acme_llm"]
    assert llm["status"] == "unavailable"
    assert llm["hint"] == "pip install 'acme-nodes[openai]'"
    assert "ModuleNotFoundError" in llm["reason"]
    assert data["conflicts"] == [
        {"kind": "node_types", "name": "summarize", "plugins": ["acme", "rival"]}
    ]
    assert isinstance(data["errors"], list)


def test_plugins_with_nothing_installed(site, capsys):
    assert cli.main(["plugins"]) == 0
    assert capsys.readouterr().out.strip() == "no plugins installed"
    assert cli.main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "plugins": [],
        "node_types": {},
        "conflicts": [],
        "errors": [],
    }


def test_plugins_respects_disable_autoload(installed, monkeypatch, capsys):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    cli.main(["plugins"])
    assert capsys.readouterr().out.strip() == "no plugins installed"


# ------------------------------------------------------------------------------- commands


def test_a_plugin_command_runs_with_its_arguments(installed, capsys):
    assert cli.main(["hello", "--name", "Ann"]) == 3
    assert capsys.readouterr().out.strip() == "hello Ann (4 plugins)"


def test_a_failing_plugin_command_exits_1_with_the_error(installed, capsys):
    assert cli.main(["hello", "--fail"]) == 1
    err = capsys.readouterr().err
    assert "backpackflow hello: hello failed on purpose" in err


def test_a_plugin_cannot_replace_a_kernel_command(installed, capsys):
    cli.main(["plugins"])
    out = capsys.readouterr().out
    assert "the plugin's 'plugins' command ran" not in out
    registry = build_registry()
    cli.build_parser(registry)
    assert any("'plugins'" in e and "kernel command" in e for e in registry.errors)


def test_plugin_commands_are_listed_in_help(installed, capsys):
    registry = build_registry()
    help_text = cli.build_parser(registry).format_help()
    assert "hello" in help_text
    assert "greet someone" in help_text
    assert "plugins" in help_text


def test_no_command_prints_help_and_exits_2(site, capsys):
    assert cli.main([]) == 2
    assert "usage: backpackflow" in capsys.readouterr().out


def test_version(site, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"backpackflow {__version__}"


def test_unknown_command_is_a_usage_error(site, capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backpackflow: unknown command 'frobnicate' (commands: examples, ")
    assert "failed to load" not in err


def test_an_unknown_command_names_the_plugins_that_failed_to_load(installed, capsys):
    # what a command of a plugin whose extra is missing gets ('serve' without [server])
    assert cli.main(["--verbose-option-never-seen", "serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'serve'" in err and "hello" in err  # the known commands
    assert "plugins that failed to load: acme_llm (pip install 'acme-nodes[openai]')" in err


def test_python_m_backpackflow_plugins():
    env = {**os.environ, DISABLE_AUTOLOAD_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-m", "backpackflow", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plugins"] == []
