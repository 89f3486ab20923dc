"""The sandbox policy: what a flow may make the process do, set by whoever runs the flow.

A flow config is data that may come from someone else (the service runs flows submitted over its
API). What such a flow can reach is not the flow's to decide: the operator's
:class:`SandboxPolicy` bounds it, and a flow can only narrow it (``http_fetch``'s own
``allowed_hosts``, a tool's ``base_dir`` inside the root):

* **files** — ``files_root``: file tools read only below it (symbolic links resolved first,
  ``..`` and absolute paths refused, ``files_deny`` never), see :meth:`SandboxPolicy.open_file`;
* **network** — ``egress``: an :class:`~backpackflow.policy.egress.EgressPolicy` checked after DNS
  resolution for every connection a flow causes (``http_fetch``, webhook sinks, LLM providers);
* **environment** — ``env_allowlist``: the variables ``${NAME}`` references and options such as
  ``api_key_env`` may read; every value read is registered as a secret to mask;
* **work** — ``templates``: a :class:`TemplateBudget` (bounded arithmetic, render time and
  output size), and ``offload``: CPU-bound work of a run (sync node ``exec``, template
  rendering) runs in worker threads so that it cannot stall the event loop.

:data:`TRUSTED` is the policy of the user's own flows (a library call, ``backpackflow run`` of
one's own file): files are confined to the flow's folder or ``base_dir`` as before, the network
and the environment are open, templates get generous budgets. The service builds a restrictive
policy from its settings and applies it to every flow it runs.

Plugins find the policy of a run as ``current_run().policy`` (nodes, tools, templates) or in the
dependency container under :data:`POLICY` (dependency factories, which may run outside a run);
sink factories receive it as ``policy=``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from backpackflow.errors import BackpackFlowError
from backpackflow.policy.egress import EgressPolicy, describe
from backpackflow.policy.secrets import SecretMasker

#: The dependency name the policy of a loaded flow is registered under.
POLICY = "sandbox_policy"
#: Where the operator changes the variables flows may read (named in every refusal).
ENV_HINT = (
    "the operator's environment allowlist (backpackflow serve --env-allow NAME, "
    "BACKPACKFLOW_FLOW_ENV_ALLOWLIST)"
)


class SandboxViolation(BackpackFlowError, PermissionError):
    """The sandbox policy refuses what a flow asked for; the message says what and which
    setting of the operator would allow it (never a secret)."""


@attrs.frozen(kw_only=True)
class TemplateBudget:
    """Bounds of template work (the templating plugin enforces them).

    ``max_int_bits``: the largest integer arithmetic may produce (``10 ** 10 ** 7`` fails at
    once instead of computing for seconds); ``max_seconds``: wall time of one render (checked
    at every call, loop iteration and intercepted operator); ``max_output``: characters one
    render may produce (and the largest string an operator or filter may build)."""

    max_int_bits: int = 16_384
    max_seconds: float | None = 30.0
    max_output: int = 10_000_000

    def __attrs_post_init__(self) -> None:
        if self.max_int_bits < 64 or self.max_output < 1:
            raise ValueError("max_int_bits must be >= 64 and max_output >= 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds!r}")


class RestrictedEnviron(Mapping[str, str]):
    """The environment as a flow may see it: only the allowed names (``None``: every name).

    Reading a value through :meth:`__getitem__` / ``get`` registers it with ``secrets`` (when
    given), so that whatever a flow read from the environment is masked in its events."""

    __slots__ = ("allowed", "secrets", "source")

    def __init__(
        self,
        allowed: frozenset[str] | None,
        source: Mapping[str, str] | None = None,
        secrets: SecretMasker | None = None,
    ) -> None:
        self.allowed = allowed
        self.source = os.environ if source is None else source
        self.secrets = secrets

    def refuses(self, name: str) -> bool:
        """True when ``name`` may not be read at all (not merely unset)."""
        return self.allowed is not None and name not in self.allowed

    def refusal(self, name: str) -> str:
        """Why ``name`` cannot be read, for error messages."""
        return (
            f"environment variable {name} is not one the operator lets flows read; see {ENV_HINT}"
        )

    def __getitem__(self, name: str) -> str:
        if self.refuses(name):
            raise KeyError(name)
        value = self.source[name]
        if self.secrets is not None:
            self.secrets.add(value, name=name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and not self.refuses(name) and name in self.source

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.source if not self.refuses(name))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:  # never the values
        shown = "all" if self.allowed is None else sorted(self.allowed)
        return f"RestrictedEnviron(allowed={shown})"


def _paths(value: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(value)


def _names(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


@attrs.frozen(kw_only=True)
class SandboxPolicy:
    """The operator's bounds on what flows may do (see the module docstring)."""

    #: File tools read only below this folder; ``None``: below the flow's folder or the tool's
    #: ``base_dir``, wherever that is (trusted use).
    files_root: Path | None = None
    #: Paths file tools never read, even below the root (the service's database, its cache).
    files_deny: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    #: Where flows may connect; ``None``: anywhere (trusted use).
    egress: EgressPolicy | None = None
    #: Environment variables flows may read; ``None``: all of them (trusted use).
    env_allowlist: frozenset[str] | None = attrs.field(default=None, converter=_names)
    #: Bounds of template work.
    templates: TemplateBudget = attrs.field(factory=TemplateBudget)
    #: Run CPU-bound work of a run (sync ``exec``, template rendering) in worker threads.
    offload: bool = False

    @property
    def trusted(self) -> bool:
        """True for the policy of one's own flows: nothing beyond the defaults is enforced."""
        return self == TRUSTED

    # -------------------------------------------------------------- environment

    def environ(
        self, source: Mapping[str, str] | None = None, secrets: SecretMasker | None = None
    ) -> RestrictedEnviron:
        """The environment flows may read (``source``: default ``os.environ``)."""
        return RestrictedEnviron(self.env_allowlist, source, secrets)

    def getenv(self, name: str, secrets: SecretMasker | None = None) -> str | None:
        """The value of an environment variable a flow's config names (``api_key_env``,
        ``secret_env``), registered with ``secrets``; ``None`` when unset.
        :class:`SandboxViolation` when the policy does not let flows read it."""
        env = self.environ(secrets=secrets)
        if env.refuses(name):
            raise SandboxViolation(env.refusal(name))
        return env.get(name)

    # -------------------------------------------------------------- files

    def file_base(self, flow_dir: Path, base_dir: str | None, *, what: str) -> Path:
        """The folder a file tool's relative paths start from: ``base_dir`` (relative to the
        flow's folder) or the flow's folder; under a files root it must stay inside it."""
        base = (flow_dir / base_dir) if base_dir else flow_dir
        root = self.files_root
        if root is None:
            return base.resolve()
        resolved_root = root.resolve()
        resolved = base.resolve()
        if not resolved.is_relative_to(resolved_root):
            raise SandboxViolation(
                f"{what}: base_dir {base_dir!r} leaves the files folder the operator allows; "
                "give a folder inside it (relative, without '..')"
            )
        return resolved

    def resolve_file(self, path: str, base: Path, *, what: str) -> Path:
        """The file ``path`` (relative to ``base``) names, symbolic links resolved; refused
        when it leaves ``base`` or the files root, or is a denied path."""
        if "\x00" in path:
            raise SandboxViolation(f"{what}: {path!r} is not a file name")
        target = (base / path).resolve()
        if not target.is_relative_to(base):
            raise SandboxViolation(f"{what}: {path!r} is outside the flow's folder")
        return self.confine(target, what=what, shown=path)

    def confine(self, path: Path, *, what: str, shown: str | None = None) -> Path:
        """``path`` resolved (symbolic links followed), refused when it is outside the files
        root or a denied path: for every file a flow's config names (a tool's, a dependency's
        cache or pricing file). Without a files root only the denied paths are refused."""
        target = path.resolve()
        shown = str(path) if shown is None else shown
        root = self.files_root
        if root is not None and not target.is_relative_to(root.resolve()):
            raise SandboxViolation(
                f"{what}: {shown!r} is outside the files folder the operator lets flows use"
            )
        for denied in self.files_deny:
            denied_path = denied.resolve()
            if target == denied_path or target.is_relative_to(denied_path):
                raise SandboxViolation(f"{what}: {shown!r} may not be used")
        return target

    def read_file(self, path: str, base: Path, *, max_bytes: int, what: str) -> bytes:
        """The bytes of the regular file ``path`` (see :meth:`resolve_file`), at most
        ``max_bytes`` (:class:`SandboxViolation` beyond). The file is opened without following
        a link at its name and checked again once open, so a link swapped in between the check
        and the open is refused."""
        target = self.resolve_file(path, base, what=what)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(target, flags)
        except FileNotFoundError:
            raise SandboxViolation(f"{what}: no file {path!r}") from None
        except OSError as exc:
            raise SandboxViolation(f"{what}: cannot open {path!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SandboxViolation(f"{what}: {path!r} is not a regular file")
            opened = _opened_path(fd)
            if opened is not None and opened != target:
                raise SandboxViolation(f"{what}: {path!r} changed while it was being opened")
            if info.st_size > max_bytes:
                raise SandboxViolation(
                    f"{what}: {path!r} is {info.st_size} bytes, over max_bytes={max_bytes}"
                )
            chunks = []
            size = 0
            while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise SandboxViolation(f"{what}: {path!r} is over max_bytes={max_bytes}")
            return b"".join(chunks)
        finally:
            os.close(fd)

    # -------------------------------------------------------------- describing

    def describe(self) -> dict[str, Any]:
        """The policy as JSON data (logged by the service at start-up; no secrets in it)."""
        return {
            "files_root": str(self.files_root) if self.files_root else None,
            "files_deny": [str(p) for p in self.files_deny],
            "egress": describe(self.egress),
            "env_allowlist": None if self.env_allowlist is None else sorted(self.env_allowlist),
            "templates": attrs.asdict(self.templates),
            "offload": self.offload,
        }


def _opened_path(fd: int) -> Path | None:
    """The path an open descriptor refers to, where the system tells (Linux), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


#: The policy of one's own flows (see the module docstring).
TRUSTED = SandboxPolicy()


def policy_of(deps: Any) -> SandboxPolicy:
    """The policy in a dependency container (:data:`POLICY`), else :data:`TRUSTED`."""
    if deps is not None and deps.has(POLICY):
        policy = deps.get(POLICY)
        if isinstance(policy, SandboxPolicy):
            return policy
    return TRUSTED


__all__ = [
    "POLICY",
    "TRUSTED",
    "RestrictedEnviron",
    "SandboxPolicy",
    "SandboxViolation",
    "TemplateBudget",
    "policy_of",
]
