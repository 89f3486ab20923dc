"""The service's flow-sandbox settings: from keyword arguments, ``BACKPACKFLOW_*`` variables and
``serve`` options into the one policy every flow of the service runs under."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import pytest
from server_kit import cli_main

from backpackflow.policy import EgressDenied, EndpointSet
from backpackflow_server import Settings
from backpackflow_server.plugin import _serve_arguments, _settings


def test_the_default_policy_is_restrictive(tmp_path: Path) -> None:
    policy = Settings(files_dir=tmp_path).sandbox_policy()
    assert policy.files_root == tmp_path
    assert policy.env_allowlist == frozenset()
    assert policy.offload
    assert policy.egress is not None
    with pytest.raises(EgressDenied):
        policy.egress.check_address("127.0.0.1", 80)
    assert policy.templates.max_seconds == 2.0
    assert policy.templates.max_output == 1_000_000
    assert policy.templates.max_int_bits == 4096


def test_lists_come_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKPACKFLOW_FLOW_ENV_ALLOWLIST", "OPENAI_API_KEY, ANTHROPIC_API_KEY")
    monkeypatch.setenv("BACKPACKFLOW_EGRESS_ALLOW_NETWORKS", '["10.1.0.0/16", "127.0.0.1"]')
    monkeypatch.setenv("BACKPACKFLOW_EGRESS_DENY_NETWORKS", "203.0.113.0/24")
    monkeypatch.setenv("BACKPACKFLOW_EGRESS_ALLOW_HOSTS", "api.openai.com,*.corp.example")
    monkeypatch.setenv("BACKPACKFLOW_FLOW_SINKS", "webhook,file")
    monkeypatch.setenv("BACKPACKFLOW_TEMPLATE_MAX_SECONDS", "0.5")
    settings = Settings()
    policy = settings.sandbox_policy()
    assert policy.env_allowlist == {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    assert policy.egress is not None
    assert [str(n) for n in policy.egress.allow_networks] == ["10.1.0.0/16", "127.0.0.1/32"]
    assert [str(n) for n in policy.egress.deny_networks] == ["203.0.113.0/24"]
    assert policy.egress.allow_hosts == ("api.openai.com", "*.corp.example")
    assert settings.flow_sinks == ["webhook", "file"]
    assert policy.templates.max_seconds == 0.5


def test_a_bad_network_fails_at_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKPACKFLOW_EGRESS_ALLOW_NETWORKS", "10.0.0.0/8,intranet")
    with pytest.raises(ValueError, match="'intranet' is not an IP address or network"):
        Settings()


def test_serve_options_override_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKPACKFLOW_FLOW_ENV_ALLOWLIST", "FROM_ENV")
    parser = argparse.ArgumentParser()
    _serve_arguments(parser)
    args = parser.parse_args(
        [
            "--files-dir",
            str(tmp_path),
            "--env-allow",
            "A",
            "--env-allow",
            "B",
            "--egress-allow",
            "127.0.0.1",
            "--egress-deny",
            "198.51.100.0/24",
            "--egress-allow-host",
            "api.example.com",
            "--flow-sink",
            "webhook",
            "--template-timeout",
            "1.5",
        ]
    )
    settings = _settings(args)
    policy = settings.sandbox_policy()
    assert policy.files_root == tmp_path
    assert policy.env_allowlist == {"A", "B"}
    assert policy.egress is not None
    policy.egress.check_address("127.0.0.1", 80)
    with pytest.raises(EgressDenied):
        policy.egress.check_address("198.51.100.7", 80)
    assert policy.egress.allow_hosts == ("api.example.com",)
    assert policy.templates.max_seconds == 1.5


def test_the_services_own_address_is_denied_unless_allowed(tmp_path: Path) -> None:
    own = EndpointSet([(ipaddress.ip_address("127.0.0.1"), 8000)])
    settings = Settings(files_dir=tmp_path, egress_allow_networks=["127.0.0.1"])
    egress = settings.sandbox_policy(self_endpoints=own).egress
    assert egress is not None
    with pytest.raises(EgressDenied, match="own address"):
        egress.check_address("127.0.0.1", 8000)
    allowed = Settings(
        files_dir=tmp_path, egress_allow_networks=["127.0.0.1"], egress_allow_self=True
    )
    egress = allowed.sandbox_policy(self_endpoints=own).egress
    assert egress is not None
    egress.check_address("127.0.0.1", 8000)


def test_serve_refuses_a_bad_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--egress-allow", "not-a-network"]) == 2
    assert "'not-a-network' is not an IP address or network" in capsys.readouterr().err
