"""``backpackflow resume`` and ``backpackflow fork``: go on with a checkpointed run (answering
the question it paused on, or after a crash), or start a new run from any commit of one.

Both read the checkpoints ``backpackflow run`` writes (``--checkpoints``, default
``.backpackflow/checkpoints``) and run the flow file and sandbox the run was started with; see
docs/durable-runs.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from backpackflow.cli.run import (
    _input_arguments,
    _parse_pairs,
    _trace_arguments,
    recalled_run,
    remember_run,
    run_session,
)
from backpackflow.errors import ConfigError
from backpackflow.jsondata import loads as load_json
from backpackflow.plugins import Registry
from backpackflow.runner import FileCheckpointer


def _durable_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="the id of a checkpointed run")
    parser.add_argument(
        "--flow",
        metavar="FLOW",
        help="the flow file (default: the one the run was started with); a flow whose graph "
        "changed since cannot resume",
    )
    _trace_arguments(parser)


def _resume_arguments(parser: argparse.ArgumentParser) -> None:
    _durable_arguments(parser)
    parser.add_argument(
        "--answer",
        metavar="JSON",
        help="the answer to the question the run paused on (JSON valid against its schema)",
    )


def _fork_arguments(parser: argparse.ArgumentParser) -> None:
    _durable_arguments(parser)
    parser.add_argument(
        "--commit",
        metavar="COMMIT_ID",
        help="the Backpack commit to fork at (default: the run's last node boundary)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="change a Backpack key in the fork before it runs (repeatable)",
    )
    _input_arguments(parser, "a new run input for the fork")
    parser.add_argument("--new-run-id", metavar="ID", help="the fork's run id (default: new)")


def _prepare(args: argparse.Namespace) -> tuple[FileCheckpointer, Path]:
    checkpointer = FileCheckpointer(args.checkpoints)
    noted = recalled_run(checkpointer, args.run_id)
    flow = args.flow or noted.get("flow")
    if flow is None:
        raise ConfigError(f"run {args.run_id!r}: give its flow file with --flow")
    # the run keeps the sandbox it started under: a resume or fork cannot widen it
    args.sandbox = noted.get("sandbox", False)
    args.env_allow = noted.get("env_allow", [])
    args.egress_allow = noted.get("egress_allow", [])
    return checkpointer, Path(flow)


def _resume(args: argparse.Namespace, registry: Registry) -> int:
    checkpointer, flow_path = _prepare(args)
    options: dict[str, Any] = {}
    if args.answer is not None:
        try:
            options["answer"] = load_json(args.answer)
        except ValueError as exc:
            raise ConfigError(f"--answer: not JSON ({exc})") from None
    return run_session(
        args,
        registry,
        flow_path,
        checkpointer,
        lambda flow, run_options: flow.execute_sync(run_id=args.run_id, **options, **run_options),
    )


def _fork(args: argparse.Namespace, registry: Registry) -> int:
    checkpointer, flow_path = _prepare(args)
    patch = _parse_pairs(args.set, "--set", decode=True)
    inputs = _parse_pairs(args.input, "--input", decode=False)
    inputs.update(_parse_pairs(args.input_json, "--input-json", decode=True))

    def start(flow: Any, run_options: dict[str, Any]) -> Any:
        new_id = flow.fork(
            checkpointer,
            args.run_id,
            args.commit,
            new_run_id=args.new_run_id,
            patch=patch or None,
            inputs=inputs or None,
        )
        remember_run(checkpointer, new_id, flow_path, args)
        return flow.execute_sync(run_id=new_id, **run_options)

    return run_session(args, registry, flow_path, checkpointer, start)
