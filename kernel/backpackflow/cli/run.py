"""``backpackflow run``: run a flow with a live trace, sinks, a sandbox and a summary."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from backpackflow.backpack import Backpack
from backpackflow.config import structure
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
from backpackflow.runner import DependencyContainer

# ------------------------------------------------------------------------------- run

DEFAULT_CACHE_PATH = ".backpackflow/llm-cache.sqlite"


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", metavar="FLOW", help="flow config file (JSON)")
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a run input (a string); repeat for several",
    )
    parser.add_argument(
        "--input-json",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a run input given as JSON (numbers, lists, objects)",
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


def _sandbox_policy(args: argparse.Namespace) -> SandboxPolicy | None:
    """The policy ``--sandbox`` (or an option implying it) asks for; ``None``: trusted."""
    if not (args.sandbox or args.env_allow or args.egress_allow):
        return None

    try:
        egress = EgressPolicy.from_settings(allow_networks=args.egress_allow)
    except ValueError as exc:
        raise ConfigError(f"--egress-allow: {exc}") from None
    return SandboxPolicy(
        files_root=Path(args.flow).resolve().parent,
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
    given = _parse_pairs(args.input, "--input", decode=False)
    given.update(_parse_pairs(args.input_json, "--input-json", decode=True))
    policy = _sandbox_policy(args)
    flow = loader.load_flow(Path(args.flow), deps, policy=policy)
    inputs = prepare_inputs(flow, given)

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
    try:
        result = flow.execute_sync(Backpack(), inputs=inputs, events=events)
    finally:
        reports = {}
        for name, sink in sinks:
            try:
                reports[name] = dict(sink.close())
            except Exception as exc:  # noqa: BLE001 - a sink's report must not hide the run
                reports[name] = {"error": f"{type(exc).__name__}: {exc}"}
    summary = summarize(events.get_events(run_id=result.run_id))
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "error": str(result.error) if result.error else None,
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
        if result.error is not None:
            print(f"error: {type(result.error).__name__}: {result.error}", file=sys.stderr)
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
