"""Loading plugins: the pluggy manager, entry points, and the process-wide registry.

``build_registry()`` makes a pluggy PluginManager for project ``backpackflow``, loads the entry
points of group ``backpackflow`` (unless ``BACKPACKFLOW_DISABLE_PLUGIN_AUTOLOAD`` is set; names
in ``BACKPACKFLOW_DISABLE_PLUGINS``, comma-separated, are skipped), checks every hook
implementation against the specs (``check_pending``), then calls each plugin's ``register``
hooks with a registrar bound to that plugin, so every registration knows who made it.

Failures stay with the plugin that caused them: a plugin that fails to import (say its extra is
not installed) is listed as unavailable with the reason and the install command; a hook that
raises marks its plugin as broken; two plugins registering one name make that name unusable
with an error naming both. The kernel and the other plugins always load.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import pluggy
from importlib_metadata import EntryPoint, entry_points

from backpackflow.errors import PluginError
from backpackflow.plugins import hookspecs
from backpackflow.plugins.records import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    PluginInfo,
)
from backpackflow.plugins.registrars import _HOOKS
from backpackflow.plugins.registry import Registry


def _disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_PLUGINS_ENV, "").split(",") if n.strip()}


def _install_hint(ep: EntryPoint, exc: BaseException) -> str | None:
    if not isinstance(exc, ImportError):
        return None  # a bug in the plugin, not something an install fixes
    dist = ep.dist.name if ep.dist is not None else "the plugin's distribution"
    own_package = ep.module.split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] == own_package:
        return f"the plugin's own module {exc.name!r} is missing: reinstall {dist}"
    if ep.extras:
        return f"pip install '{dist}[{','.join(ep.extras)}]'"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"pip install {exc.name.split('.')[0]}  (the module {exc.name!r} is missing)"
    return None


def build_registry(
    *,
    plugins: Iterable[Any] = (),
    autoload: bool | None = None,
    disabled: Iterable[str] | None = None,
) -> Registry:
    """Load plugins and collect their registrations into a new :class:`Registry`.

    ``plugins`` are registered in addition to the entry points (tests pass their own);
    ``autoload=False`` skips entry points (default: on unless ``BACKPACKFLOW_DISABLE_PLUGIN_
    AUTOLOAD`` is set); ``disabled`` adds to ``BACKPACKFLOW_DISABLE_PLUGINS``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    blocked = _disabled_from_env() | set(disabled or ())

    if autoload:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                "loaded",
                module=ep.value,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            first = registry.plugins.get(ep.name)
            if first is not None:
                # two entry points with one name: the first keeps it, this one is listed apart
                info.status = "broken"
                info.reason = (
                    f"the plugin name {ep.name!r} is already taken by "
                    f"{_origin(first)}; {_origin(info)} was not loaded"
                )
                registry.plugins[f"{ep.name} ({info.distribution or ep.value})"] = info
                registry.errors.append(f"plugin {ep.name!r}: {info.reason}")
                continue
            registry.plugins[ep.name] = info
            if ep.name in blocked:
                info.status, info.reason = "disabled", f"listed in {DISABLE_PLUGINS_ENV}"
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - one plugin must never break the others
                info.status = "unavailable"
                info.reason = f"{type(exc).__name__}: {exc}"
                info.hint = _install_hint(ep, exc)
                continue
            _register(pm, registry, module, info)

    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in blocked:
            registry.plugins[name] = PluginInfo(
                name, "disabled", module=name, reason=f"listed in {DISABLE_PLUGINS_ENV}"
            )
            continue
        if pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered")
        info = registry.plugins[name] = PluginInfo(name, "loaded", module=name)
        _register(pm, registry, plugin, info)

    _check_hooks(pm, registry)
    for plugin_name, info in registry.plugins.items():
        plugin = pm.get_plugin(plugin_name)
        if plugin is not None:
            info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
    _collect(pm, registry)
    _configure(pm, registry)
    return registry


def _origin(info: PluginInfo) -> str:
    """Where a plugin comes from, for error messages: its distribution, else its module."""
    if info.distribution:
        return f"distribution {info.distribution} {info.version or ''}".rstrip()
    return f"module {info.module}"


def _register(pm: pluggy.PluginManager, registry: Registry, plugin: Any, info: PluginInfo) -> None:
    """Register one plugin; a plugin pluggy refuses (a hook implementation whose arguments the
    spec does not have, a module already registered under another name) is reported broken."""
    try:
        pm.register(plugin, name=info.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        other = pm.get_name(plugin)
        info.status = "broken"
        info.reason = (
            f"the same module is already loaded as plugin {other!r}"
            if other is not None and other != info.name
            else str(exc)
        )
        registry.errors.append(f"plugin {info.name!r}: {info.reason}")


def _configure(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Call the historic ``backpackflow_configure`` hook with each loaded plugin isolated: one
    that raises is reported broken and the others are still configured."""
    caller = pm.hook.backpackflow_configure
    for impl in caller.get_hookimpls():
        # pluggy stops at the first implementation that raises: wrap each one (pluggy calls
        # ``impl.function``; the attribute is typed Final but is a plain attribute)
        setattr(impl, "function", _isolated(impl.function, impl.plugin_name, registry))  # noqa: B010
    caller.call_historic(kwargs={"kernel": registry})


def _isolated(function: Callable[..., Any], plugin: str, registry: Registry) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        info = registry.plugins.get(plugin)
        if info is not None and info.status != "loaded":
            return None  # a broken plugin is not configured
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
            _hook_raised(registry, plugin, "backpackflow_configure", exc)
            return None

    return call


def _check_hooks(pm: pluggy.PluginManager, registry: Registry) -> None:
    """``check_pending`` one plugin at a time: a plugin implementing an unknown hook (a typo,
    or a hook of a newer backpackflow) is unregistered and reported, the others stay."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            pm.unregister(exc.plugin)
            info = registry.plugins.setdefault(name, PluginInfo(name, "broken"))
            info.status, info.reason = "broken", str(exc)
            registry.errors.append(f"plugin {name!r}: {exc}")


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    for hook_name, (argname, registrar_class) in _HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            info = registry.plugins.get(impl.plugin_name)
            if info is None or info.status != "loaded":
                continue
            registrar = registrar_class(registry, impl.plugin_name)
            kwargs = {argname: registrar} if argname in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                _hook_raised(registry, impl.plugin_name, hook_name, exc)
                registry._withdraw(impl.plugin_name)


def _hook_raised(registry: Registry, plugin: str, hook_name: str, exc: Exception) -> None:
    """Report ``plugin`` broken because its hook raised ``exc`` (with the traceback on stderr
    when ``BACKPACKFLOW_DEBUG`` is set); call it from the ``except`` block."""
    reason = f"{hook_name} raised {type(exc).__name__}: {exc}"
    info = registry.plugins.get(plugin)
    if info is not None:
        info.status, info.reason = "broken", reason
    registry.errors.append(f"plugin {plugin!r}: {reason}")
    if os.environ.get("BACKPACKFLOW_DEBUG"):
        traceback.print_exc(file=sys.stderr)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry of installed plugins, loaded on first use."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (the next :func:`get_registry` reloads plugins)."""
    global _default
    _default = None
