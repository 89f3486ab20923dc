"""Registration and configuration of the sinks as the ``run`` command will use them:
``--sink name[:VALUE]`` specs, options checked by cattrs and by each sink before any run starts,
and reports that print as JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sinks_support import HookServer, Reply, chain, event_ids, run_flow

from backpackflow.errors import BackpackFlowError, ConfigError
from backpackflow.events import make_sink, parse_sink_spec
from backpackflow.plugins import Registry, build_registry
from backpackflow_sinks import SinkConfigError
from backpackflow_sinks.console import ConsoleOptions, ConsoleSink
from backpackflow_sinks.jsonl import FileSinkOptions
from backpackflow_sinks.webhook import WebhookOptions


def test_the_three_sinks_and_the_command_are_registered(registry: Registry) -> None:
    assert registry.errors == []
    sinks = {name: (s.options, s.shorthand) for name, s in registry.event_sinks.items()}
    assert sinks == {
        "console": (ConsoleOptions, "mode"),
        "file": (FileSinkOptions, "path"),
        "webhook": (WebhookOptions, "url"),
    }
    assert all(s.description for s in registry.event_sinks.values())
    assert list(registry.commands) == ["inspect"]


def test_installed_entry_points_load_every_plugin_of_the_package() -> None:
    registry = build_registry(autoload=True)
    for name in ("sink_console", "sink_file", "sink_webhook", "inspect"):
        assert registry.plugins[name].status == "loaded", registry.plugins[name]
    assert {"console", "file", "webhook"} <= set(registry.event_sinks)
    assert registry.event_sink("file").plugin == "sink_file"
    assert registry.commands["inspect"].plugin == "inspect"


def test_specs_build_working_sinks_whose_reports_print_as_json(
    registry: Registry, tmp_path: Path, hook_server: Any, capsys: Any
) -> None:
    server: HookServer = hook_server(Reply(200))
    specs = ["console:quiet", f"file:{tmp_path}/run.jsonl", f"webhook:{server.url}"]
    sinks = []
    for spec in specs:
        name, options = parse_sink_spec(registry, spec)
        if name == "webhook":
            options["trust_env"] = False  # as --sink-option webhook.trust_env=false would
        sinks.append(make_sink(registry, name, options))
    result = run_flow(chain(5), sinks)
    reports = [sink.close() for sink in sinks]

    assert json.loads(json.dumps(reports)) == reports
    console_report, file_report, webhook_report = reports
    assert console_report["runs"] == 1 and console_report["mode"] == "quiet"
    assert file_report["events"] == webhook_report["sent"] == len(event_ids(result)) == 32
    assert "succeeded" in capsys.readouterr().err


def test_unknown_options_name_the_sink_and_the_option(registry: Registry) -> None:
    for name, options in [
        ("console", {"verbosity": 2}),
        ("file", {"path": "x.jsonl", "rotate": True}),
        ("webhook", {"url": "http://127.0.0.1:9/", "retries": 3}),
    ]:
        with pytest.raises(ConfigError) as caught:
            make_sink(registry, name, options)
        assert str(caught.value).startswith(f"sink {name!r}: ")
        assert "not allowed" in str(caught.value) or "unknown field" in str(caught.value)
        assert next(iter(set(options) - {"path", "url"})) in str(caught.value)


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({"url": "ftp://example.invalid/x"}, "url", "must be an http:// or https:// URL"),
        ({"url": "not a url"}, "url", "must be an http:// or https:// URL"),
        ({"url": "http://"}, "url", "has no host"),
        ({"url": "http://[::1"}, "url", "is not a valid URL"),
        ({"url": "http://127.0.0.1:9/", "timeout": 0}, "timeout", "must be a finite number > 0"),
        ({"url": "http://127.0.0.1:9/", "max_queue": 0}, "max_queue", "> 0"),
        ({"url": "http://127.0.0.1:9/", "secret": ""}, "secret", "must not be empty"),
        (
            {"url": "http://127.0.0.1:9/", "secret_env": "BPF_NO_SUCH_VAR"},
            "secret_env",
            "environment variable 'BPF_NO_SUCH_VAR' is not set",
        ),
        (
            {"url": "http://127.0.0.1:9/", "secret": "a", "secret_env": "B"},
            "secret_env",
            "give either 'secret' or 'secret_env'",
        ),
    ],
)
def test_webhook_config_errors(
    registry: Registry, options: dict[str, Any], option: str, message: str
) -> None:
    with pytest.raises(SinkConfigError) as caught:
        make_sink(registry, "webhook", options)
    error = caught.value
    assert (error.sink, error.option) == ("webhook", option)
    assert str(error).startswith(f"sink 'webhook': option {option!r}: ")
    assert message in str(error)
    assert isinstance(error, BackpackFlowError) and isinstance(error, ValueError)


def test_file_config_errors(registry: Registry, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cases = [
        ({"path": f"{blocker}/run.jsonl"}, "path", "cannot create directory"),
        ({"path": f"{blocker}/traces/"}, "path", "cannot create directory"),
        ({"path": str(tmp_path / "sub" / "dir") + "/", "batch_size": 0}, "batch_size", "> 0"),
        ({"path": str(tmp_path / "x.jsonl"), "max_bytes": -5}, "max_bytes", "> 0"),
        ({"path": str(tmp_path / "x.jsonl"), "backups": -1}, "backups", ">= 0"),
        ({"path": "  "}, "path", "must name a file or a directory"),
    ]
    for options, option, message in cases:
        with pytest.raises(SinkConfigError) as caught:
            make_sink(registry, "file", options)
        assert (caught.value.sink, caught.value.option) == ("file", option)
        assert message in str(caught.value), str(caught.value)
    with pytest.raises(SinkConfigError, match=r"cannot open .* for appending: Is a directory"):
        make_sink(registry, "file", {"path": str(tmp_path / "a-dir.jsonl") + "/x/.."})


def test_a_directory_that_is_not_writable_fails_early(registry: Registry) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    with pytest.raises(SinkConfigError, match="option 'path': directory '/proc/self' is not"):
        make_sink(registry, "file", {"path": "/proc/self/"})


def test_console_config_errors(registry: Registry) -> None:
    with pytest.raises(ConfigError, match=r"sink 'console': \$\.mode"):
        make_sink(registry, "console", {"mode": "loud"})
    with pytest.raises(ConfigError, match=r"sink 'console': \$\.max_chars"):
        make_sink(registry, "console", {"max_chars": "many"})
    with pytest.raises(SinkConfigError, match="option 'width': must be at least 20"):
        make_sink(registry, "console", {"width": 5})
    with pytest.raises(SinkConfigError, match="option 'max_chars': must be a finite number >= 0"):
        ConsoleSink(ConsoleOptions(max_chars=-1), file=io.StringIO())
    with pytest.raises(SinkConfigError, match="option 'mode': must be one of"):
        ConsoleSink(ConsoleOptions(mode="loud"), file=io.StringIO())  # type: ignore[arg-type]


def test_options_built_in_python_are_checked_too(tmp_path: Path) -> None:
    from backpackflow_sinks.jsonl import JsonlFileSink
    from backpackflow_sinks.webhook import WebhookSink

    with pytest.raises(SinkConfigError, match="option 'batch_size': expected int, got str"):
        JsonlFileSink(FileSinkOptions(path=str(tmp_path / "x"), batch_size="10"))  # type: ignore[arg-type]
    with pytest.raises(SinkConfigError, match="option 'timeout': expected a number, got True"):
        WebhookSink(WebhookOptions(url="http://127.0.0.1:9/", timeout=True))
    with pytest.raises(SinkConfigError, match="option 'url': expected str, got int"):
        WebhookSink(WebhookOptions(url=80))  # type: ignore[arg-type]
