"""backpackflow.policy: the operator's policy every layer reads: sandbox (files, environment,
templates), egress and secret masking.

Re-exports only (the modules hold the code).
"""

from backpackflow.policy.egress import (
    EgressDenied,
    EgressPolicy,
    EndpointSet,
    host_matches,
    parse_network,
    self_endpoints,
)
from backpackflow.policy.sandbox import (
    POLICY,
    TRUSTED,
    RestrictedEnviron,
    SandboxPolicy,
    SandboxViolation,
    TemplateBudget,
    policy_of,
)
from backpackflow.policy.secrets import (
    MASK,
    MIN_SECRET_LENGTH,
    SECRETS,
    MaskedLazy,
    SecretMasker,
    collect_named_secrets,
    is_secret_name,
)

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "POLICY",
    "SECRETS",
    "TRUSTED",
    "EgressDenied",
    "EgressPolicy",
    "EndpointSet",
    "MaskedLazy",
    "RestrictedEnviron",
    "SandboxPolicy",
    "SandboxViolation",
    "SecretMasker",
    "TemplateBudget",
    "collect_named_secrets",
    "host_matches",
    "is_secret_name",
    "parse_network",
    "policy_of",
    "self_endpoints",
]
