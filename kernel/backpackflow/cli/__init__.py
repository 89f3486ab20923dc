"""backpackflow.cli: the ``backpackflow`` command.

Re-exports only (the modules hold the code).
"""

from backpackflow.cli.app import all_commands, build_parser, kernel_commands, main

__all__ = ["all_commands", "build_parser", "kernel_commands", "main"]
