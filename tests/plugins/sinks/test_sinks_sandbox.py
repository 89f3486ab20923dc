"""Sinks a flow declares, built under a restrictive sandbox policy: a webhook posts only where
the egress policy allows (checked statically when built, and after DNS for every connection),
reads ``secret_env`` only from the allowlist; a file sink writes only below the files root.
Secret-named options are masked in the events of the flow that declared them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sinks_support import HookServer, Reply, chain, run_flow

import backpackflow_sinks.console
import backpackflow_sinks.jsonl
import backpackflow_sinks.webhook
from backpackflow.events import make_sink
from backpackflow.plugins import build_registry
from backpackflow.policy import EgressPolicy, SandboxPolicy, SecretMasker
from backpackflow_sinks.jsonl import JsonlFileSink
from backpackflow_sinks.webhook import WebhookOptions, WebhookSink


def policy(tmp_path: Path, **changes: object) -> SandboxPolicy:
    options: dict[str, object] = {
        "files_root": tmp_path / "files",
        "egress": EgressPolicy(),
        "env_allowlist": (),
    }
    options.update(changes)
    return SandboxPolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:8000/api/workflows",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.0.0.1/x",
    ],
)
def test_a_webhook_to_an_internal_address_is_refused_when_built(tmp_path: Path, url: str) -> None:
    with pytest.raises(Exception, match="refused") as refused:
        WebhookSink(WebhookOptions(url=url), policy=policy(tmp_path))
    assert "option 'url'" in str(refused.value)


def test_a_webhook_to_a_name_resolving_inside_is_refused_at_connect(
    tmp_path: Path, hook_server
) -> None:
    server: HookServer = hook_server(Reply(200))
    port = server.url.rsplit(":", 1)[1]
    # a public-looking name that DNS answers with 127.0.0.1: passes when built, refused when
    # the sink connects, and nothing reaches the endpoint
    egress = EgressPolicy(resolver=lambda host, port: ["127.0.0.1"])
    sink = WebhookSink(
        WebhookOptions(
            url=f"http://hooks.example.com:{port}/in",
            headers={"Authorization": "Bearer wh-secret-token"},
            max_retries=3,
            backoff=0.01,
        ),
        policy=policy(tmp_path, egress=egress),
    )
    run_flow(chain(2), [sink])
    report = sink.close(timeout=3)
    assert server.requests == []
    assert report["sent"] == 0
    assert report["retried"] == 0  # a denied destination is not retried
    assert report["dropped"]["rejected"] == report["received"] > 0
    assert "loopback" in report["last_error"]


def test_an_allowed_network_is_reached(tmp_path: Path, hook_server) -> None:
    server: HookServer = hook_server(Reply(200))
    allowed = EgressPolicy.from_settings(allow_networks=["127.0.0.1"])
    sink = WebhookSink(WebhookOptions(url=server.url), policy=policy(tmp_path, egress=allowed))
    run_flow(chain(1), [sink])
    report = sink.close(timeout=3)
    assert report["sent"] == report["received"] > 0
    assert server.requests


def test_secret_env_reads_only_allowlisted_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPF_SINK_SERVER_SECRET", "server-only-secret")
    allowed = EgressPolicy(resolver=lambda host, port: ["93.184.216.34"])
    options = WebhookOptions(url="https://hooks.example.com/x", secret_env="BPF_SINK_SERVER_SECRET")
    with pytest.raises(Exception, match="not one the operator lets flows read") as refused:
        WebhookSink(options, policy=policy(tmp_path, egress=allowed))
    assert "server-only-secret" not in str(refused.value)
    permitted = policy(tmp_path, egress=allowed, env_allowlist={"BPF_SINK_SERVER_SECRET"})
    WebhookSink(options, policy=permitted).close(timeout=0)


def test_a_file_sink_writes_only_below_the_files_root(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    sandbox = policy(tmp_path)
    for outside in ("../escaped.jsonl", "/tmp/bpf-sink-escaped.jsonl", "../../x/"):
        with pytest.raises(Exception, match="outside the files folder"):
            JsonlFileSink(backpackflow_sinks.jsonl.FileSinkOptions(path=outside), policy=sandbox)
    assert not (tmp_path / "escaped.jsonl").exists()
    sink = JsonlFileSink(backpackflow_sinks.jsonl.FileSinkOptions(path="run.jsonl"), policy=sandbox)
    run_flow(chain(1), [sink])
    sink.close()
    assert (tmp_path / "files" / "run.jsonl").stat().st_size > 0


def test_make_sink_passes_the_policy_and_collects_secret_options(tmp_path: Path) -> None:
    registry = build_registry(
        plugins=[backpackflow_sinks.webhook, backpackflow_sinks.jsonl, backpackflow_sinks.console],
        autoload=False,
    )
    secrets = SecretMasker()
    with pytest.raises(Exception, match="refused"):
        make_sink(
            registry,
            "webhook",
            {"url": "http://127.0.0.1/x", "secret": "hmac-key-123456"},
            policy=policy(tmp_path),
            secrets=secrets,
        )
    assert secrets.mask_text("key hmac-key-123456") == "key ***"
