"""The ``backpackflow`` command line.

The kernel's commands (:mod:`.builtin`: ``plugins``, ``run``, ``validate``, ``schema``,
``migrate``, ``examples``) and every plugin's are registered through
``backpackflow_register_commands``. Every command returns an exit status: 0 on success, 1
when the input is bad (invalid flow, failed run), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from backpackflow import __version__
from backpackflow.cli import builtin
from backpackflow.errors import BackpackFlowError
from backpackflow.plugins import Command, Registry, build_registry, get_registry

_kernel: Registry | None = None


def kernel_commands() -> list[Command]:
    """The kernel's own commands, registered by :mod:`backpackflow.cli.builtin` through the
    ``backpackflow_register_commands`` hook (loaded once, without entry points)."""
    global _kernel
    if _kernel is None:
        _kernel = build_registry(plugins=[builtin], autoload=False, disabled=())
    return list(_kernel.commands.values())


def all_commands(registry: Registry) -> list[Command]:
    """The kernel's commands, then every plugin's (a plugin's command named like a kernel
    command is refused, with an error in the registry)."""
    commands = kernel_commands()
    taken = {c.name for c in commands}
    for command in registry.commands.values():
        if command.name in taken:
            message = f"plugin {command.plugin!r}: command {command.name!r} is a kernel command"
            if message not in registry.errors:  # this may run more than once
                registry.errors.append(message)
            continue
        commands.append(command)
    return commands


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backpackflow",
        description="Build, run and debug LLM agent flows.",
    )
    parser.add_argument("--version", action="version", version=f"backpackflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in all_commands(registry):
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        if command.arguments is not None:
            command.arguments(command_parser)
        command_parser.set_defaults(_handler=command.handler)
    return parser


def _unknown_command(argv: Sequence[str], registry: Registry) -> str | None:
    """The error for a command nobody registered, naming the plugins that failed to load (the
    command may be theirs: ``serve`` without the ``server`` extra); ``None`` if it is known.
    Top-level options take no value, so the first word that is not an option is the command."""
    name = next((word for word in argv if not word.startswith("-")), None)
    known = sorted(command.name for command in all_commands(registry))
    if name is None or name in known:
        return None
    return (
        f"backpackflow: unknown command {name!r} (commands: {', '.join(known)})"
        f"{registry.unavailable_note()}"
    )


def _format_warning(
    message: Warning | str, category: type[Warning], *args: object, **kwargs: object
) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None, *, registry: Registry | None = None) -> int:
    """Run the command line; ``registry`` defaults to the installed plugins."""
    warnings.formatwarning = _format_warning
    registry = registry if registry is not None else get_registry()
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = _unknown_command(argv, registry)
    if unknown is not None:
        print(unknown, file=sys.stderr)
        return 2
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Registry], int] | None = getattr(args, "_handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args, registry)
    except BackpackFlowError as exc:
        print(f"backpackflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
