"""The executor setting: the built-in in-process executor and the celery one come through
``backpackflow_register_executors``; a missing one or a missing broker is a clear error."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

import backpackflow_celery.plugin
import backpackflow_server.executors
from backpackflow import ConfigError
from backpackflow.plugins import build_registry
from backpackflow_server.executors import IN_PROCESS, InProcessExecutor, make_executor
from backpackflow_server.settings import Settings


def test_executors_register_through_the_hook() -> None:
    registry = build_registry(
        plugins=[backpackflow_server.executors, backpackflow_celery.plugin], autoload=False
    )
    assert sorted(registry.executors) == ["celery", IN_PROCESS]
    assert isinstance(make_executor(registry, Settings()), InProcessExecutor)
    celery = make_executor(
        registry, Settings(executor="celery", broker_url=SecretStr("redis://:pw@broker:6379/0"))
    )
    assert celery.remote
    assert celery.describe() == {
        "executor": "celery",
        "broker": "redis://:***@broker:6379/0",
        "queue": "backpackflow",
    }


def test_a_missing_executor_or_broker_is_named() -> None:
    registry = build_registry(plugins=[backpackflow_server.executors], autoload=False)
    with pytest.raises(ConfigError, match=r"executor 'celery' .*backpackflow\[workers\]"):
        make_executor(registry, Settings(executor="celery"))
    registry = build_registry(plugins=[backpackflow_celery.plugin], autoload=False)
    with pytest.raises(ConfigError, match="needs a broker: --broker"):
        make_executor(registry, Settings(executor="celery"))
