"""Every plugin hook is typed, has a docstring, is documented (README.md or docs/plugins.md,
in a "Plugin hooks" section) with its registrar's signature, and is used by at least one test;
the examples in docs/plugins.md load as plugins (datasette's documentation tests, adapted)."""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path

import pytest

import backpackflow.plugins as plugins_module
from backpackflow import hookimpl
from backpackflow.plugins import build_registry, hookspecs

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOCS = [ROOT / "README.md", ROOT / "docs" / "plugins.md"]
HOOKS = hookspecs.hook_names()


def plugin_hooks_section(path: Path) -> str:
    """The text of the "Plugin hooks" section of a Markdown file ('' when it has none)."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^(#+) Plugin hooks\s*$", text, re.MULTILINE)
    if match is None:
        return ""
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def hook_section(name: str) -> str:
    """The documentation of one hook: from its heading to the next heading."""
    for path in DOCS:
        section = plugin_hooks_section(path)
        match = re.search(rf"^#+ `?{name}`?\s*$", section, re.MULTILINE)
        if match:
            rest = section[match.end() :]
            end = re.search(r"^#+ ", rest, re.MULTILINE)
            return rest[: end.start()] if end else rest
    return ""


def test_there_are_hooks():
    assert "backpackflow_register_node_types" in HOOKS
    assert len(HOOKS) >= 10


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_has_a_docstring(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec)
    assert doc, f"{name} has no docstring"
    assert len(doc.split()) >= 8, f"{name}'s docstring says too little"


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_is_typed(name):
    spec = getattr(hookspecs, name)
    signature = inspect.signature(spec)
    assert signature.parameters, f"{name} takes no registry object"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, (name, parameter.name)
    assert signature.return_annotation is not inspect.Signature.empty
    hints = typing.get_type_hints(spec, vars(hookspecs) | vars(plugins_module))
    assert hints["return"] is type(None)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    assert any(name in plugin_hooks_section(path) for path in DOCS), (
        f"{name} is not documented in a 'Plugin hooks' section of README.md or docs/plugins.md"
    )
    assert hook_section(name), f"{name} has no heading of its own in the 'Plugin hooks' section"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_used_by_a_test(name):
    this = Path(__file__).resolve()
    users = [
        path
        for path in TESTS.rglob("*.py")
        if path.resolve() != this and name in path.read_text(encoding="utf-8")
    ]
    assert users, f"no test uses {name}"


@pytest.fixture(scope="module")
def registry_objects():
    """What each hook is called with: one in-test plugin implementing every hook."""
    seen = {}
    module = types.ModuleType("capture_registrars")
    module.__dict__.update(record=seen.__setitem__, hookimpl=hookimpl)
    for name in HOOKS:
        argname = next(iter(inspect.signature(getattr(hookspecs, name)).parameters))
        source = f"@hookimpl\ndef {name}({argname}):\n    record({name!r}, {argname})\n"
        exec(source, module.__dict__)
    registry = build_registry(plugins=[module], autoload=False)
    assert registry.plugins["capture_registrars"].status == "loaded", registry.errors
    assert set(seen) == set(HOOKS)
    return seen


@pytest.mark.parametrize("name", [h for h in HOOKS if h != "backpackflow_configure"])
def test_the_registrar_signature_is_documented(name, registry_objects):
    registrar = registry_objects[name]
    call = getattr(registrar, "add", registrar)
    parameters = list(inspect.signature(call).parameters)
    assert parameters
    section = hook_section(name)
    spec_doc = inspect.getdoc(getattr(hookspecs, name))
    for parameter in parameters:
        assert parameter in section, f"{name}: parameter {parameter!r} is not documented"
        assert parameter in spec_doc, f"{name}: parameter {parameter!r} not in the docstring"


def test_configure_gets_the_registry(registry_objects):
    from backpackflow.plugins import Registry

    assert isinstance(registry_objects["backpackflow_configure"], Registry)


def docs_examples():
    section = plugin_hooks_section(ROOT / "docs" / "plugins.md")
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_every_hook_has_an_example():
    examples = docs_examples()
    for name in HOOKS:
        assert any(f"def {name}(" in code for code in examples), f"{name} has no example"


@pytest.mark.parametrize("index", range(len(docs_examples())))
def test_docs_examples_load_as_plugins(index):
    code = docs_examples()[index]
    module = types.ModuleType(f"docs_example_{index}")
    # as if the example were backpackflow's own examples plugin, beside its example folders
    module.__file__ = str(ROOT / "examples" / "plugin.py")
    exec(compile(code, f"docs/plugins.md example {index}", "exec"), module.__dict__)
    registry = build_registry(plugins=[module], autoload=False)
    info = registry.plugins[module.__name__]
    assert info.status == "loaded", info.reason
    implemented = [name for name in HOOKS if f"def {name}(" in code]
    assert implemented
    assert set(implemented) <= set(info.hooks)
    if "backpackflow_configure" not in implemented:
        assert info.registered, "the example registers nothing"


def test_docs_testing_example_runs():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    before_hooks = text.split("## Plugin hooks")[0]
    (code,) = re.findall(r"```python\n(.*?)```", before_hooks, re.DOTALL)
    exec(compile(code, "docs/plugins.md testing example", "exec"), {})
