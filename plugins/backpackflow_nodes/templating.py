"""Templates in node params and input bindings, rendered with jinja2's immutable sandbox under a
work budget.

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
mutation, so params stay data: no code from a config ever runs. On top of it every render has a
budget, the run policy's :class:`~backpackflow.policy.sandbox.TemplateBudget` (see
:mod:`backpackflow.policy.sandbox`):

* **bounded arithmetic** — ``**``, ``*``, ``+`` and ``%`` are intercepted: an integer result
  beyond ``max_int_bits`` or a string or list beyond ``max_output`` is refused before it is
  computed (``{{ 10 ** 10 ** 7 }}`` fails at once, at load time already when the operands are
  constants), and so are filters and string methods that build text from a size argument
  (``center``, ``indent``, ``replace``, ``join``, ``format``, ``zfill`` ...);
* **time** — every loop iteration, call, attribute access and intercepted operator checks the
  render's deadline (``max_seconds``) and whether the run has ended (canceled, timed out): a
  nested loop stops within one check of its budget;
* **output** — rendered text is produced chunk by chunk and stops at ``max_output``
  characters.

Where a run's policy says ``offload`` (the service), nodes render in a worker thread
(:func:`off_loop`), so a template at the edge of its budget never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from typing import Any, TypeGuard, TypeVar

import attrs
import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from backpackflow import BackpackFlowError, ConfigError
from backpackflow.policy import TRUSTED, TemplateBudget
from backpackflow.runner import current_policy, current_run_or_none

_T = TypeVar("_T")


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


class TemplateError(BackpackFlowError):
    """A template could not be rendered; the message names the node, the field and why."""


class TemplateBudgetExceeded(TemplateError):
    """A template asked for more work than its budget allows (time, output, number size)."""


# ------------------------------------------------------------------------------ the budget


class _Render:
    """The budget of one render in progress: its deadline, limits and run."""

    __slots__ = ("budget", "deadline", "run")

    def __init__(self, budget: TemplateBudget, run: Any) -> None:
        self.budget = budget
        self.deadline = None if budget.max_seconds is None else _clock() + budget.max_seconds
        self.run = run

    def tick(self) -> None:
        """One step of work: over the deadline, or the run ended, stops the render."""
        deadline = self.deadline
        if deadline is not None and _clock() > deadline:
            raise TemplateBudgetExceeded(
                f"the template ran longer than its budget of {self.budget.max_seconds:g}s "
                "(template max_seconds)"
            )
        run = self.run
        if run is not None:
            run.check_stopped()


_clock = time.monotonic
_RENDER: ContextVar[_Render | None] = ContextVar("backpackflow_template_render", default=None)
#: Limits that apply where no render is in progress (constant folding at load time).
_LOAD_TIME = _Render(TRUSTED.templates, None)


def _render_state() -> _Render:
    return _RENDER.get() or _LOAD_TIME


def _size_limit(size: int, what: str) -> None:
    budget = _render_state().budget
    if size > budget.max_output:
        raise TemplateBudgetExceeded(
            f"{what} would hold {size:,} characters or items, over the template budget of "
            f"{budget.max_output:,} (template max_output)"
        )


def _int_limit(bits: int, what: str) -> None:
    budget = _render_state().budget
    if bits > budget.max_int_bits:
        raise TemplateBudgetExceeded(
            f"{what} would be a {bits}-bit number, over the template budget of "
            f"{budget.max_int_bits} bits (template max_int_bits)"
        )


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would exceed the budget, before computing it."""
    if operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            _int_limit(left.bit_length() * right, f"{left.bit_length()}-bit ** {right}")
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            _int_limit(left.bit_length() + right.bit_length(), "a product")
        elif _is_int(right) and isinstance(left, (str, list, tuple)):
            _size_limit(len(left) * max(right, 0), "a repeated sequence")
        elif _is_int(left) and isinstance(right, (str, list, tuple)):
            _size_limit(len(right) * max(left, 0), "a repeated sequence")
    elif operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _size_limit(len(left) + len(right), "a concatenation")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


_PRINTF_WIDTHS = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(template: str, values: Any) -> None:
    """``template % values`` may not pad beyond the output budget."""
    star = False
    for width, precision in _PRINTF_WIDTHS.findall(template):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number:
                _size_limit(int(number), "a %-format width")
    if star:
        items = values if isinstance(values, tuple) else (values,)
        for item in items:
            if _is_int(item):
                _size_limit(abs(item), "a %-format width")


def _check_format_spec(template: str) -> None:
    """``str.format`` fields may not pad beyond the output budget (``{:>999999999}``)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format reports it
    for _, _, spec, _ in fields:
        if spec:
            if "{" in spec:
                raise TemplateBudgetExceeded("nested fields in a format spec are not allowed")
            for number in re.findall(r"\d+", spec):
                _size_limit(int(number), "a format width")


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """String methods that build text from a size argument stay within the output budget."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill") and _is_int(first):
        _size_limit(first, f"str.{name}()")
    elif name == "expandtabs":
        size = first if _is_int(first) else kwargs.get("tabsize", 8)
        if _is_int(size):
            _size_limit(len(owner) * max(size, 1), "str.expandtabs()")
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1])
    elif name == "join" and isinstance(first, (list, tuple)):
        _size_limit(len(owner) * len(first), "str.join()")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = len(text) + 1 if old == "" else text.count(old)
        _size_limit(len(text) + count * max(len(new) - len(old), 0), "a replace")


def _guarded_filter(original: Callable[..., Any], check: Callable[..., None]) -> Any:
    """``original`` (a jinja filter) that first runs ``check`` with its bound arguments."""
    signature = inspect.signature(original)

    @functools.wraps(original)  # keeps jinja's pass_context / pass_eval_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # the filter reports its own misuse
        bound.apply_defaults()
        check(bound.arguments)
        return original(*args, **kwargs)

    return guarded


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _check_center(a: dict[str, Any]) -> None:
    if _is_int(a.get("width")):
        _size_limit(a["width"], "center()")


def _check_indent(a: dict[str, Any]) -> None:
    width = a.get("width")
    unit = len(width) if isinstance(width, str) else width if _is_int(width) else 0
    lines = str(a.get("s", "")).count("\n") + 1
    _size_limit(_text_len(a.get("s", "")) + lines * max(unit, 0), "indent()")


def _check_replace_filter(a: dict[str, Any]) -> None:
    _check_replace(str(a.get("s", "")), str(a.get("old", "")), str(a.get("new", "")))


def _check_join(a: dict[str, Any]) -> None:
    value, joiner = a.get("value"), a.get("d", "")
    if isinstance(joiner, str) and isinstance(value, Sized):
        _size_limit(len(value) * len(joiner), "join()")


def _check_format_filter(a: dict[str, Any]) -> None:
    value = a.get("value")
    if isinstance(value, str):
        _check_printf(value, tuple(a.get("args") or ()) or tuple((a.get("kwargs") or {}).values()))


def _check_count(name: str, field: str) -> Callable[[dict[str, Any]], None]:
    def check(a: dict[str, Any]) -> None:
        if _is_int(a.get(field)):
            _size_limit(a[field], f"{name}()")

    return check


def _check_wordwrap(a: dict[str, Any]) -> None:
    wrap = a.get("wrapstring")
    if isinstance(wrap, str):
        _size_limit(_text_len(a.get("s", "")) * (1 + len(wrap)), "wordwrap()")


_FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "replace": _check_replace_filter,
    "join": _check_join,
    "format": _check_format_filter,
    "batch": _check_count("batch", "linecount"),
    "slice": _check_count("slice", "slices"),
    "tojson": _check_count("tojson", "indent"),
    "wordwrap": _check_wordwrap,
}


class _BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every render held to its budget (see the module
    docstring)."""

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _guarded_filter(self.filters[name], check)
        self.filters[_LOOP_FILTER] = _budgeted_iteration
        self.globals["namespace"] = _Namespace

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # every {% for %} iterates through the budget: a loop with no output and no calls
        # (nested loops over range) still checks the deadline at every step
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None)
            loop.iter.set_lineno(loop.lineno)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _render_state().tick()
        _check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _render_state().tick()
        for value in (*args, *kwargs.values()):  # a macro called with ever longer text
            if isinstance(value, (str, list, tuple)):
                _size_limit(len(value), "an argument")
        _check_str_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _render_state().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _render_state().tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(template)
            return wrapper(*args, **kwargs)

        return checked


_LOOP_FILTER = "_budgeted_iteration"


class _Namespace(Namespace):
    """``namespace()``, whose attributes may not grow beyond the output budget (a loop doubling
    ``ns.text`` would otherwise reach gigabytes within a few dozen steps)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _render_state().tick()
        if isinstance(value, (str, list, tuple)):
            _size_limit(len(value), f"namespace attribute {name!r}")
        super().__setitem__(name, value)


def _budgeted_iteration(iterable: Iterable[Any]) -> Iterator[Any]:
    """A loop's items, checking the render's budget before each one."""
    state = _render_state()
    for item in iterable:
        state.tick()
        yield item


ENV = _BudgetedEnvironment(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
#: Names every template may use besides the node's own bindings.
CONTEXT_NAMES = frozenset({"node", "inputs", "state"})
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


class _NotConstant(Exception):
    pass


def _check_constants(tree: nodes.Node, budget: TemplateBudget) -> None:
    """Evaluate operations on constants with the checks of ``budget``, at load time: a
    template like ``{{ 10 ** 10 ** 7 }}`` is refused (:class:`TemplateBudgetExceeded`) when the
    flow is validated, not when it runs."""
    token = _RENDER.set(_Render(attrs.evolve(budget, max_seconds=None), None))
    try:
        _check_constant_operations(tree)
    finally:
        _RENDER.reset(token)


def _check_constant_operations(tree: nodes.Node) -> None:
    cache: dict[int, Any] = {}

    def value(node: nodes.Node) -> Any:
        key = id(node)
        if key in cache:
            return cache[key]
        if isinstance(node, nodes.Const):
            result = node.value
        elif isinstance(node, nodes.BinExpr):
            left, right = value(node.left), value(node.right)
            _check_binop(node.operator, left, right)
            try:
                result = ENV.binop_table[node.operator](left, right)
            except Exception:  # noqa: BLE001 - e.g. 1/0: reported when rendered
                raise _NotConstant from None
        elif isinstance(node, nodes.Neg) and _is_int(value(node.node)):
            result = -value(node.node)
        else:
            raise _NotConstant
        cache[key] = result
        return result

    for node in tree.find_all(nodes.BinExpr):
        try:
            value(node)
        except _NotConstant:
            continue


@attrs.frozen
class _Compiled:
    """A template source compiled: the names it reads and its renderer (the expression of a
    single ``{{ ... }}``, else the jinja template). Shared by every :class:`Template` of the
    same source: both renderers are reentrant."""

    names: frozenset[str]
    expression: Any
    template: jinja2.Template | None


@functools.lru_cache(maxsize=4096)
def _compile(source: str, budget: TemplateBudget) -> _Compiled:
    """Compile ``source`` (parse, check constant operations against ``budget``, find the
    names it reads, generate and compile the code), once per source and budget.

    Flows repeat their templates (every node of a generated pipeline has the same prompt and
    system prompt; validating a flow and then loading it compiles each template twice), and
    compiling is most of the cost of loading a node, so compiled templates are kept, up to
    ``maxsize`` sources. Errors are not cached: they name the node field (:class:`Template`
    adds it) and are raised again for each field that has them."""
    ast = ENV.parse(source)
    _check_constants(ast, budget)
    names = frozenset(meta.find_undeclared_variables(ast))
    match = _SINGLE_EXPRESSION.match(source)
    if match:
        return _Compiled(
            names, ENV.compile_expression(match.group("expr"), undefined_to_none=False), None
        )
    return _Compiled(names, None, ENV.from_string(ast))  # the parsed tree: no second parse


#: ``{{ name.attr.attr }}``: a plain reference (the most common input binding), whose names are
#: read off the text; it cannot fail to compile, so it is compiled when it is first rendered.
_REFERENCE = re.compile(
    r"\s*\{\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*\}\}\s*"
)
#: Words the jinja parser reads as literals or operators (``none``, ``None``, ``True`` ...), and
#: ``self`` (the template itself): not names a template reads from its context. (A word that
#: only looks like one, ``TRUE``, is left to the full compile, which is always right.)
_NOT_NAMES = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "self"}
)


class Template:
    """One compiled template of a node field (``where`` names them in errors)."""

    __slots__ = ("_compiled", "names", "source", "where")

    def __init__(self, source: str, *, where: str, budget: TemplateBudget | None = None) -> None:
        """Compile ``source`` (a plain ``{{ a.b }}`` reference: at its first render, as it
        cannot fail); ``budget`` (the flow's policy's, default the trusted one) bounds what its
        constant operations may compute, now."""
        self.source = source
        self.where = where
        reference = _REFERENCE.fullmatch(source)
        name = reference.group("name") if reference is not None else None
        if name is not None and name.lower() not in _NOT_NAMES and name not in ENV.globals:
            self.names = frozenset({name})
            self._compiled: _Compiled | None = None  # compiled when first rendered
            return
        self._compiled = self._compile(budget if budget is not None else TRUSTED.templates)
        self.names = self._compiled.names

    def _compile(self, budget: TemplateBudget) -> _Compiled:
        where = self.where
        try:
            return _compile(self.source, budget)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"{where}: template syntax error at line {exc.lineno}: {exc.message}"
            ) from None
        except TemplateBudgetExceeded as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:
            # a 5000-digit literal, nesting deeper than Python compiles ...
            raise ConfigError(
                f"{where}: the template cannot be compiled: {type(exc).__name__}: {exc}"
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
        """The template's value (a single expression) or text, within the budget of the
        current run's policy (:data:`~backpackflow.policy.sandbox.TRUSTED` outside runs)."""
        compiled = self._compiled
        if compiled is None:  # a plain reference: compiling it cannot fail
            compiled = self._compiled = self._compile(TRUSTED.templates)
        state = _Render(current_policy().templates, current_run_or_none())
        token = _RENDER.set(state)
        try:
            if compiled.expression is not None:
                value = compiled.expression(**context)
                if isinstance(value, jinja2.Undefined):
                    value._fail_with_undefined_error()
                if isinstance(value, str):
                    _size_limit(len(value), "the template's output")
                return _plain(value)
            assert compiled.template is not None
            return _bounded_text(compiled.template.generate(**context), state)
        except TemplateBudgetExceeded as exc:
            raise TemplateBudgetExceeded(f"{self.where}: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.where}: {_undefined_message(exc, context)}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{self.where}: refused by the template sandbox: {exc}") from None
        except RecursionError:
            raise TemplateError(f"{self.where}: the template recurses too deeply") from None
        except MemoryError:
            raise TemplateBudgetExceeded(f"{self.where}: the template ran out of memory") from None
        except (TypeError, ValueError, ArithmeticError, jinja2.TemplateError) as exc:
            raise TemplateError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        finally:
            _RENDER.reset(token)


def _bounded_text(chunks: Iterator[str], state: _Render) -> str:
    """Join a render's chunks, stopping at the output budget."""
    out: list[str] = []
    size = 0
    limit = state.budget.max_output
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TemplateBudgetExceeded(
                f"the template's output is over its budget of {limit:,} characters "
                "(template max_output)"
            )
        out.append(chunk)
        state.tick()
    return "".join(out)


async def off_loop(work: Callable[[], _T]) -> _T:
    """``work()`` (a node's template rendering, a rule): in a worker thread when the current
    run's policy offloads CPU work (the service), so that a slow template never stalls the
    event loop; inline otherwise (no thread hop for one's own flows)."""
    run = current_run_or_none()
    if run is not None and run.offload:
        return await asyncio.to_thread(work)
    return work()


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

    def __init__(
        self,
        inputs: Mapping[str, Any],
        *,
        node_id: str,
        budget: TemplateBudget | None = None,
    ) -> None:
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
                Template(value, where=f"node {node_id!r} inputs.{name}", budget=budget)
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
