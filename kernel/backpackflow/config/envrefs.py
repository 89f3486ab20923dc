"""``${NAME}`` references in flow configs: finding, resolving (with the allowed environment),
escaping and putting them back on export (secrets are never exported)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from backpackflow.errors import ConfigError
from backpackflow.policy.secrets import SecretMasker

#: A reference: ``${NAME}`` or ``${NAME:-default}``; ``$${`` escapes a literal ``${``.
_REFERENCE = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"
_ENV_REF = re.compile(r"(?<!\$)" + _REFERENCE)
_ENV_SUBST = re.compile(r"\$\$\{|" + _REFERENCE)  # an escape, or a reference to replace


def has_env_refs(value: Any) -> bool:
    """True when ``value`` (JSON data) contains a ``${NAME}`` reference anywhere."""
    if isinstance(value, str):
        return _ENV_REF.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_env_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_env_refs(v) for v in value)
    return False


class KeepUnset(dict[str, str]):
    """An environment for :func:`resolve_env_refs` in which a reference to an unset variable
    without a default stays as written (``backpackflow validate --allow-unset-env``); defaults
    still apply. Made from a restricted environment (a sandbox policy's), names it refuses stay
    refused."""

    def __init__(self, source: Mapping[str, str] = ()) -> None:  # type: ignore[assignment]
        super().__init__(source)
        refuses = getattr(source, "refuses", None)
        if refuses is not None:
            self.refuses = refuses
            self.refusal = source.refusal  # type: ignore[attr-defined]


def resolve_env_refs(
    value: Any,
    *,
    path: str = "$",
    environ: Mapping[str, str] | None = None,
    secrets: SecretMasker | None = None,
) -> Any:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) in strings of ``value`` with environment
    variables. An unset variable without a default is a :class:`ConfigError` naming the path;
    so is a variable the environment refuses to give (``environ`` a
    :class:`~backpackflow.policy.sandbox.RestrictedEnviron`), unless the reference has a default.
    Every value read from the environment is added to ``secrets``."""
    env = os.environ if environ is None else environ
    # an environment that only lets some names be read (a sandbox policy's) says which
    refuses = getattr(env, "refuses", None)
    problems: list[str] = []

    def resolve(item: Any, where: str) -> Any:
        if isinstance(item, str):

            def replace(match: re.Match[str]) -> str:
                if match.group(0) == "$${":
                    return "${"  # an escaped, literal "${"
                name, default = match.group(1), match.group(2)
                if refuses is not None and refuses(name):
                    if default is not None:  # the server's variable is not read: the default
                        return default
                    problems.append(f"{where}: {env.refusal(name)}")  # type: ignore[attr-defined]
                    return match.group(0)
                found = env.get(name)
                if found is not None:
                    if secrets is not None:  # whatever the environment gave is masked
                        secrets.add(found, name=name)
                    return found
                if default is not None:
                    return default
                if isinstance(env, KeepUnset):
                    return match.group(0)
                problems.append(
                    f"{where}: environment variable {name} is not set (referenced as "
                    f"'${{{name}}}'); export it or give a default: '${{{name}:-value}}'"
                )
                return match.group(0)

            return _ENV_SUBST.sub(replace, item)
        if isinstance(item, Mapping):
            return {k: resolve(v, f"{where}.{k}") for k, v in item.items()}
        if isinstance(item, list):
            return [resolve(v, f"{where}[{i}]") for i, v in enumerate(item)]
        return item

    result = resolve(value, path)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return result


EnvRefs = dict[tuple[str | int, ...], tuple[str, str]]


def env_ref_paths(raw: Any, resolved: Any, path: tuple[str | int, ...] = ()) -> EnvRefs:
    """Where ``raw`` holds ``${NAME}`` references: path → (the text as written, its resolved
    value). Used to put references back on export and to redact secrets from events."""
    refs: EnvRefs = {}
    if isinstance(raw, str):
        if _ENV_REF.search(raw) and isinstance(resolved, str):
            refs[path] = (raw, resolved)
    elif isinstance(raw, Mapping) and isinstance(resolved, Mapping):
        for key, value in raw.items():
            if key in resolved:
                refs.update(env_ref_paths(value, resolved[key], (*path, key)))
    elif isinstance(raw, list) and isinstance(resolved, list):
        for i, value in enumerate(raw[: len(resolved)]):
            refs.update(env_ref_paths(value, resolved[i], (*path, i)))
    return refs


def escape_literal_refs(data: Any, keep: frozenset[tuple[str | int, ...]] = frozenset()) -> Any:
    """``data`` with every literal ``${`` in its strings written ``$${``, so that exporting a
    value that holds ``${`` text and loading it back gives the same text (``keep``: paths to
    leave alone, e.g. where a reference is restored)."""

    def walk(item: Any, path: tuple[str | int, ...]) -> Any:
        if path in keep:
            return item
        if isinstance(item, str):
            return item.replace("${", "$${") if "${" in item else item
        if isinstance(item, dict):
            return {k: walk(v, (*path, k)) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, (*path, i)) for i, v in enumerate(item)]
        return item

    return walk(data, ())


def restore_env_refs(data: Any, refs: EnvRefs) -> Any:
    """A copy of ``data`` (JSON) with each resolved value that is still unchanged put back as
    the ``${NAME}`` reference it came from; any other literal ``${`` is escaped as ``$${``."""
    data = escape_literal_refs(data, frozenset(refs))
    for path, (written, resolved) in refs.items():
        if not path:
            if data == resolved:
                data = written
            continue
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if parent[path[-1]] == resolved:
                parent[path[-1]] = written
        except (KeyError, IndexError, TypeError):
            continue
    return data
