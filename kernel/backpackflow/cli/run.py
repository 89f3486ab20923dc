"""``backpackflow run``: run a flow with a live trace, sinks, a sandbox and a summary."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from backpackflow.config import structure, value_problems
from backpackflow.errors import ConfigError
from backpackflow.events import (
    EventStreamer,
    attach_sinks,
    format_table,
    make_sink,
    parse_sink_spec,
    summarize,
)
from backpackflow.jsondata import decimal_text
from backpackflow.jsondata import loads as load_json
from backpackflow.loader import FlowLoader, prepare_inputs
from backpackflow.plugins import Registry
from backpackflow.policy import EgressPolicy, SandboxPolicy, TemplateBudget
from backpackflow.runner import (
    DURABILITY_MODES,
    DependencyContainer,
    FileCheckpointer,
    Flow,
    RunResult,
)

# ------------------------------------------------------------------------------- run

DEFAULT_CACHE_PATH = ".backpackflow/llm-cache.sqlite"


DEFAULT_CHECKPOINTS = ".backpackflow/checkpoints"
#: The exit status of a run that paused for an answer it could not ask for at a terminal.
EXIT_PAUSED = 3


def _input_arguments(parser: argparse.ArgumentParser, what: str = "a run input") -> None:
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"{what} (a string); repeat for several",
    )
    parser.add_argument(
        "--input-json",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help=f"{what} given as JSON (numbers, lists, objects)",
    )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", metavar="FLOW", help="flow config file (JSON)")
    _input_arguments(parser)
    parser.add_argument(
        "--run-id", metavar="ID", help="the run's id (default: a new one); its checkpoint's name"
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="do not checkpoint the run (it then cannot be resumed, paused or forked)",
    )
    _trace_arguments(parser)
    _sandbox_arguments(parser)


def _trace_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that runs a flow shares: sinks, the cache, the checkpoints'
    folder, the output."""
    parser.add_argument(
        "--durability",
        choices=DURABILITY_MODES,
        default="node",
        help="when the checkpoint is written: after each node (default), after each Backpack "
        "commit, or when the run ends (see docs/durable-runs.md)",
    )
    parser.add_argument(
        "--checkpoints",
        default=DEFAULT_CHECKPOINTS,
        metavar="DIR",
        help=f"folder of the run checkpoints (default {DEFAULT_CHECKPOINTS})",
    )
    parser.add_argument(
        "--no-input",
        action="store_true",
        help="never ask at the terminal: a run that pauses for an answer exits with a resume "
        f"hint (exit status {EXIT_PAUSED}), as when stdin is not a terminal",
    )
    parser.add_argument(
        "--sink",
        action="append",
        default=None,
        metavar="SPEC",
        help="event sink, e.g. console, file:run.jsonl, webhook:https://... (repeatable; "
        "default: console); 'none' for no sink",
    )
    parser.add_argument(
        "--sink-option",
        action="append",
        default=[],
        metavar="SINK.FIELD=VALUE",
        help="an option of a sink, e.g. console.verbose=true (JSON values are decoded)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not use the LLM response cache")
    parser.add_argument(
        "--cache-path",
        default=DEFAULT_CACHE_PATH,
        help=f"SQLite file of the LLM response cache (default {DEFAULT_CACHE_PATH})",
    )
    detail = parser.add_mutually_exclusive_group()
    detail.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="console trace with each step's prompt and raw result (console.verbose=true)",
    )
    detail.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="console trace of errors, guardrails and the run's end only (console.mode=quiet)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    sandbox = parser.add_argument_group(
        "sandbox",
        "run a flow you did not write under the restrictions the service applies to API flows "
        "(files only below the flow's folder, public network addresses only, no environment "
        "variables, tight template budgets)",
    )
    sandbox.add_argument("--sandbox", action="store_true", help="apply the sandbox policy")
    sandbox.add_argument(
        "--env-allow",
        action="append",
        default=[],
        metavar="NAME",
        help="an environment variable the flow may read (implies --sandbox; repeatable)",
    )
    sandbox.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="NETWORK",
        help="a non-public network the flow may reach, e.g. 10.0.0.0/8 or 127.0.0.1 (implies "
        "--sandbox; repeatable)",
    )


def _sandbox_policy(args: argparse.Namespace, flow_path: Path) -> SandboxPolicy | None:
    """The policy ``--sandbox`` (or an option implying it) asks for; ``None``: trusted."""
    if not (args.sandbox or args.env_allow or args.egress_allow):
        return None

    try:
        egress = EgressPolicy.from_settings(allow_networks=args.egress_allow)
    except ValueError as exc:
        raise ConfigError(f"--egress-allow: {exc}") from None
    return SandboxPolicy(
        files_root=flow_path.resolve().parent,
        egress=egress,
        env_allowlist=frozenset(args.env_allow),
        templates=TemplateBudget(max_int_bits=4096, max_seconds=2.0, max_output=1_000_000),
    )


def _parse_pairs(pairs: list[str], what: str, decode: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"{what} {pair!r}: expected NAME=VALUE")
        if decode:
            try:
                values[name] = load_json(value)
            except ValueError as exc:
                raise ConfigError(f"{what} {pair!r}: the value is not JSON ({exc})") from None
        else:
            values[name] = value
    return values


def _sink_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, value = pair.partition("=")
        sink, dot, field = target.partition(".")
        if not sep or not dot or not sink or not field:
            raise ConfigError(f"--sink-option {pair!r}: expected SINK.FIELD=VALUE")
        try:
            decoded: Any = load_json(value)
        except ValueError:
            decoded = value
        options.setdefault(sink, {})[field] = decoded
    return options


def _run(args: argparse.Namespace, registry: Registry) -> int:
    given = _parse_pairs(args.input, "--input", decode=False)
    given.update(_parse_pairs(args.input_json, "--input-json", decode=True))
    checkpointer = None if args.no_checkpoint else FileCheckpointer(args.checkpoints)
    if checkpointer is not None and args.run_id and checkpointer.records(args.run_id) is not None:
        raise ConfigError(
            f"--run-id {args.run_id!r}: that run has a checkpoint already; 'backpackflow resume "
            f"{args.run_id}' goes on with it"
        )
    return run_session(
        args,
        registry,
        Path(args.flow),
        checkpointer,
        lambda flow, options: flow.execute_sync(
            inputs=prepare_inputs(flow, given), run_id=args.run_id, **options
        ),
    )


def _load_for_cli(
    args: argparse.Namespace, registry: Registry, flow_path: Path
) -> tuple[Flow, SandboxPolicy | None]:
    loader = FlowLoader(registry)
    deps = DependencyContainer()
    if args.no_cache:
        # no response cache, not even one the flow declares (what deps holds wins over it)
        deps.register("llm_cache", None)
    elif "sqlite_cache" in registry.dependency_factories:
        factory = registry.dependency_factories["sqlite_cache"]
        # --cache-path is relative to where the command runs, not to the flow's folder; the
        # cache is the operator's, not the flow's: built outside the flow's sandbox policy (as
        # the service builds its own), a --sandbox run keeps it
        cache_path = str(Path(args.cache_path).resolve())
        cache_options = _structure_options(factory.options, {"path": cache_path})
        deps.register_factory("llm_cache", lambda _, o=cache_options, f=factory.factory: f(o, None))
    policy = _sandbox_policy(args, flow_path)
    return loader.load_flow(flow_path, deps, policy=policy), policy


def run_session(
    args: argparse.Namespace,
    registry: Registry,
    flow_path: Path,
    checkpointer: FileCheckpointer | None,
    start: Callable[[Flow, dict[str, Any]], RunResult],
) -> int:
    """Load the flow, attach the sinks, run ``start(flow, options)`` and report. A run that
    pauses for an answer asks at the terminal when it can (and goes on), else exits with a
    resume hint (status :data:`EXIT_PAUSED`)."""
    flow, policy = _load_for_cli(args, registry, flow_path)

    if args.sink is not None:
        specs = args.sink
    elif "console" in registry.event_sinks:
        specs = ["console"]
    else:  # the console sink's extra is not installed: the summary still prints
        specs = []
    config = getattr(flow, "config", None)
    sink_options = _sink_options(args.sink_option)
    if args.verbose or args.quiet:
        if "console" not in specs:
            raise ConfigError("--verbose and --quiet shape the console trace; add --sink console")
        console = sink_options.setdefault("console", {})
        console.setdefault("verbose" if args.verbose else "mode", True if args.verbose else "quiet")
    sinks = []
    for spec in specs:
        if spec == "none":
            continue
        name, options = parse_sink_spec(registry, spec)
        options.update(sink_options.pop(name, {}))
        # the user's own sinks: trusted; their secrets (--sink-option webhook.secret=...) are
        # masked in the events all the same
        sinks.append((name, make_sink(registry, name, options, secrets=flow.secrets)))
    for sink_config in getattr(config, "sinks", ()) or ():
        options = {**sink_config.options, **sink_options.pop(sink_config.type, {})}
        sink = make_sink(registry, sink_config.type, options, policy=policy, secrets=flow.secrets)
        sinks.append((sink_config.type, sink))
    if sink_options:
        raise ConfigError(
            f"--sink-option for sink(s) not in use: {', '.join(sorted(sink_options))}"
        )

    events = EventStreamer()
    attach_sinks(events, [sink for _, sink in sinks])
    run_options: dict[str, Any] = {"events": events}
    if checkpointer is not None:
        run_options.update(checkpointer=checkpointer, durability=args.durability)
    try:
        result = start(flow, run_options)
        if checkpointer is not None:
            remember_run(checkpointer, result.run_id, flow_path, args)
        while result.status == "paused" and _interactive(args):
            assert checkpointer is not None
            answer = ask(result.error)
            result = flow.execute_sync(run_id=result.run_id, answer=answer, **run_options)
    finally:
        reports = {}
        for name, sink in sinks:
            try:
                reports[name] = dict(sink.close())
            except Exception as exc:  # noqa: BLE001 - a sink's report must not hide the run
                reports[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if checkpointer is not None:
            checkpointer.close()
    summary = summarize(events.get_events(run_id=result.run_id))
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "error": str(result.error) if result.error else None,
                    "paused": _paused_json(result.error) if result.status == "paused" else None,
                    "outputs": dict(result.outputs),
                    "totals": {
                        **result.totals,
                        "cost": decimal_text(Decimal(result.totals["cost"])),
                    },
                    "steps": [
                        {
                            **attrs.asdict(s),
                            "cost": decimal_text(s.cost),
                            "cost_saved": decimal_text(s.cost_saved),
                        }
                        for s in summary.steps
                    ],
                    "sinks": reports,
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"\nrun {result.run_id} of {flow.name}: {result.status}")
        print(format_table(summary))
        for key, value in result.outputs.items():
            print(f"output {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
        for name, report in reports.items():
            if report:  # what the sinks did is about the run, not its result: stderr
                print(f"sink {name}: {_sink_report_text(report)}", file=sys.stderr)
        if result.error is not None and result.status != "paused":
            print(f"error: {type(result.error).__name__}: {result.error}", file=sys.stderr)
    if result.status == "paused":
        print(resume_hint(result.error, args), file=sys.stderr)
        return EXIT_PAUSED
    return 0 if result.ok else 1


def _sink_report_text(report: dict[str, Any]) -> str:
    """A sink's report on one line: ``events=30, files=run.jsonl, dropped=0`` (counts by
    reason only for what was dropped); ``--json`` has the report as it is."""
    parts = []
    for key, value in report.items():
        if key == "sink" or value is None:
            continue
        if isinstance(value, dict):
            counted = {k: v for k, v in value.items() if v}
            total = sum(v for v in counted.values() if isinstance(v, int))
            detail = ", ".join(f"{k}={v}" for k, v in counted.items())
            value = f"{total} ({detail})" if counted else 0
        elif isinstance(value, list | tuple):
            value = " ".join(str(item) for item in value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _structure_options(options_class: type | None, data: dict[str, Any]) -> Any:
    if options_class is None:
        return None

    return structure(data, options_class)


# ------------------------------------------------------------------------------- pausing

_SIDECAR = ".cli.json"


def remember_run(
    checkpointer: FileCheckpointer, run_id: str, flow_path: Path, args: argparse.Namespace
) -> None:
    """Note beside the checkpoint what ``resume`` and ``fork`` need to run it again: the flow
    file and the sandbox it ran under (a resumed run keeps its policy)."""
    path = checkpointer.directory / f"{run_id}{_SIDECAR}"
    if path.exists():
        return
    path.write_text(
        json.dumps(
            {
                "flow": str(flow_path.resolve()),
                "sandbox": bool(args.sandbox),
                "env_allow": list(args.env_allow),
                "egress_allow": list(args.egress_allow),
            }
        ),
        encoding="utf-8",
    )


def recalled_run(checkpointer: FileCheckpointer, run_id: str) -> dict[str, Any]:
    """What :func:`remember_run` noted for ``run_id``."""
    if checkpointer.records(run_id) is None:
        raise ConfigError(
            f"run {run_id!r} has no checkpoint in {checkpointer.directory} (see --checkpoints)"
        )
    path = checkpointer.directory / f"{run_id}{_SIDECAR}"
    try:
        noted: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        noted = {}
    return noted


def _interactive(args: argparse.Namespace) -> bool:
    return not args.no_input and not args.json and sys.stdin.isatty() and sys.stdout.isatty()


def _paused_json(paused: Any) -> dict[str, Any]:
    return {
        "node_id": getattr(paused, "node_id", None),
        "prompt": getattr(paused, "prompt", None),
        "schema": getattr(paused, "schema", True),
        "deadline": getattr(paused, "deadline", None),
    }


def resume_hint(paused: Any, args: argparse.Namespace) -> str:
    where = "" if args.checkpoints == DEFAULT_CHECKPOINTS else f" --checkpoints {args.checkpoints}"
    schema = json.dumps(getattr(paused, "schema", True))
    return (
        f"run {paused.run_id} paused at node {paused.node_id!r}: {paused.prompt}\n"
        f"answer (JSON matching {schema}) with:\n"
        f"  backpackflow resume {paused.run_id}{where} --answer 'JSON'"
    )


def ask(paused: Any) -> Any:
    """Ask for an answer at the terminal until one matches the schema (JSON; a bare word for
    a string schema)."""
    schema = getattr(paused, "schema", True)
    print(f"\n{paused.prompt}", file=sys.stderr)
    if schema is not True:
        print(f"(answer as JSON matching {json.dumps(schema)})", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            raise ConfigError(f"no answer to {paused.prompt!r} (end of input)")
        text = line.strip()
        try:
            answer: Any = load_json(text)
        except ValueError:
            answer = text  # a bare word: a string answer
        problems = value_problems(schema, answer, "answer")
        if not problems:
            return answer
        print("; ".join(problems), file=sys.stderr)
