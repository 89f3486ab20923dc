"""The kernel's flow commands ``validate``, ``schema export``, ``migrate`` and ``examples`` (``run``
is in :mod:`.run`); :mod:`.builtin` registers them through ``backpackflow_register_commands``,
as any plugin registers its commands."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from backpackflow.config import CURRENT_VERSION, KeepUnset
from backpackflow.errors import ConfigError
from backpackflow.loader import FlowLoader, dumps_schema, export_schema
from backpackflow.plugins import Registry

# ------------------------------------------------------------------------------- validate


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="flow config files (JSON)")
    parser.add_argument(
        "--allow-unset-env",
        action="store_true",
        help="check ${NAME} references as written instead of failing on unset variables "
        "(for CI jobs that have no secrets)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", "-q", action="store_true", help="print problems only")
    output.add_argument(
        "--json", action="store_true", help="print one JSON report of every file instead of text"
    )


def _validate(args: argparse.Namespace, registry: Registry) -> int:

    loader = FlowLoader(registry)
    environ = KeepUnset(os.environ) if args.allow_unset_env else None
    reports = []
    for name in args.files:
        report = loader.validate(Path(name), environ=environ)
        reports.append(
            {
                "file": name,
                "ok": not report.errors,
                "errors": report.errors,
                "warnings": report.warnings,
            }
        )
        if args.json:
            continue
        for problem in report.errors:
            print(f"{name}: {problem}", file=sys.stderr)
        for warning in report.warnings:
            print(f"{name}: warning: {warning}", file=sys.stderr)
        if not report.errors and not args.quiet:
            print(f"{name}: ok")
    ok = all(report["ok"] for report in reports)
    if args.json:
        print(json.dumps({"ok": ok, "files": reports}, indent=2, ensure_ascii=False))
    elif not ok and not args.allow_unset_env and _unset_env_only(loader, reports):
        print(
            "note: only unset environment variables fail here; where the secrets are not set "
            "(a CI job), 'backpackflow validate --allow-unset-env' checks ${NAME} references "
            "as written",
            file=sys.stderr,
        )
    return 0 if ok else 1


def _unset_env_only(loader: Any, reports: list[dict[str, Any]]) -> bool:
    """Whether every failed file passes when unset ``${NAME}`` references are kept as written."""
    return all(
        not loader.validate(Path(report["file"]), environ=KeepUnset(os.environ)).errors
        for report in reports
        if not report["ok"]
    )


# ------------------------------------------------------------------------------- schema


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    export = sub.add_parser(
        "export", help="write the flow schema composed with every installed node type"
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument(
        "--version", default=CURRENT_VERSION, help=f"config version (default {CURRENT_VERSION})"
    )


def _schema(args: argparse.Namespace, registry: Registry) -> int:

    if args.version != CURRENT_VERSION:
        raise ConfigError(
            f"only the current config version {CURRENT_VERSION} can be exported; published "
            f"versions are in the package (backpackflow/schemas/flow/) and under schemas/"
        )
    text = dumps_schema(export_schema(registry))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------------------- migrate


def _migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="flow config file to migrate")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--output", "-o", metavar="OUT", help="write the migrated config to OUT (default: stdout)"
    )
    target.add_argument("--in-place", action="store_true", help="rewrite FILE itself")
    target.add_argument(
        "--check", action="store_true", help="only say whether FILE needs migrating (exit 1)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON report (with the migrated config as 'document' when it goes to "
        "stdout) instead of text",
    )


def _migrate(args: argparse.Namespace, registry: Registry) -> int:
    """The migrated config goes to stdout unless ``--output`` or ``--in-place`` says where to
    write it: a file is never rewritten without being asked. Notes go to stderr."""

    loader = FlowLoader(registry)
    path = Path(args.file)
    raw, label = loader.read(path)
    version = raw.get("version")
    report: dict[str, Any] = {
        "file": args.file,
        "version": version,
        "current_version": CURRENT_VERSION,
        "needs_migration": version != CURRENT_VERSION,
        "written": None,
        "errors": [],
    }
    if args.check:
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        elif report["needs_migration"]:
            print(
                f"{label}: version {version!r} needs migrating to {CURRENT_VERSION}",
                file=sys.stderr,
            )
        else:
            print(f"{label}: already at version {CURRENT_VERSION}", file=sys.stderr)
        return 1 if report["needs_migration"] else 0
    migrated = loader.migrate(raw, label=label)
    problems = loader.validate(migrated).errors if report["needs_migration"] else []
    if problems:
        report["errors"] = problems
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        for problem in problems:
            print(f"{label} (migrated): {problem}", file=sys.stderr)
        return 1
    text = json.dumps(migrated, indent=2, ensure_ascii=False) + "\n"
    out = path if args.in_place else Path(args.output) if args.output else None
    if out is not None and (out != path or report["needs_migration"]):
        out.write_text(text, encoding="utf-8")
        report["written"] = str(out)
    if args.json:
        if out is None:
            report["document"] = migrated
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif out is None:
        sys.stdout.write(text)
    if not report["needs_migration"]:
        note = f"already at version {CURRENT_VERSION}"
    else:
        note = f"migrated {version} -> {CURRENT_VERSION}"
    where = f", wrote {out}" if report["written"] else "" if out is not None else " (on stdout)"
    print(f"{label}: {note}{where}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------- examples


def _examples_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="examples_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list the example flows the installed plugins ship")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    copy = sub.add_parser("copy", help="copy an example's folder out, to run or edit it")
    copy.add_argument("name", metavar="NAME", help="the example (see 'backpackflow examples list')")
    copy.add_argument(
        "directory",
        metavar="DIR",
        nargs="?",
        help="where to copy it: a new or empty folder (default: ./NAME)",
    )


def _examples(args: argparse.Namespace, registry: Registry) -> int:
    if args.examples_command == "copy":
        return _copy_example(args.name, Path(args.directory or args.name), registry)
    examples = sorted(registry.examples.values(), key=lambda e: e.name)
    if args.json:
        listing = [
            {
                "name": e.name,
                "flow": e.flow,
                "description": e.description,
                "plugin": e.plugin,
                "folder": str(e.folder),
            }
            for e in examples
        ]
        print(json.dumps({"examples": listing}, indent=2, ensure_ascii=False))
        return 0
    if not examples:
        print("no examples installed", file=sys.stderr)
        return 0
    name_width = max(len(e.name) for e in examples)
    flow_width = max(len(e.flow) for e in examples)
    for e in examples:
        print(f"{e.name:<{name_width}}  {e.flow:<{flow_width}}  {e.description}".rstrip())
    return 0


def _copy_example(name: str, target: Path, registry: Registry) -> int:

    example = registry.example(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an empty folder: copy to a new one")
    shutil.copytree(
        example.folder,
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"),
    )
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    print(f"copied example {name!r} to {target}: {', '.join(files)}")
    print(f"run it: backpackflow run {target / example.flow}")
    return 0
