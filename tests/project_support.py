"""pyproject.toml as the tests read it: the project table and requirements with their extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirements(*extras: str) -> list[Requirement]:
    """The requirements of the core and of ``extras``, following self-references such as
    ``backpackflow[llm,conditions]`` as pip expands them."""
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = [extra.strip() for extra in extras], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if requirement.name == PROJECT["name"]:
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found
