"""Shared test configuration: hypothesis profiles and service requirements."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["services"]  # tests/services.py: the real PostgreSQL fixtures

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
