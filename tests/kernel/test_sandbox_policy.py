"""The sandbox policy: a files root that flows cannot leave, an environment allowlist that
``${NAME}`` references and indirect reads obey, and the policy reaching every run of a flow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backpackflow import Backpack, FlowLoader, Node, current_run
from backpackflow.config import KeepUnset, resolve_env_refs
from backpackflow.errors import ConfigError
from backpackflow.plugins import build_registry
from backpackflow.policy import (
    POLICY,
    SECRETS,
    TRUSTED,
    SandboxPolicy,
    SandboxViolation,
    SecretMasker,
    TemplateBudget,
    policy_of,
)
from backpackflow.runner import current_policy


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A files root holding a file, with a secret file and the service's database beside it."""
    files = tmp_path / "files"
    (files / "docs").mkdir(parents=True)
    (files / "docs" / "notes.md").write_text("field notes", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("TOP SECRET", encoding="utf-8")
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://admin:pw@db/prod", encoding="utf-8")
    return files


def read(policy: SandboxPolicy, path: str, base: Path, max_bytes: int = 1000) -> bytes:
    return policy.read_file(path, base, max_bytes=max_bytes, what="read_file")


# ------------------------------------------------------------------------------ files


def test_files_below_the_root_are_read(root: Path) -> None:
    policy = SandboxPolicy(files_root=root)
    assert read(policy, "docs/notes.md", root) == b"field notes"
    base = policy.file_base(root, "docs", what="node 'n'")
    assert read(policy, "notes.md", base) == b"field notes"


@pytest.mark.parametrize("path", ["../secret.txt", "../.env", "/etc/passwd", "docs/../../.env"])
def test_paths_leaving_the_root_are_refused(root: Path, path: str) -> None:
    with pytest.raises(SandboxViolation, match="outside the flow's folder"):
        read(SandboxPolicy(files_root=root), path, root)


@pytest.mark.parametrize("base_dir", ["/", "..", "../..", "/etc", "docs/../.."])
def test_a_base_dir_leaving_the_root_is_refused(root: Path, base_dir: str) -> None:
    with pytest.raises(SandboxViolation, match=f"base_dir {base_dir!r} leaves the files folder"):
        SandboxPolicy(files_root=root).file_base(root, base_dir, what="node 'n'")


def test_trusted_use_keeps_reading_wherever_base_dir_points(root: Path) -> None:
    # one's own flow may point base_dir anywhere, as before; paths still stay below it
    base = TRUSTED.file_base(root, "..", what="node 'n'")
    assert read(TRUSTED, "secret.txt", base) == b"TOP SECRET"
    with pytest.raises(SandboxViolation, match="outside the flow's folder"):
        read(TRUSTED, "../secret.txt", root)


def test_a_symbolic_link_out_of_the_root_is_refused(root: Path) -> None:
    (root / "docs" / "innocent.md").symlink_to(root.parent / "secret.txt")
    (root / "escape").symlink_to(root.parent)
    policy = SandboxPolicy(files_root=root)
    with pytest.raises(SandboxViolation):
        read(policy, "docs/innocent.md", root)
    with pytest.raises(SandboxViolation):
        read(policy, "escape/secret.txt", root)
    with pytest.raises(SandboxViolation, match="leaves the files folder"):
        policy.file_base(root, "escape", what="node 'n'")


def test_a_link_inside_the_root_is_followed(root: Path) -> None:
    (root / "latest.md").symlink_to(root / "docs" / "notes.md")
    assert read(SandboxPolicy(files_root=root), "latest.md", root) == b"field notes"


def test_denied_files_are_refused_even_below_the_root(root: Path) -> None:
    database = root / "service.db"
    database.write_bytes(b"SQLite format 3\x00")
    policy = SandboxPolicy(files_root=root, files_deny=(database,))
    with pytest.raises(SandboxViolation, match="may not be used"):
        read(policy, "service.db", root)
    with pytest.raises(SandboxViolation, match="may not be used"):
        read(policy, "docs/../service.db", root)


def test_only_regular_files_are_read(root: Path) -> None:
    os.mkfifo(root / "pipe")  # would block a reader forever
    policy = SandboxPolicy(files_root=root)
    with pytest.raises(SandboxViolation, match="not a regular file"):
        read(policy, "pipe", root)
    with pytest.raises(SandboxViolation, match="not a regular file"):
        read(policy, "docs", root)
    with pytest.raises(SandboxViolation, match=r"no file 'missing\.md'"):
        read(policy, "missing.md", root)
    with pytest.raises(SandboxViolation, match="not a file name"):
        read(policy, "docs/notes.md\x00.png", root)


def test_reads_stop_at_max_bytes(root: Path) -> None:
    with pytest.raises(SandboxViolation, match="over max_bytes=5"):
        read(SandboxPolicy(files_root=root), "docs/notes.md", root, max_bytes=5)


def test_no_server_path_in_refusals(root: Path) -> None:
    with pytest.raises(SandboxViolation) as refused:
        read(SandboxPolicy(files_root=root), "../secret.txt", root)
    assert str(root) not in str(refused.value)


# ------------------------------------------------------------------------------ environment


def test_references_resolve_only_from_the_allowlist() -> None:
    source = {"ALLOWED": "a-value", "DATABASE_URL": "postgresql://admin:hunter2@db/prod"}
    env = SandboxPolicy(env_allowlist={"ALLOWED"}).environ(source)
    assert resolve_env_refs({"a": "${ALLOWED}"}, environ=env) == {"a": "a-value"}
    with pytest.raises(ConfigError) as refused:
        resolve_env_refs({"db": "${DATABASE_URL}"}, environ=env)
    message = str(refused.value)
    assert "$.db: environment variable DATABASE_URL is not one the operator lets flows read" in (
        message
    )
    assert "--env-allow" in message
    assert "hunter2" not in message


def test_a_refused_reference_with_a_default_takes_the_default() -> None:
    env = SandboxPolicy(env_allowlist=()).environ({"HOME": "/root"})
    assert resolve_env_refs("${HOME:-/tmp}", environ=env) == "/tmp"


def test_keep_unset_keeps_the_refusals_of_a_restricted_environment() -> None:
    env = KeepUnset(SandboxPolicy(env_allowlist={"SET", "UNSET"}).environ({"SET": "v", "X": "1"}))
    assert resolve_env_refs("${UNSET}", environ=env) == "${UNSET}"  # allowed, just not set yet
    with pytest.raises(ConfigError, match="X is not one the operator lets flows read"):
        resolve_env_refs("${X}", environ=env)


def test_the_restricted_environment_hides_other_names() -> None:
    env = SandboxPolicy(env_allowlist={"A"}).environ({"A": "1", "B": "2"})
    assert dict(env) == {"A": "1"}
    assert "B" not in env
    assert env.get("B") is None
    assert "2" not in repr(env)


def test_indirect_reads_go_through_the_policy_and_are_masked() -> None:
    secrets = SecretMasker()
    policy = SandboxPolicy(env_allowlist={"BPF_POLICY_TEST_KEY"})
    os.environ["BPF_POLICY_TEST_KEY"] = "sk-live-0123456789"
    try:
        assert policy.getenv("BPF_POLICY_TEST_KEY", secrets) == "sk-live-0123456789"
    finally:
        del os.environ["BPF_POLICY_TEST_KEY"]
    assert secrets.mask_text("key=sk-live-0123456789") == "key=${BPF_POLICY_TEST_KEY}"
    with pytest.raises(SandboxViolation, match="HOME is not one the operator lets flows read"):
        policy.getenv("HOME", secrets)
    assert TRUSTED.getenv("BPF_POLICY_TEST_UNSET") is None


# ------------------------------------------------------------------------------ reaching runs


class _Seen(Node):
    """Records what the run's policy is as the node sees it."""

    def exec(self, prep_res: object) -> object:
        return current_policy() is current_run().policy and current_run().policy.files_root

    def post(self, backpack: object, prep_res: object, exec_res: object) -> None:
        backpack.pack("seen", str(exec_res))  # type: ignore[attr-defined]


def _loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("seen", _Seen)
    return loader


def test_a_loaded_flow_hands_its_policy_to_runs_and_dependency_factories(root: Path) -> None:
    policy = SandboxPolicy(files_root=root, env_allowlist=())
    doc = {"version": "2.0.0", "nodes": [{"type": "seen", "id": "s"}]}
    flow = _loader().load_flow(doc, policy=policy)
    assert flow.policy is policy
    assert policy_of(flow.deps) is policy
    assert flow.deps.get(POLICY) is policy
    assert isinstance(flow.deps.get(SECRETS), SecretMasker)
    result = flow.execute_sync(Backpack())
    assert result.ok
    assert result.backpack.unpack("seen") == str(root)


def test_runs_of_flows_built_in_code_are_trusted() -> None:
    assert current_policy() is TRUSTED
    flow = _loader().load_flow({"version": "2.0.0", "nodes": [{"type": "seen", "id": "s"}]})
    assert flow.policy is None
    assert policy_of(flow.deps) is TRUSTED


def test_an_api_flow_cannot_read_the_servers_environment_at_load(monkeypatch) -> None:
    monkeypatch.setenv("BPF_POLICY_TEST_DB", "postgresql://admin:hunter2@db/prod")
    doc = {
        "version": "2.0.0",
        "nodes": [{"type": "seen", "id": "s", "params": {"x": "${BPF_POLICY_TEST_DB}"}}],
    }
    with pytest.raises(ConfigError) as refused:
        _loader().load_flow(doc, policy=SandboxPolicy(env_allowlist=()))
    assert "BPF_POLICY_TEST_DB is not one the operator lets flows read" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_template_budgets_are_checked() -> None:
    with pytest.raises(ValueError, match="max_int_bits"):
        TemplateBudget(max_int_bits=1)
    with pytest.raises(ValueError, match="max_seconds"):
        TemplateBudget(max_seconds=0)


def test_the_policy_describes_itself_without_secrets(root: Path) -> None:
    described = SandboxPolicy(files_root=root, env_allowlist={"A"}).describe()
    assert described["files_root"] == str(root)
    assert described["env_allowlist"] == ["A"]
    assert TRUSTED.trusted
    assert not SandboxPolicy(files_root=root).trusted
