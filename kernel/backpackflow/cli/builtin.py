"""The kernel's own commands, registered as a plugin registers its commands: through the
``backpackflow_register_commands`` hook and the same registrar (tox 4 loads its built-ins
through the hooks of external plugins the same way). :func:`backpackflow.cli.app.main` loads
this module with :func:`~backpackflow.plugins.build_registry` like any other plugin."""

from __future__ import annotations

import argparse
import json

from backpackflow.cli.commands import (
    _examples,
    _examples_arguments,
    _migrate,
    _migrate_arguments,
    _schema,
    _schema_arguments,
    _validate,
    _validate_arguments,
)
from backpackflow.cli.durable import _fork, _fork_arguments, _resume, _resume_arguments
from backpackflow.cli.run import _run, _run_arguments
from backpackflow.plugins import CommandRegistrar, Registry, hookimpl


def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _plugins_command(args: argparse.Namespace, registry: Registry) -> int:
    infos = sorted(registry.plugins.values(), key=lambda p: (p.status != "loaded", p.name))
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [p.to_json() for p in infos],
                    # what an editor offers for each node type: its data contract
                    "node_types": {
                        name: {
                            "plugin": t.plugin,
                            "description": t.description,
                            "reads": dict(t.reads),
                            "writes": dict(t.writes),
                        }
                        for name, t in sorted(registry.node_types.items())
                    },
                    "conflicts": [
                        {"kind": k, "name": n, "plugins": owners}
                        for (k, n), owners in registry.conflicts.items()
                    ],
                    "errors": registry.errors,
                },
                indent=2,
            )
        )
        return 0
    if not infos:
        print("no plugins installed")
    for info in infos:
        where = f"{info.distribution} {info.version}" if info.distribution else info.module
        print(f"{info.name}  [{info.status}]  {where or ''}".rstrip())
        if info.hooks:
            print(f"    hooks: {', '.join(info.hooks)}")
        for kind, names in sorted(info.registered.items()):
            print(f"    {kind.replace('_', ' ')}: {', '.join(names)}")
        if info.reason:
            print(f"    reason: {info.reason}")
        if info.hint:
            print(f"    install: {info.hint}")
    for (kind, name), owners in registry.conflicts.items():
        print(f"CONFLICT: {kind.replace('_', ' ')} {name!r} is registered by {', '.join(owners)}")
    for error in dict.fromkeys(registry.errors):
        print(f"ERROR: {error}")
    return 0


@hookimpl
def backpackflow_register_commands(cli: CommandRegistrar) -> None:
    cli.add(
        "plugins",
        _plugins_command,
        help="list installed plugins and what they register",
        arguments=_plugins_arguments,
    )
    cli.add(
        "run",
        _run,
        help="run a flow and show its live trace and a summary",
        arguments=_run_arguments,
    )
    cli.add(
        "resume",
        _resume,
        help="go on with a checkpointed run: answer the question it paused on, or resume it "
        "after a crash",
        arguments=_resume_arguments,
    )
    cli.add(
        "fork",
        _fork,
        help="start a new run from any commit of a checkpointed run (state patch, new inputs)",
        arguments=_fork_arguments,
    )
    cli.add(
        "validate",
        _validate,
        help="validate flow config files (schema and graph checks)",
        arguments=_validate_arguments,
    )
    cli.add(
        "schema", _schema, help="export the composed flow JSON Schema", arguments=_schema_arguments
    )
    cli.add(
        "migrate",
        _migrate,
        help="rewrite a flow config in the current version",
        arguments=_migrate_arguments,
    )
    cli.add(
        "examples",
        _examples,
        help="list the example flows, or copy one out to run or edit",
        arguments=_examples_arguments,
    )
