"""CEL (``"branch == 'deep'"``) and JSON Logic (``{"==": [{"var": "intent"}, "sales"]}``) as
condition languages, through ``backpackflow_register_condition_languages``.

Both evaluate against the condition context turned into JSON data (the node's output and its
keys, ``action``, ``inputs``, ``state``, ``node.<id>.output``). Neither can run arbitrary code:
CEL is a side-effect-free expression language (cel-python), JSON Logic a data structure
(panzi-json-logic). We use the libraries rather than an own parser: both are specified
languages with tested implementations, and JSON Logic is what PRD-003 names.

CEL gets one extension, ``len(x)``, an alias of CEL's ``size(x)``, because FlowTrace rules are
written with it (``len(text) > 2000 ? 'deep' : 'shallow'``).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping
from typing import Any

import celpy
import json_logic
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, base_functions
from json_logic.builtins import BUILTINS

from backpackflow import hookimpl
from backpackflow.jsondata import to_jsonable
from backpackflow.plugins import ConditionLanguageRegistrar

Condition = Callable[[Mapping[str, Any]], Any]

# JSON Logic operations the evaluator implements itself (not in BUILTINS)
_SPECIAL_FORMS = {"if", "?:", "and", "or", "filter", "reduce", "map", "all", "none", "some"}
# conditions are pure: "log" writes its argument to stdout
_FORBIDDEN_LOGIC = {"log"}
_CEL_ENV = celpy.Environment()
# what a CEL condition may call: the standard functions, the macros, and len
_CEL_FUNCTIONS = frozenset(
    {name for name in base_functions if name[:1].isalpha()}
    | {"has", "all", "exists", "exists_one", "map", "filter", "dyn", "len"}
)


class ConditionError(ValueError):
    """A condition could not be compiled or evaluated; the message says why."""


def _cel_len(value: Any) -> celtypes.IntType:
    return celtypes.IntType(len(value))


def _from_cel(value: Any) -> Any:
    """CEL values back to plain Python/JSON values."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.ListType):
        return [_from_cel(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(_from_cel(k)): _from_cel(v) for k, v in value.items()}
    return value


def _cel_message(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.split(" (in activation", 1)[0]


def _check_cel_calls(tree: Any) -> None:
    """Calls of unknown functions fail at load, not when the edge is first taken."""
    for subtree in tree.iter_subtrees():
        if subtree.data == "ident_arg":  # f(x)
            name = subtree.children[0]
        elif subtree.data == "member_dot_arg":  # x.f(y)
            name = subtree.children[1]
        else:
            continue
        if str(name) not in _CEL_FUNCTIONS:
            known = ", ".join(sorted(_CEL_FUNCTIONS))
            raise ConditionError(f"unknown CEL function {str(name)!r} (known: {known})")


_NUMBERS = (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)


def _numeric_aware(name: str, compare: Callable[[float, float], bool]) -> Callable[[Any, Any], Any]:
    """CEL compares an int with a double as an error; JSON has one number type (a node's
    ``confidence: 1`` and the rule's ``0.7`` must compare), so mixed numbers compare by value
    and everything else keeps CEL's own semantics."""
    original = base_functions[name]

    def operator(left: Any, right: Any) -> Any:
        if (
            isinstance(left, _NUMBERS)
            and isinstance(right, _NUMBERS)
            and type(left) is not type(right)
            and not isinstance(left, celtypes.BoolType)
            and not isinstance(right, celtypes.BoolType)
        ):
            return celtypes.BoolType(compare(float(left), float(right)))
        return original(left, right)

    return operator


_FUNCTIONS: dict[str, Any] = {
    "len": _cel_len,
    "_<_": _numeric_aware("_<_", operator.lt),
    "_<=_": _numeric_aware("_<=_", operator.le),
    "_>_": _numeric_aware("_>_", operator.gt),
    "_>=_": _numeric_aware("_>=_", operator.ge),
    "_==_": _numeric_aware("_==_", operator.eq),
    "_!=_": _numeric_aware("_!=_", operator.ne),
}


def compile_cel(source: str) -> Condition:
    """Compile a CEL expression; syntax errors and calls of unknown functions are
    :class:`ConditionError`."""
    try:
        tree = _CEL_ENV.compile(source)
    except CELParseError as exc:
        raise ConditionError(f"CEL syntax error: {_cel_message(exc)}") from None
    _check_cel_calls(tree)
    program = _CEL_ENV.program(tree, functions=_FUNCTIONS)

    def evaluate(context: Mapping[str, Any]) -> Any:
        activation: Any = json_to_cel(to_jsonable(dict(context)))
        try:
            result = program.evaluate(activation)
        except CELEvalError as exc:
            raise ConditionError(f"CEL evaluation failed: {_cel_message(exc)}") from None
        if isinstance(result, CELEvalError):
            raise ConditionError(f"CEL evaluation failed: {_cel_message(result)}")
        return _from_cel(result)

    return evaluate


def _check_logic(logic: Any, path: str) -> None:
    if isinstance(logic, list):
        for i, item in enumerate(logic):
            _check_logic(item, f"{path}[{i}]")
        return
    if not isinstance(logic, dict):
        return
    if len(logic) != 1:
        raise ConditionError(
            f"{path}: a JSON Logic operation is an object with exactly one key, got {sorted(logic)}"
        )
    op, args = next(iter(logic.items()))
    if op in _FORBIDDEN_LOGIC:
        raise ConditionError(f"{path}: JSON Logic {op!r} has side effects; conditions are pure")
    if op not in BUILTINS and op not in _SPECIAL_FORMS:
        known = ", ".join(sorted({*BUILTINS, *_SPECIAL_FORMS} - _FORBIDDEN_LOGIC))
        raise ConditionError(f"{path}: unknown JSON Logic operation {op!r} (known: {known})")
    _check_logic(args, f"{path}.{op}")


def compile_json_logic(source: dict[str, Any]) -> Condition:
    """Check a JSON Logic object (every operation known) and return its evaluator."""
    _check_logic(source, "$")

    def evaluate(context: Mapping[str, Any]) -> Any:
        try:
            return json_logic.jsonLogic(source, to_jsonable(dict(context)))
        except (ReferenceError, TypeError, ValueError, KeyError) as exc:
            raise ConditionError(f"JSON Logic evaluation failed: {exc}") from None

    return evaluate


@hookimpl
def backpackflow_register_condition_languages(register: ConditionLanguageRegistrar) -> None:
    register(
        "cel",
        compile_cel,
        source_type=str,
        description="Common Expression Language (cel-python), e.g. branch == 'deep'",
    )
    register(
        "jsonlogic",
        compile_json_logic,
        source_type=dict,
        description='JSON Logic objects (panzi-json-logic), e.g. {"==": [{"var": "x"}, 1]}',
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
