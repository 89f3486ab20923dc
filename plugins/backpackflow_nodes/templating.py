"""Templates in node params and input bindings, rendered with jinja2's immutable sandbox.

What a template sees:

* ``node.<id>.output`` — the output of a node that already ran in this run;
* ``inputs.<name>`` — the run's inputs (``--input name=value``);
* ``state.<key>`` — a Backpack key, read through the node's view (so the read is recorded and
  the node's permissions apply);
* the node's own input bindings by name (``inputs`` in its config: ``{"text":
  "{{ node.fetch.output.content }}"}`` makes ``text`` available).

A template that is a single ``{{ expression }}`` evaluates to the expression's value itself
(an object stays an object); anything else renders to text. Undefined names are errors: at
load time for names no template can ever see, at run time (naming the node, the field and the
reference) for references to nodes that have not run or keys that are not there.

The sandbox (``ImmutableSandboxedEnvironment``) refuses attribute access to internals and any
mutation, so params stay data: no code from a config ever runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backpackflow.errors import BackpackFlowError, ConfigError


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the reference as the template wrote it
    (``node.fetch``, ``inputs.topic``, ``state.notes``) rather than our proxy classes."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if isinstance(name, str):
            if isinstance(obj, _Outputs):
                return f"node.{name}: node {name!r} has not run (yet) in this run"
            if isinstance(obj, _Inputs):
                return f"inputs.{name}: the run has no input {name!r}"
            if isinstance(obj, _StateProxy):
                return f"state.{name}: the Backpack has no key {name!r} this node can read"
        return str(super()._undefined_message)


ENV = ImmutableSandboxedEnvironment(
    undefined=_Undefined, autoescape=False, keep_trailing_newline=True
)
#: Names every template may use besides the node's own bindings.
CONTEXT_NAMES = frozenset({"node", "inputs", "state"})
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


class TemplateError(BackpackFlowError):
    """A template could not be rendered; the message names the node, the field and why."""


class Template:
    """One compiled template of a node field (``where`` names them in errors)."""

    __slots__ = ("_expression", "_template", "names", "source", "where")

    def __init__(self, source: str, *, where: str) -> None:
        self.source = source
        self.where = where
        try:
            ast = ENV.parse(source)
            self.names = frozenset(meta.find_undeclared_variables(ast))
            match = _SINGLE_EXPRESSION.match(source)
            self._expression = (
                ENV.compile_expression(match.group("expr"), undefined_to_none=False)
                if match
                else None
            )
            self._template = None if match else ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"{where}: template syntax error at line {exc.lineno}: {exc.message}"
            ) from None

    @property
    def is_static(self) -> bool:
        """True when the source has no template syntax at all."""
        return "{{" not in self.source and "{%" not in self.source

    def check_names(self, available: frozenset[str]) -> None:
        """Raise :class:`ConfigError` (at load time) for names no context will ever hold."""
        unknown = sorted(self.names - available - set(ENV.globals))
        if unknown:
            raise ConfigError(
                f"{self.where}: template uses {', '.join(repr(n) for n in unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not defined (available: "
                f"{', '.join(sorted(available))})"
            )

    def render(self, context: Mapping[str, Any]) -> Any:
        try:
            if self._expression is not None:
                value = self._expression(**context)
                if isinstance(value, jinja2.Undefined):
                    value._fail_with_undefined_error()
                return _plain(value)
            assert self._template is not None
            return self._template.render(**context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.where}: {_undefined_message(exc, context)}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{self.where}: refused by the template sandbox: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(f"{self.where}: {type(exc).__name__}: {exc}") from None


def _undefined_message(exc: jinja2.UndefinedError, context: Mapping[str, Any]) -> str:
    message = str(exc.message or exc)
    nodes = context.get("node")
    ran = ", ".join(sorted(nodes)) if isinstance(nodes, Mapping) else ""
    inputs = context.get("inputs")
    given = ", ".join(sorted(inputs)) if isinstance(inputs, Mapping) else ""
    return (
        f"undefined reference: {message} (nodes that ran: {ran or 'none'}; run inputs: "
        f"{given or 'none'})"
    )


def _plain(value: Any) -> Any:
    """Values from the template context back to plain data (our proxies are read-only)."""
    if isinstance(value, _StateProxy):
        return value.to_dict()
    if isinstance(value, _Outputs):  # the shape templates and edge conditions read
        return {k: {"output": v["output"]} for k, v in value.items()}
    if isinstance(value, _Inputs):
        return dict(value)
    return value


def plain_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` with the proxies turned into plain data, read now (a snapshot)."""
    return {name: _plain(value) for name, value in context.items()}


class _Inputs(Mapping[str, Any]):
    """``inputs.<name>``: the run's inputs (read-only)."""

    __slots__ = ("_inputs",)

    def __init__(self, inputs: Mapping[str, Any]) -> None:
        self._inputs = dict(inputs)

    def __getitem__(self, name: str) -> Any:
        return self._inputs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._inputs)

    def __len__(self) -> int:
        return len(self._inputs)


class _Outputs(Mapping[str, Any]):
    """``node.<id>.output``: outputs of the nodes that ran (read-only)."""

    __slots__ = ("_outputs",)

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = outputs

    def __getitem__(self, node_id: str) -> Any:
        return {"output": self._outputs[node_id]}

    def __getattr__(self, node_id: str) -> Any:
        try:
            return self[node_id]
        except KeyError:
            raise AttributeError(node_id) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


class _StateProxy(Mapping[str, Any]):
    """``state.<key>``: Backpack keys read through the node's view (reads are recorded and
    permissions apply)."""

    __slots__ = ("_view",)

    def __init__(self, view: Any) -> None:
        self._view = view

    def __getitem__(self, key: str) -> Any:
        if not self._view.has(key):
            raise KeyError(key)
        return self._view.unpack(key)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._view.keys())

    def __len__(self) -> int:
        return len(self._view.keys())

    def to_dict(self) -> dict[str, Any]:
        return {key: self[key] for key in self}


def base_context(run: Any, view: Any) -> dict[str, Any]:
    """The context every template of a node sees (before its own bindings)."""
    return {
        "node": _Outputs(run.outputs if run is not None else {}),
        "inputs": _Inputs(run.inputs if run is not None else {}),
        "state": _StateProxy(view),
    }


class Bindings:
    """A node's input bindings (``inputs`` in its config): name → template or plain value."""

    __slots__ = ("_items", "names")

    def __init__(self, inputs: Mapping[str, Any], *, node_id: str) -> None:
        items: list[tuple[str, Any]] = []
        for name, value in inputs.items():
            if not name.isidentifier():
                raise ConfigError(
                    f"node {node_id!r}: input name {name!r} must be an identifier (letters, "
                    "digits, '_') so templates can use it"
                )
            if name in CONTEXT_NAMES:
                raise ConfigError(
                    f"node {node_id!r}: input name {name!r} is reserved (template names: "
                    f"{', '.join(sorted(CONTEXT_NAMES))})"
                )
            template = (
                Template(value, where=f"node {node_id!r} inputs.{name}")
                if isinstance(value, str)
                else None
            )
            if template is not None:
                template.check_names(CONTEXT_NAMES)
            items.append((name, template if template is not None else value))
        self._items = items
        self.names = frozenset(name for name, _ in items)

    def resolve(self, context: dict[str, Any]) -> dict[str, Any]:
        """``context`` extended with every binding's value."""
        resolved = dict(context)
        for name, value in self._items:
            resolved[name] = value.render(context) if isinstance(value, Template) else value
        return resolved

    def available(self) -> frozenset[str]:
        """Names a template of this node may use."""
        return CONTEXT_NAMES | self.names
